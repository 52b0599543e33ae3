"""A fence around the agent's scratchpad code: it may read the notebook, not change it.

While `run` executes an agent's ``execute_code``, these routes to changing the notebook
behind the tools' rules are closed, however the code reaches them (an import built
from pieces, ``sys.modules``, ``getattr``, code compiled from an encoded string):

- marimo's code mode: every mutating method of its context class refuses;
- the kernel's own graph mutations (``mutate_graph``, ``delete_cell``, ``sync_graph``);
- messages that would change the session's document (a document transaction, cell
  code or id updates) on the kernel's stream to the server;
- this package's own entry points (they apply changes without the guard);
- marimo's HTTP API on the server's own port (``socket.connect``);
- writing, replacing, truncating or removing the notebook file, and subprocesses whose
  command line names it (audit hooks: ``open``, ``os.rename``, ``os.replace``, …);
- ``gc.get_objects``/``gc.get_referrers`` (a walk to objects the fence hides).

It is a fence for a model talked into misbehaving, not a sandbox: native code
(ctypes, C extensions), other files the notebook reads, and code determined enough
to fish every original method out of the guards' closures (code mode, the kernel
and the stream at once) are outside it. The person's cells and our own kernel
calls run unfenced.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import io
import ipaddress
import os
import pickle
import re
import shlex
import socket
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "FenceError",
    "active",
    "arun",
    "async_run",
    "check_stream_write",
    "clear_refusals",
    "install",
    "refusals",
    "run",
]

_MAX_REFUSALS = 20


class FenceError(PermissionError):
    """The agent's scratchpad code tried to change the notebook behind the tools.

    Each one raised while the fence is up is also recorded (`refusals`): code that
    catches it does not hide the attempt from the audit.
    """

    def __init__(self, what: str) -> None:
        if _STATE["depth"] and len(_STATE["refusals"]) < _MAX_REFUSALS:
            _STATE["refusals"].append(what)
        super().__init__(
            f"marimo-pair fence: execute_code may read the notebook but not change it ({what}). "
            "Nothing was changed. Use create_cell, edit_cell, delete_cell or apply_changes, "
            "which keep the rules that protect the person's work."
        )


_STATE: dict[str, Any] = {
    "depth": 0,
    "file": None,
    "port": None,
    "hosts": frozenset(),
    "hidden": {},
    "refusals": [],
}
_DOCUMENT_OPS = frozenset({"notebook-document-transaction"})
"""Kernel messages the server applies to the session's document (marimo 0.25)."""
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def active() -> bool:
    """Whether agent scratchpad code is running now."""
    return bool(_STATE["depth"])


def refusals() -> list[str]:
    """What the fence refused since `clear_refusals`, in order (at most 20)."""
    return list(_STATE["refusals"])


def clear_refusals() -> None:
    """Start a new record (before each agent run)."""
    _STATE["refusals"] = []


def refuse_if_active(what: str) -> None:
    if _STATE["depth"]:
        raise FenceError(what)


# ------------------------------------------------------------------ the hooks


def _same_file(path: Any) -> bool:
    target = _STATE["file"]
    if target is None or path is None:
        return False
    try:
        candidate = os.fspath(path)
    except TypeError:
        return False
    if isinstance(candidate, bytes):
        candidate = os.fsdecode(candidate)
    if not isinstance(candidate, str):
        return False
    try:
        return os.path.realpath(candidate) == target or (
            os.path.exists(candidate) and os.path.samefile(candidate, target)
        )
    except OSError:
        return False


def _maybe_the_file(path: Any) -> bool:
    """`_same_file`, or a relative path with the notebook's name that may be it.

    ``os.open(name, ..., dir_fd=d)`` resolves ``name`` against ``d``, which the audit
    event does not carry: a relative path with the notebook's name counts unless it is
    an existing file that is not the notebook.
    """
    if _same_file(path):
        return True
    try:
        candidate = os.fsdecode(os.fspath(path))
    except TypeError:
        return False
    name = os.path.basename(_STATE["file"] or "\0")
    if os.path.isabs(candidate) or os.path.basename(candidate) != name:
        return False
    return not os.path.isfile(candidate)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _STATE["depth"]:
        return
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writes and _maybe_the_file(path):
            raise FenceError("writing the notebook file")
    elif event in ("os.rename", "os.replace", "os.link", "os.symlink"):
        if any(_same_file(a) for a in args[:2]):
            raise FenceError("replacing the notebook file")
    elif event in ("os.remove", "os.truncate", "os.chmod", "os.chown", "os.utime"):
        if args and _same_file(args[0]):
            raise FenceError("changing the notebook file")
    elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"):
        if _subprocess_names_the_file(event, args):
            raise FenceError("a subprocess that names the notebook file")
    elif event == "socket.connect" and len(args) >= 2:
        address = args[1]
        port = _STATE["port"]
        if (
            port
            and isinstance(address, tuple)
            and len(address) >= 2
            and address[1] == port
            and _is_this_machine(address[0])
        ):
            raise FenceError("marimo's HTTP API on its own server")
    elif event in ("gc.get_objects", "gc.get_referrers"):
        raise FenceError("walking the interpreter's objects")


