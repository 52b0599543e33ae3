"""Calls into the kernel-side package, and how their answers are read.

The code that runs in the kernel lives in `marimo_pair_tools.kernel` as real
modules. This module ships their source text into a kernel once (per kernel and
per version of that code: the package is registered as ``_marimo_pair_kernel_<hash>``,
the hash taken over the sources), then sends only short calls::

    print("<<marimo-pair:result>>{... not_installed ...}") if __import__("sys").modules.get(
        "_marimo_pair_kernel_<hash>") is None else __import__("sys").modules[
        "_marimo_pair_kernel_<hash>"].entry.call("read", '{"cell": "x"}')

The calls bind no name: the scratchpad's globals are the agent's namespace in a later
``execute_code``, and a name holding our package there would hand it the package.

A kernel that does not have the package (new, or restarted) answers
``not_installed``; the caller then sends the sources with the same call, once.
Arguments travel as one Python string literal holding JSON (``repr(json.dumps(...))``),
so no caller text is ever pasted into source. The kernel prints one tagged line,
which `parse_result` turns into a result or the matching error.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from ._security import ensure_encodable
from ._text import BoundedText
from .client import ExecuteResult, ScratchpadEvidence
from .errors import (
    CellNotFoundError,
    CodeExecutionError,
    EditMatchError,
    NotebookOperationError,
    StaleCellError,
    ValidationFailedError,
)
from .models import untrusted

__all__ = [
    "FENCE_TAG",
    "KERNEL_MODULES",
    "RESULT_TAG",
    "KernelCall",
    "KernelCodeMissing",
    "ResultCollector",
    "apply",
    "cells",
    "codes",
    "errors",
    "graph",
    "needs_install",
    "package_name",
    "packages_change",
    "packages_list",
    "parse_result",
    "read_cell",
    "read_cells",
    "scratchpad_source",
    "set_ui_value",
    "snapshot",
    "status",
    "variables",
    "verify",
    "version",
    "with_evidence",
]

RESULT_TAG = "<<marimo-pair:result>>"
FENCE_TAG = "<<marimo-pair:fence>>"
"""The line `kernel.evidence` prints after a fenced scratchpad run (the same text)."""

KERNEL_MODULES = (
    "hashing",
    "text",
    "unwind",
    "analysis",
    "budget",
    "fence",
    "evidence",
    "interrupts",
    "state",
    "fidelity",
    "saved",
    "views",
    "reads",
    "changes",
    "entry",
)
"""The kernel package's modules, each importing only those before it."""

_NOT_INSTALLED = json.dumps({"ok": False, "error": {"kind": "not_installed", "message": ""}})


class KernelCodeMissing(Exception):
    """The kernel does not have this version of the kernel package: send it with the call."""


# --------------------------------------------------------------------------
# The package's sources, read once from the installed distribution
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bundle:
    name: str
    loader: str
    sources: dict[str, str]


@functools.cache
def _bundle() -> _Bundle:
    folder = resources.files("marimo_pair_tools").joinpath("kernel")
    loader = folder.joinpath("loader.py").read_text(encoding="utf-8")
    sources = {m: folder.joinpath(f"{m}.py").read_text(encoding="utf-8") for m in KERNEL_MODULES}
    digest = hashlib.sha256(loader.encode())
    for module, source in sources.items():
        digest.update(f"\0{module}\0{source}".encode())
    return _Bundle(f"_marimo_pair_kernel_{digest.hexdigest()[:16]}", loader, sources)


def package_name() -> str:
    """The name the kernel package is registered under: it carries the sources' hash."""
    return _bundle().name


def _install_source() -> str:
    bundle = _bundle()
    # A lambda's parameter is a local: the loader's namespace never reaches globals().
    return (
        "(lambda ns: (\n"
        f"    exec(compile({bundle.loader!r}, '<marimo-pair loader>', 'exec'), ns),\n"
        f"    ns['install']({bundle.name!r}, __import__('json').loads({json.dumps(bundle.sources)!r})),\n"
        "))({'__name__': '_marimo_pair_loader'})\n"
    )


