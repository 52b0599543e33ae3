"""Installs this package's modules into a kernel from their source text.

Shipped by itself first (it cannot load itself): the client sends this file's
text and calls `install` with the other modules' sources. Standard library only.
"""

from __future__ import annotations

import linecache
import sys
import types

__all__ = ["install"]


def install(name: str, sources: dict[str, str]) -> types.ModuleType:
    """Register package ``name`` with ``sources`` (module -> source, dependencies first).

    Idempotent: a package already registered under ``name`` (the name carries the
    sources' content hash) is returned as it is. A module that fails to load
    removes everything this call registered, so a later call starts clean.
    """
    existing = sys.modules.get(name)
    if existing is not None:
        return existing
    package = types.ModuleType(name, "marimo-pair-tools' kernel-side code")
    package.__path__ = []
    package.__package__ = name
    added = [name]
    sys.modules[name] = package
    try:
        for module_name, source in sources.items():
            full = f"{name}.{module_name}"
            filename = f"<{full}>"
            module = types.ModuleType(full)
            module.__package__ = name
            module.__file__ = filename
            sys.modules[full] = module
            added.append(full)
            # Tracebacks from kernel code then show its lines.
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own shipped source
            setattr(package, module_name, module)
    except BaseException:
        for key in added:
            sys.modules.pop(key, None)
        raise
    return package