# ------------------------------------------------------------------ subprocesses

_READ_ONLY_PROGRAMS = frozenset(
    {
        "cat", "cksum", "cmp", "diff", "du", "file", "grep", "head", "ls", "md5sum",
        "sha1sum", "sha256sum", "stat", "tail", "wc",
    }
)  # fmt: skip
"""Programs that read the files they are given and write none of them. Run without a
shell (a list of arguments), nothing redirects their output."""
_SHELL_PUNCTUATION = "<>|&;()`"


def _subprocess_names_the_file(event: str, args: tuple[Any, ...]) -> bool:
    """Whether a subprocess's command line names the notebook file.

    A word that contains the file's name but is the path of an existing *other* file
    does not count, nor does a read-only program run without a shell.
    """
    name = os.path.basename(_STATE["file"] or "\0")
    if name not in repr(args):
        return False
    cwd: Any = None
    if event == "subprocess.Popen":
        executable, argv, cwd = [*args, None, None, None][:3]
    elif event == "os.system":
        executable, argv = None, args[0] if args else None
    elif event == "os.spawn":
        executable, argv = [*args, None, None, None][1:3]
    else:  # os.exec, os.posix_spawn: (path, argv, env)
        executable, argv = [*args, None, None][:2]
    words = _words(argv)
    if words is None:
        return True
    program = _text(executable) or (words[0] if words else "")
    if event != "os.system" and os.path.basename(program) in _READ_ONLY_PROGRAMS:
        return False
    base = _text(cwd) or os.getcwd()
    return any(_word_names_the_file(word, name, base) for word in words)


def _text(value: Any) -> str | None:
    try:
        return os.fsdecode(os.fspath(value)) if value is not None else None
    except TypeError:
        return None


def _words(argv: Any) -> list[str] | None:
    """The command line's words (a shell string split as a shell would); None if unknown."""
    items = [argv] if isinstance(argv, (str, bytes, os.PathLike)) else argv
    try:
        texts = [_text(a) for a in items]
    except TypeError:
        return None
    words: list[str] = []
    for text in texts:
        if text is None:
            return None
        try:
            words.extend(shlex.split(text) if any(c.isspace() for c in text) else [text])
        except ValueError:
            return None
    return words


def _word_names_the_file(word: str, name: str, base: str) -> bool:
    if name not in word:
        return False
    for piece in re.split(f"[{re.escape(_SHELL_PUNCTUATION)}=]", word):
        if name not in piece:
            continue
        path = os.path.join(base, os.path.expanduser(piece))
        if "$" in piece or "*" in piece or "?" in piece or not os.path.isfile(path):
            return True  # a path the shell completes, or no such file: it may be the one
        if _same_file(path):
            return True
    return False


# ------------------------------------------------------------------ sockets