def _call_line(call: str, *, awaits: bool) -> str:
    """``package.<call>`` behind the check that the package is there.

    One expression that binds no name in the scratchpad's globals (see the module doc).
    """
    name = repr(package_name())
    run = f"{'await ' if awaits else ''}__import__('sys').modules[{name}].{call}"
    return (
        f"print({RESULT_TAG + _NOT_INSTALLED!r}) if __import__('sys').modules.get({name}) is None "
        f"else {run}\n"
    )


@dataclass(frozen=True)
class KernelCall:
    """One operation of the kernel package, with its JSON arguments."""

    op: str
    args: Mapping[str, Any] = field(default_factory=dict)
    changes: bool = False
    """A change runs through `entry.acall` (code mode needs ``async with``); reads stay
    synchronous so that a timeout's interrupt stops them at once."""

    def __post_init__(self) -> None:
        # Arguments travel JSON-escaped, so the client's own check of the code cannot
        # see a lone surrogate in them: refuse it here, naming the argument.
        ensure_encodable(dict(self.args), what=f"The {self.op} call's argument")

    def source(self, *, install: bool = False) -> str:
        """The scratchpad code for this call; ``install`` ships the package first."""
        literal = repr(json.dumps(dict(self.args)))
        function = "acall" if self.changes else "call"
        run = _call_line(f"entry.{function}({self.op!r}, {literal})", awaits=self.changes)
        return (_install_source() if install else "") + run


