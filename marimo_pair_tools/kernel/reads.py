"""Read-only operations. Synchronous on purpose: marimo interrupts synchronous
scratchpad code at once, but an async run only at its next ``await``."""

from __future__ import annotations

import builtins
import hashlib
import reprlib
import time
from typing import Any

import marimo

from . import views
from .analysis import BUILTINS
from .budget import BudgetExceeded, bounded
from .state import NotebookState, Refused, cell_name
from .text import cut

__all__ = [
    "cells",
    "codes",
    "errors",
    "graph",
    "packages_list",
    "read",
    "read_many",
    "snapshot",
    "status",
    "variables",
    "verify",
    "version",
]

Args = dict[str, Any]


def cells(state: NotebookState, args: Args) -> dict[str, Any]:
    """A page of the cell map: id, name, preview, status, defs/refs, code_hash."""
    doc_cells = state.doc.cells
    start = max(0, args["offset"])
    stop = len(doc_cells) if args["limit"] is None else start + max(0, args["limit"])
    page = []
    for i, view in enumerate(state.ctx.cells):
        if i < start:
            continue
        if i >= stop:
            break
        cell = doc_cells[i]
        code = cell.code
        defs, refs, syntax = state.analyse(cell.id, code)[:3]
        first = next((line.strip() for line in code.splitlines() if line.strip()), "")
        page.append(
            {
                "id": cell.id,
                "name": cell_name(cell),
                "preview": first if len(first) <= 80 else first[:79] + "…",
                "status": views.status(view),
                "has_output": views.has_output(view),
                "has_errors": bool(view.errors or views.own_errors(view)) or syntax is not None,
                "defs": sorted(defs),
                "refs": sorted(r for r in refs if r not in BUILTINS),
                "code_hash": state.hash(code, cell.id),
                "lines": code.count("\n") + 1 if code else 0,
            }
        )
    return {
        "cells": page,
        "total": len(doc_cells),
        "offset": start,
        "notebook_version": state.version(),
    }


def read(state: NotebookState, args: Args) -> dict[str, Any]:
    """One cell: code, hash, status, output, console, errors."""
    return {
        **_detail(state, state.resolve(args["cell"]), args),
        "notebook_version": state.version(),
    }


def read_many(state: NotebookState, args: Args) -> dict[str, Any]:
    """Several cells, each as `read` gives it, in one call; the ones not found, and why."""
    order, names = state.order(), state.names()
    found, missing = [], []
    for ref in args["cells"]:
        try:
            cid = state.resolve(ref, order, names)
        except Refused as exc:
            missing.append({"cell": ref, "message": str(exc).split(" Cells (", 1)[0]})
            continue
        found.append(_detail(state, cid, args))
    return {"cells": found, "missing": missing, "notebook_version": state.version()}


def _detail(state: NotebookState, cid: str, args: Args) -> dict[str, Any]:
    cell = state.doc.get_cell(cid)
    view = state.ctx.cells[cid]
    defs, refs, syntax = state.analyse(cid, cell.code)[:3]
    return {
        "id": cid,
        "name": cell_name(cell),
        "code": cell.code,
        "code_hash": state.hash(cell.code, cid),
        "kernel_code": state.kernel_code(cid, cell.code),
        "status": views.status(view),
        "hide_code": bool(cell.config.hide_code),
        "disabled": bool(cell.config.disabled),
        "defs": sorted(defs),
        "refs": sorted(r for r in refs if r not in BUILTINS),
        "syntax_error": syntax,
        "output": views.output(view, args["max_output_chars"]),
        "console": views.console(view, args["max_console_chars"]),
        "errors": views.errors(view, live=False),
    }


def codes(state: NotebookState, args: Args) -> dict[str, dict[str, str]]:
    """The code of each named cell that exists, keyed by the reference given."""
    found = {}
    order, names = state.order(), state.names()
    for ref in args["cells"]:
        try:
            found[ref] = state.doc.get_cell(state.resolve(ref, order, names)).code
        except Refused:
            continue  # unknown cell: the caller shows less; the tool reports it
    return {"codes": found}