def _is_this_machine(host: Any) -> bool:
    """Whether ``host`` is this machine (where the server runs): loopback, a bind-all
    address, the server's own host name or one of this machine's addresses."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return True
    host = host.strip("[]").split("%", 1)[0].lower()
    if host in _STATE["hosts"]:
        return True
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        addresses = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
    for found in addresses:
        address = getattr(found, "ipv4_mapped", None) or found
        if address.is_loopback or address.is_unspecified or str(address) in _STATE["hosts"]:
            return True
    return False


@functools.lru_cache(maxsize=8)
def _own_hosts(server_host: str | None) -> frozenset[str]:
    """Names and addresses that reach this machine, besides loopback."""
    hosts = {"localhost"}
    if server_host:
        hosts.add(server_host.strip("[]").lower())
    try:
        name, aliases, addresses = socket.gethostbyname_ex(socket.gethostname())
        hosts.update(x.lower() for x in (name, *aliases, *addresses))
    except OSError:
        pass
    return frozenset(hosts)


def check_stream_write(data: Any) -> None:
    """Refuse a message that would change the session's document while fenced.

    The message's ``op`` is read as the server reads it (marimo's own decoder), so JSON
    spelled differently (spaces, escapes) is recognised too.
    """
    if not _STATE["depth"] or not isinstance(data, (bytes, bytearray, memoryview, str)):
        return
    try:
        op = _op_of(bytes(data) if not isinstance(data, str) else data)
    except Exception:  # noqa: BLE001 - not a kernel message: nothing the server applies
        return
    if op in _DOCUMENT_OPS:
        raise FenceError("a document change sent to the server")


def _op_of(message: bytes | str) -> str | None:
    from marimo._messaging.serde import try_deserialize_kernel_notification_name

    return try_deserialize_kernel_notification_name(message)  # type: ignore[arg-type]


class _PlainUnpickler(pickle.Unpickler):
    """Loads only plain values (no class, no callable): enough to see a sent message."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError("not a plain value")


def _check_pickled(data: Any) -> None:
    """`check_stream_write` for the bytes a connection sends (a pickled message)."""
    if not _STATE["depth"] or not isinstance(data, (bytes, bytearray, memoryview)):
        return
    try:
        value = _PlainUnpickler(io.BytesIO(bytes(data))).load()
    except Exception:  # noqa: BLE001 - not a pickled message
        return
    check_stream_write(value)


