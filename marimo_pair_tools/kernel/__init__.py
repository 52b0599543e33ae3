"""The code that runs inside the marimo kernel, as real modules.

This package is the only place that imports ``marimo._code_mode`` or other marimo
internals, so a marimo change is an edit here. It is never imported by the client
side of the toolkit: `marimo_pair_tools._kernel_calls` reads these files as text
(``importlib.resources``, so it works from a wheel), ships them into a kernel once
under a name that carries their content hash, and afterwards sends only a short
call such as ``entry.call("read", '{"cell": "x"}')``.

Every module here must import only the standard library, marimo, and modules of
this package listed before it in ``_kernel_calls.KERNEL_MODULES``: the kernel does
not have marimo-pair-tools installed. Tests import the modules in-process too,
against the marimo the test environment has.
"""