def graph(state: NotebookState, args: Args) -> dict[str, Any]:
    """The static dataflow graph; with ``cell``, that cell's relatives and dependents."""
    names = state.names()
    built = state.graph()
    result = built.payload(names)
    result["focus"] = None
    if args["cell"] is not None:
        cid = state.resolve(args["cell"])
        result["focus"] = built.focus(cid, names)
        # What a delete's compare-and-swap checks: the code the agent inspected.
        result["focus"]["code_hash"] = state.hash(state.doc.get_cell(cid).code, cid)
    result["notebook_version"] = state.version()
    return result


def errors(state: NotebookState, args: Args) -> dict[str, Any]:
    """Every cell with an error, plus cycles and multiply-defined names."""
    result = views.errors_payload(state, state.graph(), state.names())
    result["notebook_version"] = state.version()
    return result


def verify(state: NotebookState, args: Args) -> dict[str, Any]:
    """Re-read the document after an apply (a fresh snapshot, one execute later)."""
    stored = {c.id: c.code for c in state.doc.cells}
    names = state.names()
    problems = {}
    for item in args["expect"]:
        cid, want = item["cell_id"], item["code_hash"]
        if item["present"] and cid not in stored:
            problems[cid] = "the cell is not in the notebook"
        elif not item["present"] and cid in stored:
            problems[cid] = "the cell is still in the notebook"
        elif want is not None and cid in stored and state.hash(stored[cid], cid) != want:
            problems[cid] = "the notebook holds different code than the change stored"
    ran = []
    for cid in args["ran"]:
        if cid in stored:
            report = views.run_report(state, cid, False, names)
            view = state.ctx.cells[cid]
            report["errors"] = views.errors(view, live=False)
            report["has_output"] = views.has_output(view)
            ran.append(report)
    return {
        "problems": problems,
        "order": state.order(),
        "ran": ran,
        "notebook_version": state.version(),
    }


def packages_list(state: NotebookState, args: Args) -> dict[str, Any]:
    """The packages installed in the kernel's environment."""
    manager = state.kernel.packages_callbacks.package_manager
    packages = [{"name": p.name, "version": p.version} for p in state.ctx.packages.list()]
    return {"manager": getattr(manager, "name", None), "packages": packages}


PER_VALUE_SECONDS = 1.0
PER_VALUE_GROWTH = 256 << 20
PER_CALL_SECONDS = 8.0


def _describe(
    name: str, value: Any, defined_by: str | None, max_repr: int, deadline: float
) -> dict[str, Any]:
    if time.monotonic() > deadline:
        return _skipped(name, value, defined_by, "the call's time budget was spent on others")
    try:
        with bounded(PER_VALUE_SECONDS, PER_VALUE_GROWTH):
            return _probe(name, value, defined_by, max_repr)
    except BudgetExceeded as exc:
        return _skipped(name, value, defined_by, f"its repr {exc}")


def _skipped(name: str, value: Any, defined_by: str | None, why: str) -> dict[str, Any]:
    kind = type(value)
    return {
        "name": name,
        "defined_by": defined_by,
        "type": f"{kind.__module__}.{kind.__qualname__}",
        "repr": f"<not shown: {why}>",
        "shape": None,
        "columns": None,
        "length": None,
    }


class _Limited(reprlib.Repr):
    """reprlib, plus byte strings cut *before* ``repr`` (reprlib has no rule for them, and
    the repr of a 120 MB ``bytes`` is a 480 MB string built in one C call, past any
    memory budget)."""

    def _cut_bytes(self, value: bytes | bytearray, level: int) -> str:
        head = builtins.repr(value[: self.maxstring])
        more = len(value) - self.maxstring
        return head + (f"... (+{more:,} bytes)" if more > 0 else "")

    def repr_bytes(self, value: bytes, level: int) -> str:
        return self._cut_bytes(value, level)

    def repr_bytearray(self, value: bytearray, level: int) -> str:
        return self._cut_bytes(value, level)

    def repr_memoryview(self, value: memoryview, level: int) -> str:
        return f"<memoryview of {value.nbytes:,} bytes>"