def _guard_sender(cls: type, name: str, check: Callable[[Any], None]) -> None:
    """Wrap ``cls.name(self, data, ...)`` so that ``check(data)`` runs first."""
    original = getattr(cls, name, None)
    if not callable(original) or getattr(original, "_marimo_pair_fenced", False):
        return

    def send(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        check(data)
        return original(self, data, *args, **kwargs)

    send._marimo_pair_fenced = True  # type: ignore[attr-defined]
    setattr(cls, name, send)


def _guard_methods(cls: type, names: tuple[str, ...], what: str) -> None:
    for name in names:
        original = cls.__dict__.get(name)
        if original is None or getattr(original, "_marimo_pair_fenced", False):
            continue
        if isinstance(original, (staticmethod, classmethod)):
            continue

        def make(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
            if inspect.iscoroutinefunction(fn):

                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    refuse_if_active(label)
                    return await fn(*args, **kwargs)

                guarded_async._marimo_pair_fenced = True  # type: ignore[attr-defined]
                return guarded_async

            def guarded(*args: Any, **kwargs: Any) -> Any:
                refuse_if_active(label)
                return fn(*args, **kwargs)

            guarded._marimo_pair_fenced = True  # type: ignore[attr-defined]
            return guarded

        setattr(cls, name, make(original, f"{what}.{name}"))


def install(kernel: Any, stream: Any) -> None:
    """Once per kernel: the audit hook and the guarded methods (inert until `run`)."""
    if getattr(sys, "_marimo_pair_fence_installed", False):
        return
    from marimo._code_mode._context import AsyncCodeModeContext

    _guard_methods(
        AsyncCodeModeContext,
        (
            "__aenter__",
            "create_cell",
            "edit_cell",
            "delete_cell",
            "move_cell",
            "run_cell",
            "set_ui_value",
            "_apply_ops",
            "execute_command",
            "enqueue_command",
        ),
        "code mode",
    )
    _guard_methods(
        type(kernel),
        ("mutate_graph", "delete_cell", "sync_graph", "rename_file", "set_ui_element_value"),
        "the kernel",
    )
    # The stream to the server, and the pipe beneath it (its ``send``, and a connection's
    # ``_send_bytes``, which ``send`` and ``send_bytes`` both reach).
    _guard_sender(type(stream), "write", check_stream_write)
    pipe = getattr(stream, "pipe", None)
    if pipe is not None:
        _guard_sender(type(pipe), "send", check_stream_write)
        if hasattr(type(pipe), "_send_bytes"):
            _guard_sender(type(pipe), "_send_bytes", _check_pickled)
    sys.addaudithook(_audit)
    sys._marimo_pair_fence_installed = True  # type: ignore[attr-defined]


# ------------------------------------------------------------------ running


class _Hidden(types.ModuleType):
    """What an import of a fenced module gets while the fence is up: a clear refusal."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise FenceError(f"{self.__name__} is closed while execute_code runs")


@contextlib.contextmanager
def _fenced(
    filename: str | None, port: int | None, package: str, host: str | None
) -> Iterator[None]:
    hidden = {k: sys.modules.pop(k) for k in list(sys.modules) if k.startswith(package)}
    hidden.update(
        {k: sys.modules.pop(k) for k in list(sys.modules) if k.startswith("marimo._code_mode")}
    )
    for key in hidden:
        sys.modules[key] = _Hidden(key)
    _STATE.update(
        file=os.path.realpath(filename) if filename else None, port=port, hosts=_own_hosts(host)
    )
    # Put back, not counted down: code that moved the counter leaves no fence up after it
    # (which would refuse our own calls and the person's runs).
    depth = _STATE["depth"]
    _STATE["depth"] = depth + 1
    try:
        yield
    finally:
        _STATE["depth"] = depth
        for key, module in hidden.items():
            sys.modules[key] = module


def _split(code: str, flags: int) -> tuple[Any, Any | None]:
    """The code without its last expression, and that expression (the cell's value)."""
    tree = ast.parse(code, "<execute_code>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        expression = tree.body.pop()
        assert isinstance(expression, ast.Expr)
        last = ast.Expression(expression.value)
    body = compile(tree, "<execute_code>", "exec", flags=flags)
    value = compile(last, "<execute_code>", "eval", flags=flags) if last is not None else None
    return body, value


def run(
    code: str,
    namespace: dict[str, Any],
    filename: str | None,
    port: int | None,
    package: str,
    *,
    host: str | None = None,
) -> Any:
    """Run the agent's synchronous scratchpad code inside the fence; return its last value."""
    body, value = _split(code, 0)
    with _fenced(filename, port, package, host):
        exec(body, namespace)  # noqa: S102 - this is the scratchpad: running it is the point
        return _format(eval(value, namespace) if value is not None else None)  # noqa: S307


class Formatted:
    """A last value already formatted inside the fence; marimo shows it as it is.

    marimo formats a cell's value after the cell ran, which is after the fence is
    down: the value's own ``_mime_``, ``_repr_html_`` or ``__repr__`` would run
    unfenced. So the fence formats it, with marimo's own formatter, and hands marimo
    the result.
    """

    def __init__(self, mimetype: str, data: str) -> None:
        self._mimetype = mimetype
        self._data = data

    def _mime_(self) -> tuple[str, str]:
        return self._mimetype, self._data


def _format(value: Any) -> Any:
    """``value`` formatted as marimo formats a cell's output (`Formatted`); None stays."""
    if value is None:
        return None
    from marimo._output import formatting

    out = formatting.try_format(value)
    if out.exception is not None:  # as marimo: maybe an opinionated formatter failed
        out = formatting.try_format(value, include_opinionated=False)
    if out.traceback is not None:
        from marimo._messaging.tracebacks import write_traceback

        write_traceback(out.traceback)
    return Formatted(out.mimetype, out.data)


_async_run: dict[str, Any] = {}
"""While our async scratchpad run awaits: its ``coroutine`` and ``code``, and the ``stop``
of whatever `interrupts` set up to end it (called when the run ends)."""


def async_run() -> dict[str, Any]:
    """The async scratchpad run in progress (empty when none), for `interrupts`."""
    return _async_run


async def arun(
    code: str,
    namespace: dict[str, Any],
    filename: str | None,
    port: int | None,
    package: str,
    *,
    host: str | None = None,
) -> Any:
    """`run` for code with a top-level ``await``."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    body, value = _split(code, flags)
    with _fenced(filename, port, package, host):
        result = eval(body, namespace)  # noqa: S307
        if result is not None and hasattr(result, "__await__"):
            _async_run.update(coroutine=result, code=body)
            try:
                await result
            finally:
                stop = _async_run.get("stop")
                _async_run.clear()
                if stop is not None:
                    stop()
        if value is None:
            return None
        out = eval(value, namespace)  # noqa: S307
        return _format(await out if hasattr(out, "__await__") and _awaited(value) else out)


def _awaited(code: Any) -> bool:
    return bool(code.co_flags & 0x80)