def scratchpad_source(code: str, *, install: bool = False, nonce: str = "") -> str:
    """The agent's scratchpad code, run inside the kernel's fence (`kernel.fence`).

    The code travels as one string literal; the call's value (the code's last
    expression) is the cell's output, as if the code had been sent as it is.
    ``nonce`` marks this call's evidence line (`with_evidence`).
    """
    ensure_encodable(code, what="The code")  # the literal below would hide a lone surrogate
    try:
        compiled = compile(code, "<execute_code>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        awaits = bool(compiled.co_flags & inspect.CO_COROUTINE)
    except (SyntaxError, ValueError):
        awaits = False  # the kernel reports the error, from inside the fence
    function = "arun_scratchpad" if awaits else "run_scratchpad"
    run = _call_line(f"entry.{function}({code!r}, globals(), {nonce!r})", awaits=awaits)
    return (_install_source() if install else "") + run


def needs_install(stdout: str) -> bool:
    """Whether a fenced scratchpad call found no kernel package (its code did not run)."""
    return (RESULT_TAG + _NOT_INSTALLED) in stdout


def with_evidence(result: ExecuteResult, nonce: str | None = None) -> ExecuteResult:
    """The result of a fenced run with the kernel's evidence line moved into ``evidence``.

    Only a line carrying ``nonce`` (the one sent with the call) counts: a line the
    agent's code printed without it stays in stdout as the code's own text. The last
    such line wins (ours is printed after the agent's code and its value's formatting);
    the model never sees them. A run whose line is missing (the kernel died, or output
    was cut around it) keeps ``evidence=None``: no evidence, not "nothing happened".
    """
    stdout, found, at = result.stdout, None, 0
    kept: list[str] = []
    while (start := stdout.find(FENCE_TAG, at)) >= 0:
        end = stdout.find("\n", start)
        stop = end + 1 if end >= 0 else len(stdout)
        line = stdout[start + len(FENCE_TAG) : end if end >= 0 else None]
        evidence = _evidence_line(line, nonce)
        kept.append(stdout[at:start] if evidence is not None else stdout[at:stop])
        found = evidence or found
        at = stop
    if found is None:
        return result
    kept.append(stdout[at:])
    return result.model_copy(update={"stdout": "".join(kept), "evidence": found})


def _evidence_line(line: str, nonce: str | None) -> ScratchpadEvidence | None:
    try:
        payload = json.loads(line)
    except ValueError:
        return None
    if not isinstance(payload, dict) or (nonce is not None and payload.get("nonce") != nonce):
        return None
    try:
        return ScratchpadEvidence.model_validate(payload)
    except ValueError:
        return None


# --------------------------------------------------------------------------
# Call builders (pure)
# --------------------------------------------------------------------------


def cells(*, offset: int = 0, limit: int | None = None) -> KernelCall:
    """List cells in notebook order, with a page window over them."""
    return KernelCall("cells", {"offset": offset, "limit": limit})


def read_cell(
    cell: str, *, max_output_chars: int = 2_000_000, max_console_chars: int = 20_000
) -> KernelCall:
    """Read one cell (by id or name): code, status, output, console, errors."""
    return KernelCall(
        "read",
        {
            "cell": cell,
            "max_output_chars": max_output_chars,
            "max_console_chars": max_console_chars,
        },
    )


def read_cells(
    cells: Sequence[str], *, max_output_chars: int = 200_000, max_console_chars: int = 5_000
) -> KernelCall:
    """Read several cells (ids or names) in one execute; unknown ones are listed, not fatal."""
    return KernelCall(
        "read_many",
        {
            "cells": list(cells),
            "max_output_chars": max_output_chars,
            "max_console_chars": max_console_chars,
        },
    )


def codes(cells: Sequence[str]) -> KernelCall:
    """The code of each cell (id or name) that exists, keyed by the reference given."""
    return KernelCall("codes", {"cells": list(cells)})


def graph(cell: str | None = None) -> KernelCall:
    """The static dataflow graph; with ``cell``, that cell's relatives and dependents."""
    return KernelCall("graph", {"cell": cell})


def errors() -> KernelCall:
    """Every cell with a runtime, graph or syntax error, plus cycles and multiply-defined names."""
    return KernelCall("errors")


def apply(
    changes: Sequence[Mapping[str, Any]],
    *,
    check_effects: bool = False,
    document: str | None = None,
) -> KernelCall:
    """Apply a batch of changes (JSON dicts of the `models.Change` union) atomically.

    Args:
        changes: the batch.
        check_effects: refuse a batch that changes which cell defines a name other cells
            read, unless the changes acknowledge those cells (``acknowledge_descendants``).
        document: refuse unless the kernel's document id is this one (None: any).
    """
    return KernelCall(
        "apply",
        {
            "changes": [dict(c) for c in changes],
            "check_effects": check_effects,
            "document": document,
        },
        changes=True,
    )


def verify(expect: Sequence[Mapping[str, Any]], ran: Sequence[str]) -> KernelCall:
    """Re-read the session's document after an apply (a fresh snapshot, one execute later).

    Args:
        expect: ``{"cell_id", "present", "code_hash"}`` per changed cell.
        ran: ids of cells the apply ran, whose fresh outputs and errors to read.
    """
    return KernelCall("verify", {"expect": [dict(e) for e in expect], "ran": list(ran)})


def packages_list() -> KernelCall:
    """The packages installed in the kernel's environment."""
    return KernelCall("packages_list")


def packages_change(action: Literal["add", "remove"], names: Sequence[str]) -> KernelCall:
    """Install or remove packages with the notebook's package manager."""
    return KernelCall("packages_change", {"action": action, "names": list(names)}, changes=True)


def set_ui_value(name: str, value: Any) -> KernelCall:
    """Set the `mo.ui` element held by global ``name`` and read its value back."""
    return KernelCall("set_ui_value", {"name": name, "value": value}, changes=True)


def variables(
    names: Sequence[str] | None = None, *, limit: int = 50, max_repr: int = 200
) -> KernelCall:
    """Describe kernel variables defined by cells (type, short repr, shape, columns)."""
    return KernelCall(
        "variables",
        {"names": list(names) if names is not None else None, "limit": limit, "max_repr": max_repr},
    )


def status() -> KernelCall:
    """Cell status counts; answering at all means the kernel took our request."""
    return KernelCall("status")


def snapshot() -> KernelCall:
    """Everything at once: cells with code, graph, errors, and the file's hash on disk."""
    return KernelCall("snapshot")


def version() -> KernelCall:
    """The notebook's fingerprint (ids, order, code) on the server now: one short read."""
    return KernelCall("version")


# --------------------------------------------------------------------------
# Reading the answer
# --------------------------------------------------------------------------


class ResultCollector:
    """An ``on_chunk`` callback that keeps our tagged line whole, however long.

    The client bounds the stdout it keeps; a big result (a snapshot of a long
    notebook) would be cut in the middle. This sees every chunk, keeps the text
    from the last tag on, and a bounded copy of what cells printed before it.
    """

    def __init__(self, console_limit: int = 20_000) -> None:
        self._pending = ""
        self._result: str | None = None
        self._console = BoundedText(
            console_limit, what="cell output", hint="read the cell for its full console"
        )

    def __call__(self, channel: str, text: str) -> None:
        """Feed one streamed chunk."""
        if channel != "stdout":
            return
        if self._result is not None:
            self._result += text
            at = self._result.rfind(RESULT_TAG, 1)
            if at > 0:  # a later tag wins; what came before it was cell output
                self._console.append(self._result[:at])
                self._result = self._result[at:]
            return
        buffer = self._pending + text
        at = buffer.rfind(RESULT_TAG)
        if at >= 0:
            self._console.append(buffer[:at])
            self._result = buffer[at:]
            self._pending = ""
            return
        keep = len(RESULT_TAG) - 1  # a tag may straddle two chunks
        self._console.append(buffer[:-keep] if len(buffer) > keep else "")
        self._pending = buffer[-keep:] if len(buffer) > keep else buffer

    @property
    def stdout(self) -> str:
        """The tagged result text (empty when no tag arrived)."""
        return self._result or ""

    @property
    def console(self) -> str:
        """What cells printed while the program ran (bounded)."""
        return self._console.getvalue() + (self._pending if self._result is None else "")


_NEXT_STEP = {
    "not_found": "List the cells with read_notebook and use an exact cell id or name.",
    "validation": "Nothing was applied. Fix the change and send the whole batch again.",
    "stale": "Nothing was applied. Redo your change on the current code below and send it "
    "again (that code counts as read; its hash is {current_hash}).",
    "match": "Nothing was applied. Copy `old` exactly from the current code below, or make it "
    "unique.",
    "graph_changed": "Nothing was applied. The notebook changed since your inspect_graph: call "
    "inspect_graph(cell=...) again and acknowledge the descendants it lists.",
    "diverged": "Nothing was applied. Tell the person: they choose whether to reload the file "
    "in marimo (keeping the file's version) or to keep the running notebook. Do not retry "
    "before they have.",
    "document_changed": "Nothing was applied. Everything you read before is forgotten: call "
    "read_notebook, read the cells you change with read_cell (and inspect_graph before a "
    "delete), then make the change again.",
    "unread": "Nothing was applied. Call read_cell on the deleted cell, then send the batch "
    "again (or edit the cell instead of deleting and re-creating it).",
    "ambiguous": "Refer to the named cell by its id instead. Two cells answer to this "
    "reference: do not guess which one the person meant.",
    "effects": "Nothing was applied. If that is intended, call inspect_graph(cell=...) on the "
    "cell whose names change and retry with acknowledge_descendants listing those cells (or "
    "true for all of them); "
    "otherwise keep the names they read.",
    "format": "Send the code the file would hold (above) if it says what you meant.",
    "unsettled": "Nothing was applied. If a person just ran this cell, the code the kernel ran "
    "(below) is their newest version and the notebook catches up within a second or two: call "
    "read_cell again, then redo your change on their version. Never drop their work.",
}
_CURRENT_CODE_LIMIT = 4000  # guards.SHOWN_CODE_LIMIT: the ledger counts this much as read

_ERROR_CLASSES: dict[str, type[NotebookOperationError]] = {
    "not_found": CellNotFoundError,
    "ambiguous": CellNotFoundError,
    "effects": ValidationFailedError,
    "unread": StaleCellError,
    "diverged": StaleCellError,
    "document_changed": StaleCellError,
    "validation": ValidationFailedError,
    "stale": StaleCellError,
    "match": EditMatchError,
    "graph_changed": StaleCellError,
    "unsettled": StaleCellError,
    "format": ValidationFailedError,
}


def _cut_code(code: str) -> str:
    if len(code) <= _CURRENT_CODE_LIMIT:
        return code
    cut = len(code) - _CURRENT_CODE_LIMIT
    return code[:_CURRENT_CODE_LIMIT] + f"\n… [{cut:,} characters cut; read the cell]"


def _tail(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def parse_result(stdout: str, stderr: str = "") -> Any:
    """The ``result`` of the last tagged line in ``stdout``, or the matching error.

    Raises:
        KernelCodeMissing: the kernel lacks the package; resend with ``install=True``.
        CellNotFoundError, ValidationFailedError, StaleCellError, EditMatchError:
            the program refused; ``exc.details`` holds its structured facts.
        CodeExecutionError: the program failed unexpectedly, or printed no result
            (the message quotes the tail of stderr).
    """
    at = stdout.rfind(RESULT_TAG)
    if at < 0:
        raise CodeExecutionError(
            "The kernel call printed no result: it was interrupted, or marimo rejected "
            "it before it ran. Check that the kernel is idle and retry once."
            # What the kernel printed may quote notebook values: data, not instructions.
            + (f"\nKernel stderr (tail):\n{untrusted(_tail(stderr))}" if stderr.strip() else "")
        )
    line = stdout[at + len(RESULT_TAG) :].split("\n", 1)[0]
    try:
        payload = json.loads(line)
    except ValueError:
        raise CodeExecutionError(
            f"The kernel call's result was cut or garbled ({len(line):,} characters "
            "received). Retry with a smaller request (a page of cells, fewer variables)."
        ) from None
    if payload.get("ok"):
        return payload.get("result")
    error = dict(payload.get("error") or {})
    kind = str(error.pop("kind", "internal"))
    if kind == "not_installed":
        raise KernelCodeMissing
    message = str(error.pop("message", "unknown error"))
    cls = _ERROR_CLASSES.get(kind)
    if cls is None:
        text = (
            "The marimo-pair kernel code failed (the error, which may quote notebook "
            "values, is below). This is a bug in marimo-pair-tools or an unsupported marimo "
            "version; the notebook was not changed by a failed read, but check it after a "
            "failed change.\n" + untrusted(f"{error.get('type', 'Error')}: {message}")
        )
        if error.get("traceback"):
            text += "\n" + untrusted(_tail(str(error["traceback"]), 3000))
        raise CodeExecutionError(text, **error)
    text = f"{message} {_NEXT_STEP[kind].format(current_hash=error.get('current_hash'))}"
    if isinstance(error.get("current_code"), str):
        # The model reads the message: give it the code it must base its retry on.
        code = _cut_code(error["current_code"])
        # "of cell X (code_hash H)" is also how the eval's trajectory audit sees the read.
        cell = error.get("cell_id")
        if error.get("current_hash"):
            label = f"Current code of cell {cell} (code_hash {error['current_hash']})"
        else:
            label = f"Current text of cell {cell} (no hash: read the cell again)"
        text += f"\n{label}:\n" + untrusted(f"```python\n{code}\n```")
    if isinstance(error.get("kernel_code"), str):
        ran = _cut_code(error["kernel_code"])
        text += "\nCode the kernel last ran (differs from the text):\n" + untrusted(
            f"```python\n{ran}\n```"
        )
    raise cls(text, **error)