_VALUE_FAILURES = (Exception, SystemExit, GeneratorExit)
"""What a value's own code may raise that ends only its description. A ``SystemExit``
from a ``__repr__`` would otherwise end the whole read (no result line); an interrupt
(``KeyboardInterrupt``) still stops it."""


def _probe(name: str, value: Any, defined_by: str | None, max_repr: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": name,
        "defined_by": defined_by,
        "type": None,
        "repr": None,
        "shape": None,
        "columns": None,
        "length": None,
    }
    kind = type(value)
    item["type"] = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    limiter = _Limited()
    limiter.maxstring = limiter.maxother = max_repr
    try:
        item["repr"] = cut(limiter.repr(value), max_repr)
    except _VALUE_FAILURES as exc:  # any object's __repr__ may raise
        item["repr"] = f"<repr failed: {type(exc).__name__}>"
    try:
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
            item["shape"] = list(shape)
        columns = getattr(value, "columns", None)
        if columns is not None and not callable(columns):
            item["columns"] = [str(c) for c in list(columns)[:50]]
        if (
            not isinstance(value, (str, bytes))
            and hasattr(value, "__len__")
            and not isinstance(value, type)
        ):
            item["length"] = len(value)
    except _VALUE_FAILURES:  # duck-typed probing of arbitrary objects
        pass
    return item


def variables(state: NotebookState, args: Args) -> dict[str, Any]:
    """Kernel variables defined by cells: type, short repr, shape, columns."""
    env = state.ctx.globals
    deadline = time.monotonic() + PER_CALL_SECONDS
    defined: dict[str, str] = {}
    for view in state.doc.cells:
        impl = state.ctx.graph.cells.get(view.id)
        for n in sorted(impl.defs) if impl is not None else ():
            defined.setdefault(n, view.id)
    wanted = args["names"] if args["names"] is not None else list(defined)
    present = [n for n in wanted if n in env]
    page = present[: args["limit"]]
    return {
        "variables": [
            _describe(n, env[n], defined.get(n), args["max_repr"], deadline) for n in page
        ],
        "total": len(present),
        "missing": [n for n in wanted if n not in env],
        "truncated": len(present) > len(page),
    }


def version(state: NotebookState, args: Args) -> dict[str, Any]:
    """The notebook's fingerprint as the server has it now (a scratchpad run's recheck)."""
    return {"notebook_version": state.version()}


def status(state: NotebookState, args: Args) -> dict[str, Any]:
    """Cell status counts; answering at all means the kernel took our request."""
    counts: dict[str, int] = {}
    running, queued = [], []
    for view in state.ctx.cells:
        value = views.status(view) or "empty"
        counts[value] = counts.get(value, 0) + 1
        if value == "running":
            running.append(view.id)
        elif value == "queued":
            queued.append(view.id)
    return {
        "state": "running" if running or queued else "idle",
        "counts": counts,
        "running": running,
        "queued": queued,
        "cell_count": len(state.doc.cells),
        "notebook_version": state.version(),
    }


def snapshot(state: NotebookState, args: Args) -> dict[str, Any]:
    """Everything at once: cells with code, graph, errors, and the file's hash on disk."""
    names = state.names()
    built = state.graph()
    found = []
    for view in state.ctx.cells:
        cell = state.doc.get_cell(view.id)
        found.append(
            {
                "id": cell.id,
                "name": names[cell.id],
                "code": cell.code,
                "code_hash": state.hash(cell.code, cell.id),
                "status": views.status(view),
                "hide_code": bool(cell.config.hide_code),
                "disabled": bool(cell.config.disabled),
            }
        )
    version = state.version()
    graph_payload = built.payload(names)
    graph_payload.update(focus=None, notebook_version=version)
    errs = views.errors_payload(state, built, names)
    errs["notebook_version"] = version
    filename = state.kernel.app_metadata.filename
    file = None
    if filename:
        with open(filename, "rb") as handle:
            data = handle.read()
        file = {"path": filename, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return {
        "cells": found,
        "graph": graph_payload,
        "errors": errs,
        "file": file,
        "notebook_version": version,
        "marimo_version": marimo.__version__,
    }
