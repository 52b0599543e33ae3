"""The Python programs we send into a marimo kernel, and how their answers are read.

This is the only module of the package that knows about `marimo._code_mode` or
any other marimo internal: every notebook operation is a short program run in
the kernel's scratchpad (``POST /api/kernel/execute``). marimo's private API
changes between releases; keeping all of it here makes such a change one edit.

Each program is ``_PRELUDE`` (imports and kernel-side helpers), one line that
decodes the arguments, an operation body defining ``async def _main(args)``,
and ``_EPILOGUE``, which prints exactly one line::

    <<marimo-pair:result>>{"ok": true, "result": ...}
    <<marimo-pair:result>>{"ok": false, "error": {"kind": ..., "message": ...}}

Arguments travel as a Python string literal holding JSON (``repr(json.dumps(...))``)
and are decoded in the kernel, so no caller text is ever pasted into source.
The program is sent as one string literal that a two-line launcher compiles and
awaits in a namespace of its own (see `_program`), so none of its names can
shadow or clobber a notebook variable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ._text import BoundedText
from .errors import (
    CellNotFoundError,
    CodeExecutionError,
    EditMatchError,
    NotebookOperationError,
    StaleCellError,
    ValidationFailedError,
)

__all__ = [
    "RESULT_TAG",
    "ResultCollector",
    "apply_program",
    "cells_program",
    "errors_program",
    "graph_program",
    "packages_change_program",
    "packages_list_program",
    "parse_result",
    "read_cell_program",
    "set_ui_value_program",
    "snapshot_program",
    "status_program",
    "variables_program",
    "verify_program",
]

RESULT_TAG = "<<marimo-pair:result>>"

# --------------------------------------------------------------------------
# Kernel-side source. Not linted by ruff (it is a string); every program is
# compiled in tests/test_kernel_programs.py and run against a real server.
# --------------------------------------------------------------------------

_PRELUDE = r'''
import ast as _ast
import builtins as _builtins
import difflib as _difflib
import hashlib as _hashlib
import json as _json
import reprlib as _reprlib
import sys as _sys
import time as _time
import traceback as _traceback
import types as _types

import marimo._code_mode as _cm
from marimo._ast.compiler import module_compile as _module_compile
from marimo._ast.variables import is_local as _is_local
from marimo._ast.visitor import ScopedVisitor as _ScopedVisitor
from marimo._ast.names import is_internal_cell_name as _is_internal_name

_TAG = "<<marimo-pair:result>>"
_BUILTINS = frozenset(dir(_builtins))
_TRACEBACK_MIME = "application/vnd.marimo+traceback"
_ERROR_MIME = "application/vnd.marimo+error"

# One context per execute: several contexts in one execute lose cells on disk.
# skip_staleness_check: our own compare-and-swap (expected_hash) is checked
# against the same document snapshot before anything is queued. marimo's read
# tracker is shared by every agent in this kernel and counts any scratchpad
# read (our cell listings included) as "the agent read it", so it would both
# refuse edits we know are safe and wave through edits we know are stale.
_CTX = _cm.get_context(skip_staleness_check=True)
# The session's document snapshot for this execute; marimo applies our
# transaction to it on context exit. Read it directly rather than through
# `ctx.cells[...].code`, which would record reads in that shared tracker.
_DOC = _CTX._document
# marimo prints a prose summary of a batch on exit; our structured result replaces
# it, and in the stream it would be mistaken for output of the cells that ran.
_CTX._print_summary = lambda *args, **kwargs: None


class _Refused(Exception):
    """A refusal the caller can act on; `kind` picks the client-side error class."""

    def __init__(self, kind, message, **details):
        super().__init__(message)
        self.kind = kind
        self.details = details


def _text_hash(code):
    return _hashlib.sha256(code.encode("utf-8")).hexdigest()[:16]


def _kernel_code(cid, code):
    # The code the kernel last ran for the cell, when it differs from the notebook's text:
    # a person's run whose text is still reaching the notebook, or an edit not yet run.
    impl = _CTX.graph.cells.get(cid) if cid is not None else None
    ran = getattr(impl, "code", None)
    return ran if ran is not None and ran != code else None


def _hash(code, cid=None):
    # A person's run reaches the kernel about a second before the document: fold
    # in the code the kernel last ran when it differs, so an edit based on the
    # older text loses its compare-and-swap in that window too.
    ran = _kernel_code(cid, code)
    return _text_hash(code if ran is None else code + "\0ran\0" + ran)


def _version(pairs):
    digest = _hashlib.sha256()
    for cid, code in pairs:
        digest.update(f"{cid}\0{code}\0".encode("utf-8"))
    return digest.hexdigest()[:16]


def _pairs():
    return [(c.id, c.code) for c in _DOC.cells]


def _name(cell):
    name = cell.name
    return None if not name or _is_internal_name(name) else name


def _cut(text, limit):
    if limit is None or len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return text[:head] + f"\n… [{cut:,} characters cut] …\n" + (text[-tail:] if tail else "")


def _listing(order, names, limit=40):
    shown = [cid + (f" ({names[cid]})" if names.get(cid) else "") for cid in order[:limit]]
    more = f", … {len(order) - limit} more" if len(order) > limit else ""
    return ", ".join(shown) + more


def _resolve(target, order=None, names=None):
    """A cell id or name -> cell id; refuses unknown or ambiguous targets."""
    if order is None:
        order = [c.id for c in _DOC.cells]
        names = {c.id: _name(c) for c in _DOC.cells}
    if target in names:
        return target
    hits = [cid for cid in order if names.get(cid) == target]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise _Refused("not_found", f"Several cells are named {target!r} ({', '.join(hits)}).",
                       cell=target, candidates=hits)
    raise _Refused("not_found", f"No cell {target!r} in the notebook. Cells ({len(order)}): "
                   f"{_listing(order, names) or '(none)'}.", cell=target)


# Static analysis results by code, kept across executes (scratchpad bindings are
# not): a module object is the one place in the kernel that outlives a request.
_CACHE = _sys.modules.get("_marimo_pair_cache")
if _CACHE is None:
    _CACHE = _sys.modules["_marimo_pair_cache"] = _types.ModuleType("_marimo_pair_cache")
    _CACHE.analyses = {}
_ANALYSED = _CACHE.analyses
if len(_ANALYSED) > 20000:
    _ANALYSED.clear()


def _static(code):
    # What compile_cell computes for defs/refs, without building bytecode (half the cost).
    try:
        tree = _module_compile(code.replace("\u00a0", " "))
    except SyntaxError as exc:
        return frozenset(), frozenset(), f"line {exc.lineno}: {exc.msg}"
    except Exception as exc:  # e.g. ValueError for NUL bytes
        return frozenset(), frozenset(), f"{type(exc).__name__}: {exc}"
    visitor = _ScopedVisitor("cell___marimo_pair__")
    visitor.visit(tree)
    return frozenset(n for n in visitor.defs if not _is_local(n)), frozenset(visitor.refs), None


def _analyse(cid, code):
    """(defs, refs, syntax_error) from marimo's own static analysis of the code."""
    impl = _CTX.graph.cells.get(cid)
    if impl is not None and impl.code == code:
        return frozenset(impl.defs), frozenset(impl.refs), None
    found = _ANALYSED.get(code)
    if found is None:
        found = _ANALYSED[code] = _static(code)
    return found


class _Graph:
    """The dataflow graph of every cell, from code (ctx.graph holds only cells that ran)."""

    def __init__(self, pairs):
        self.order = [cid for cid, _ in pairs]
        self.pos = {cid: i for i, cid in enumerate(self.order)}
        self.info = {cid: _analyse(cid, code) for cid, code in pairs}
        self.by_name = {}
        for cid in self.order:
            for name in self.info[cid][0]:
                self.by_name.setdefault(name, []).append(cid)
        self.parents = {cid: set() for cid in self.order}
        self.children = {cid: set() for cid in self.order}
        for cid in self.order:
            for name in self.info[cid][1]:
                for parent in self.by_name.get(name, ()):
                    if parent != cid:
                        self.parents[cid].add(parent)
                        self.children[parent].add(cid)
        self.multiply = {n: ids for n, ids in self.by_name.items() if len(ids) > 1}
        self.cycles = self._cycles()

    def sort(self, ids):
        return sorted(ids, key=self.pos.__getitem__)

    def refs(self, cid):
        """Refs worth showing: builtins only when some cell redefines them."""
        return sorted(r for r in self.info[cid][1] if r not in _BUILTINS or r in self.by_name)

    def closure(self, cid, edges):
        seen, todo = set(), list(edges[cid])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(edges[node])
        seen.discard(cid)
        return seen

    def _cycles(self):
        # Tarjan's strongly connected components, iteratively (notebooks get long).
        index, low, stack, on_stack, found = {}, {}, [], set(), []
        for root in self.order:
            if root in index:
                continue
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            work = [(root, iter(self.children[root]))]
            while work:
                node, children = work[-1]
                pushed = False
                for child in children:
                    if child not in index:
                        index[child] = low[child] = len(index)
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(self.children[child])))
                        pushed = True
                        break
                    if child in on_stack:
                        low[node] = min(low[node], index[child])
                if pushed:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(self.sort(component))
        return found

    def edge_names(self, parent, child):
        return sorted(self.info[parent][0] & self.info[child][1])

    def describe_cycle(self, component):
        members = set(component)
        edges = [f"{p} -> {c} via {', '.join(self.edge_names(p, c))}"
                 for p in component for c in self.sort(self.children[p] & members)]
        return "; ".join(edges)

    def payload(self, names):
        cells = [{
            "id": cid,
            "name": names.get(cid),
            "defs": sorted(self.info[cid][0]),
            "refs": self.refs(cid),
            "parents": self.sort(self.parents[cid]),
            "children": self.sort(self.children[cid]),
            "syntax_error": self.info[cid][2],
        } for cid in self.order]
        return {"cells": cells, "cycles": self.cycles,
                "multiply_defined": {n: ids for n, ids in sorted(self.multiply.items())}}

    def focus(self, cid, names):
        defs = self.info[cid][0]
        descendants = self.sort(self.closure(cid, self.children))
        return {
            "cell_id": cid,
            "name": names.get(cid),
            "defs": sorted(defs),
            "ancestors": self.sort(self.closure(cid, self.parents)),
            "descendants": descendants,
            "dependents": [{
                "id": d,
                "name": names.get(d),
                "uses": sorted(self.info[d][1] & defs),
                "direct": d in self.children[cid],
            } for d in descendants],
        }


def _status(view):
    status = view.status
    return None if status is None else str(status)


def _live_traceback(exc):
    """The exception's traceback, limited to frames of notebook cells."""
    frames = _traceback.extract_tb(exc.__traceback__)
    cell_frames = [f for f in frames if "__marimo__cell_" in (f.filename or "")]
    lines = ["Traceback (most recent call last):\n"]
    lines += _traceback.format_list(cell_frames or frames)
    lines += _traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _errors(view, live):
    """Errors of one cell. live=True: from the kernel now; else what the person sees."""
    shown = None
    if not live:
        for out in view.console_outputs:
            if out.mimetype == _TRACEBACK_MIME and isinstance(out.data, str):
                shown = out.data
    result = []
    for err in view.errors:
        item = {"kind": err.kind, "message": err.msg, "exception_type": None, "traceback": None}
        if err.exception is not None:
            item["exception_type"] = type(err.exception).__name__
            item["traceback"] = _cut(shown or _live_traceback(err.exception), 8000)
        result.append(item)
    return result


def _has_output(view):
    out = view.output
    return out is not None and out.mimetype != _ERROR_MIME and bool(out.data)


def _output(view, limit):
    out = view.output
    if out is None or (not out.data and out.mimetype != _ERROR_MIME):
        return None
    item = {"mimetype": out.mimetype, "data": None, "size": 0, "omitted": False, "errors": []}
    if isinstance(out.data, (list, tuple)):
        item["errors"] = [{"type": type(e).__name__, "message": e.describe()} for e in out.data]
        return item
    data = out.data if isinstance(out.data, str) else _json.dumps(out.data, default=str)
    item["size"] = len(data)
    if len(data) > limit:
        # A cut image or JSON document is useless; cut text is still readable.
        if out.mimetype.startswith("image/") or "mimebundle" in out.mimetype:
            item["omitted"] = True
            return item
        data = _cut(data, limit)
    item["data"] = data
    return item


def _console(view, limit):
    merged = []
    for out in view.console_outputs:
        text = out.data if isinstance(out.data, str) else _json.dumps(out.data, default=str)
        channel = str(getattr(out.channel, "value", out.channel))
        if merged and merged[-1]["channel"] == channel and merged[-1]["mimetype"] == out.mimetype:
            merged[-1]["text"] += text
        else:
            merged.append({"channel": channel, "mimetype": out.mimetype, "text": text})
    total = sum(len(m["text"]) for m in merged)
    if total > limit:  # keep the most recent text
        budget = limit
        for m in reversed(merged):
            m["text"] = m["text"][-budget:] if budget > 0 else ""
            budget -= len(m["text"])
        merged = [m for m in merged if m["text"]]
        merged[0]["text"] = f"… [{total - limit:,} earlier characters cut] …\n" + merged[0]["text"]
    return merged


def _run_report(cid, explicit, names):
    view = _CTX.cells[cid]
    return {"cell_id": cid, "name": names.get(cid), "status": _status(view),
            "errors": _errors(view, live=True), "explicit": explicit}


def _errors_payload(graph, names):
    cells = []
    for view in _CTX.cells:
        errs = _errors(view, live=False)
        syntax = graph.info[view.id][2]
        if syntax:
            errs.append({"kind": "syntax", "message": syntax, "exception_type": "SyntaxError",
                         "traceback": None})
        if errs:
            cells.append({"cell_id": view.id, "name": names.get(view.id), "status": _status(view),
                          "errors": errs})
    return {"cells": cells, "cycles": graph.cycles,
            "multiply_defined": {n: ids for n, ids in sorted(graph.multiply.items())}}


def _jsonable(value):
    try:
        return _json.loads(_json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


def _classify(exc):
    """A marimo exception -> error kind (its checks run when the context exits)."""
    text = str(exc)
    if isinstance(exc, SyntaxError):
        return "validation"
    if isinstance(exc, RuntimeError) and (text.startswith("Multiply-defined")
                                          or text.startswith("Cycles detected")):
        return "validation"
    if type(exc).__name__ == "StaleCellError":
        return "stale"
    if isinstance(exc, ValueError):
        return "validation"
    if isinstance(exc, KeyError):
        return "not_found"
    return "internal"


def _emit(payload):
    line = _TAG + _json.dumps(payload, default=str) + "\n"
    # One print is capped near 1 MB by marimo; write big results in pieces.
    for start in range(0, len(line), 65536):
        _sys.stdout.write(line[start:start + 65536])
        _sys.stdout.flush()
'''

_EPILOGUE = r"""

async def _wrapped():
    try:
        return {"ok": True, "result": await _main(_ARGS)}
    except _Refused as exc:
        return {"ok": False, "error": {"kind": exc.kind, "type": "Refused", "message": str(exc),
                                       **exc.details}}
    except Exception as exc:  # reported to the caller, who raises the matching error
        return {"ok": False, "error": {
            "kind": _classify(exc), "type": type(exc).__name__, "message": str(exc),
            "traceback": _cut("".join(_traceback.format_exception(exc)), 6000)}}

_emit(await _wrapped())
"""

_CELLS = r"""
async def _main(args):
    cells = _DOC.cells
    start = max(0, args["offset"])
    stop = len(cells) if args["limit"] is None else start + max(0, args["limit"])
    page = []
    for i, view in enumerate(_CTX.cells):
        if i < start:
            continue
        if i >= stop:
            break
        cell = cells[i]
        code = cell.code
        defs, refs, syntax = _analyse(cell.id, code)
        first = next((line.strip() for line in code.splitlines() if line.strip()), "")
        page.append({
            "id": cell.id, "name": _name(cell),
            "preview": first if len(first) <= 80 else first[:79] + "…",
            "status": _status(view), "has_output": _has_output(view),
            "has_errors": bool(view.errors) or syntax is not None,
            "defs": sorted(defs), "refs": sorted(r for r in refs if r not in _BUILTINS),
            "code_hash": _hash(code, cell.id), "lines": code.count("\n") + 1 if code else 0,
        })
    return {"cells": page, "total": len(cells), "offset": start,
            "notebook_version": _version(_pairs())}
"""

_READ = r"""
async def _main(args):
    cid = _resolve(args["cell"])
    cell = _DOC.get_cell(cid)
    view = _CTX.cells[cid]
    defs, refs, syntax = _analyse(cid, cell.code)
    return {
        "id": cid, "name": _name(cell), "code": cell.code, "code_hash": _hash(cell.code, cid),
        "kernel_code": _kernel_code(cid, cell.code),
        "status": _status(view), "hide_code": bool(cell.config.hide_code),
        "disabled": bool(cell.config.disabled), "defs": sorted(defs),
        "refs": sorted(r for r in refs if r not in _BUILTINS), "syntax_error": syntax,
        "output": _output(view, args["max_output_chars"]),
        "console": _console(view, args["max_console_chars"]),
        "errors": _errors(view, live=False), "notebook_version": _version(_pairs()),
    }
"""

_CODES = r"""
async def _main(args):
    codes = {}
    for ref in args["cells"]:
        try:
            codes[ref] = _DOC.get_cell(_resolve(ref)).code
        except _Refused:
            continue  # unknown cell: the caller shows less; the tool reports it
    return codes
"""

_GRAPH = r"""
async def _main(args):
    names = {c.id: _name(c) for c in _DOC.cells}
    graph = _Graph(_pairs())
    result = graph.payload(names)
    result["focus"] = None
    if args["cell"] is not None:
        result["focus"] = graph.focus(_resolve(args["cell"]), names)
    result["notebook_version"] = _version(_pairs())
    return result
"""

_ERRORS = r"""
async def _main(args):
    names = {c.id: _name(c) for c in _DOC.cells}
    result = _errors_payload(_Graph(_pairs()), names)
    result["notebook_version"] = _version(_pairs())
    return result
"""

_APPLY = r"""
def _same_code(stored, wanted):
    # Equal, or equal up to marimo's format-on-save (same syntax tree).
    if stored == wanted:
        return True
    try:
        return _ast.dump(_ast.parse(stored)) == _ast.dump(_ast.parse(wanted))
    except SyntaxError:
        return False


class _Batch:
    # Replays the changes on a model of the notebook (order, code, names) while
    # queueing them on the code-mode context, so every check sees the state the
    # change will meet, and any refusal leaves the context with nothing applied.

    def __init__(self, ctx):
        self.ctx = ctx
        self.order = [c.id for c in _DOC.cells]
        self.code = {c.id: c.code for c in _DOC.cells}
        self.names = {c.id: _name(c) for c in _DOC.cells}
        self.before = _Graph([(cid, self.code[cid]) for cid in self.order])
        self.created, self.gone, self.to_run, self.changed = {}, {}, [], set()

    def target(self, ref, i):
        if ref.startswith("@"):
            index = int(ref[1:]) if ref[1:].isdigit() else -1
            if index not in self.created:
                raise _Refused("not_found", f"{ref!r} must name an earlier create change of "
                               "this batch by its index, e.g. '@0'.", cell=ref)
            ref = self.created[index]
        if ref in self.gone:
            raise _Refused("validation", f"cell {ref!r} is deleted earlier in this batch "
                           f"(change {self.gone[ref]}).", cell_id=ref)
        return _resolve(ref, self.order, self.names)

    def anchor(self, ch, i):
        ref = ch.get("before") or ch.get("after")
        return (self.target(ref, i) if ref else None), bool(ch.get("after"))

    def place(self, cid, anchor, after):
        if anchor == cid:
            raise _Refused("validation", "a cell cannot be placed next to itself.", cell_id=cid)
        if cid in self.order:
            self.order.remove(cid)
        if anchor is None:
            self.order.append(cid)
        else:
            self.order.insert(self.order.index(anchor) + (1 if after else 0), cid)

    def check_syntax(self, new_code):
        error = _analyse("", new_code)[2]
        if error:
            raise _Refused("validation", f"syntax error at {error}.", syntax_error=error)

    def check_cas(self, cid, expected):
        current = self.code[cid]
        now = _hash(current, cid)
        if expected is not None and now != expected:
            ran = _kernel_code(cid, current)
            if ran is not None:
                # Unsettled: which text is the person's newest is not known here, so no
                # hash is offered to retry with; a fresh read_cell shows both.
                raise _Refused("unsettled", f"cell {cid} changed since it was read, and the "
                               "kernel last ran code that differs from the notebook's text.",
                               cell_id=cid, current_code=current, kernel_code=ran)
            raise _Refused("stale", f"cell {cid} changed since it was read (expected hash "
                           f"{expected}, now {now}).", cell_id=cid,
                           current_code=current, current_hash=now)
        return current

    def check_descendants(self, cid, expected):
        # The delete's compare-and-swap: a cell may have gained dependents (a person typed
        # one) since the agent inspected the graph. Checked on the batch's own state.
        if expected is None:
            return
        now = _Graph([(c, self.code[c]) for c in self.order])
        new = now.sort(now.closure(cid, now.children) - set(expected))
        if new:
            names = {c: sorted(now.info[c][1] & now.info[cid][0]) for c in new}
            detail = ", ".join(f"{c} (reads {', '.join(names[c]) or 'indirectly'})" for c in new)
            raise _Refused("graph_changed", f"cell {cid} has descendants that were not "
                           f"checked: {detail}.", cell_id=cid, new_descendants=new)

    def replaced(self, cid, current, ch):
        old = ch["old"]
        count = current.count(old) if old else 0
        if count == 1 or (count > 1 and ch["replace_all"]):
            return current.replace(old, ch["new"], -1 if ch["replace_all"] else 1)
        if count:
            lines, at = [], current.find(old)
            while at >= 0 and len(lines) < 20:
                lines.append(str(current.count("\n", 0, at) + 1))
                at = current.find(old, at + 1)
            why = (f"matches {count} times (at lines {', '.join(lines)}); add surrounding "
                   "text to make it unique, or set replace_all")
        else:
            loose = old.strip() and " ".join(old.split()) in " ".join(current.split())
            why = "was not found" + (" (it would match if whitespace were ignored: copy the "
                                     "exact indentation and line breaks)" if loose else "")
        raise _Refused("match", f"the `old` text {why} in cell {cid}.", cell_id=cid,
                       matches=count, current_code=current, current_hash=_hash(current, cid))

    def step(self, i, ch):
        op, ctx = ch["op"], self.ctx
        result = {"index": i, "op": op, "cell_id": None, "action": op, "diff": None,
                  "deleted_code": None, "defined_names": [], "dependents": []}
        if op == "create":
            self.check_syntax(ch["code"])
            name = ch.get("name") or None
            if name is not None and name in self.names.values():
                raise _Refused("validation", f"another cell is already named {name!r}; cell "
                               "names must be unique.")
            anchor, after = self.anchor(ch, i)
            cid = ctx.create_cell(ch["code"], hide_code=ch["hide_code"], name=name,
                                  before=None if after else anchor, after=anchor if after else None)
            self.place(cid, anchor, after)
            self.created[i] = cid
            self.code[cid], self.names[cid] = ch["code"], name
            self.changed.add(cid)
            result.update(cell_id=cid, action="created", requested=ch["code"])
        elif op in ("edit", "replace"):
            cid = self.target(ch["cell"], i)
            current = self.check_cas(cid, ch.get("expected_hash"))
            new = ch["code"] if op == "edit" else self.replaced(cid, current, ch)
            self.check_syntax(new)
            if new != current:
                ctx.edit_cell(cid, code=new)
                self.changed.add(cid)
                self.code[cid] = new
            if op == "replace":
                result["diff"] = "\n".join(_difflib.unified_diff(
                    current.splitlines(), new.splitlines(),
                    f"{cid} (before)", f"{cid} (after)", lineterm=""))
            action = ("edited" if op == "edit" else "replaced") if new != current else "unchanged"
            result.update(cell_id=cid, action=action, requested=new)
        elif op == "delete":
            cid = self.target(ch["cell"], i)
            self.check_descendants(cid, ch.get("expected_descendants"))
            result.update(cell_id=cid, action="deleted", deleted_code=self.code[cid],
                          defined_names=sorted(_analyse(cid, self.code[cid])[0]))
            ctx.delete_cell(cid)
            self.order.remove(cid)
            del self.code[cid]
            result["name"] = self.names.pop(cid)
            self.gone[cid] = i
            return result
        elif op == "move":
            cid = self.target(ch["cell"], i)
            anchor, after = self.anchor(ch, i)
            if anchor is None:
                raise _Refused("validation", "a move needs `before` or `after`.")
            self.place(cid, anchor, after)
            ctx.move_cell(cid, before=None if after else anchor, after=anchor if after else None)
            result.update(cell_id=cid, action="moved")
        elif op == "run":
            cid = self.target(ch["cell"], i)
            result.update(cell_id=cid, action="ran")
        else:
            raise _Refused("validation", f"unknown op {op!r}.")
        if op != "move" and ch.get("run", op == "run"):
            self.to_run.append(cid)
        result["name"] = self.names.get(cid)
        return result

    def check_graph(self):
        # marimo's own dry run sees only cells the kernel has run; check every cell's code.
        after = _Graph([(cid, self.code[cid]) for cid in self.order])
        fresh = {n: ids for n, ids in after.multiply.items()
                 if not set(ids) <= set(self.before.multiply.get(n, ()))}
        if fresh:
            detail = "; ".join(f"{n!r} in cells {', '.join(ids)}" for n, ids in fresh.items())
            raise _Refused("validation", "The batch would define a name in more than one cell: "
                           f"{detail}. Each name may be defined by one cell only.",
                           multiply_defined=fresh)
        old_cycles = [set(c) for c in self.before.cycles]
        cycles = [c for c in after.cycles if not any(set(c) <= old for old in old_cycles)]
        if cycles:
            detail = " | ".join(after.describe_cycle(c) for c in cycles)
            raise _Refused("validation", f"The batch would create a dependency cycle: {detail}.",
                           cycles=cycles)
        return after


def _verify(batch, results, after):
    # Applied: check every change landed, in the document marimo changed (what it saves
    # and sends to the browser) and in the kernel's own graph (what runs). The document
    # here is the context's snapshot with the transaction applied; the server-side copy
    # is re-read only by Notebook(verify=True), at the cost of a second execute.
    stored = {c.id: c.code for c in _DOC.cells}
    kernel = _CTX.graph.cells
    order_ok = [c.id for c in _DOC.cells] == batch.order
    for result in results:
        cid, sets_code = result["cell_id"], result.pop("requested", None) is not None
        # Later changes of the batch may change the same cell again: compare with its final code.
        requested = batch.code.get(cid) if sets_code else None
        problem = None
        if result["op"] == "delete":
            if cid in stored:
                problem = "the cell is still in the notebook"
            elif cid in kernel:
                problem = "the kernel still has the cell"
            lost = set(result["defined_names"]) - set(after.by_name)
            result["dependents"] = [c for c in after.order if after.info[c][1] & lost]
        elif cid not in stored:
            problem = "the cell is not in the notebook"
        elif requested is not None and not _same_code(stored[cid], requested):
            problem = "the notebook holds different code than requested"
        elif (requested is not None and cid in kernel
              and not _same_code(kernel[cid].code, requested)):
            problem = "the kernel holds different code than requested"
        elif result["op"] in ("create", "move") and not order_ok:
            problem = "the cell order differs from the requested order"
        result["code_hash"] = _hash(stored[cid], cid) if cid in stored else None
        result["formatted"] = bool(requested is not None and cid in stored
                                   and stored[cid] != requested)
        result["verified"] = problem is None
        result["problem"] = problem
    return order_ok


async def _main(args):
    results, started = [], _time.perf_counter()
    async with _CTX as ctx:
        batch = _Batch(ctx)
        for i, ch in enumerate(args["changes"]):
            try:
                results.append(batch.step(i, ch))
            except (_Refused, ValueError, KeyError) as exc:
                kind = exc.kind if isinstance(exc, _Refused) else _classify(exc)
                details = exc.details if isinstance(exc, _Refused) else {}
                text = str(exc) if isinstance(exc, _Refused) else f"{type(exc).__name__}: {exc}"
                raise _Refused(kind, f"change {i} ({ch.get('op')}): {text}", change_index=i,
                               **details) from None
        for cid in dict.fromkeys(batch.to_run):
            if cid in batch.gone:
                raise _Refused("validation", f"cell {cid} is deleted in this batch and cannot "
                               "also run.", cell_id=cid)
            ctx.run_cell(cid)
        after = batch.check_graph()
        checked = _time.perf_counter()
    # Leaving the context applied the batch (or raised: then nothing was applied).
    applied = _time.perf_counter()
    order_ok = _verify(batch, results, after)
    explicit, reactive = set(batch.to_run), set()
    if explicit and _CTX._kernel.reactive_execution_mode == "autorun":
        for cid in explicit | (batch.changed & set(after.order)):
            reactive |= after.closure(cid, after.children)
    names = {c.id: _name(c) for c in _DOC.cells}
    ran = [_run_report(c.id, c.id in explicit, names)
           for c in _DOC.cells if c.id in explicit or c.id in reactive]
    timings = {"check_ms": (checked - started) * 1000, "apply_ms": (applied - checked) * 1000,
               "report_ms": (_time.perf_counter() - applied) * 1000}
    return {"changes": results, "ran": ran, "order_ok": order_ok, "timings": timings,
            "order": [c.id for c in _DOC.cells], "notebook_version": _version(_pairs())}
"""

_VERIFY = r"""
async def _main(args):
    stored = {c.id: c.code for c in _DOC.cells}
    order = [c.id for c in _DOC.cells]
    names = {c.id: _name(c) for c in _DOC.cells}
    problems = {}
    for item in args["expect"]:
        cid, want = item["cell_id"], item["code_hash"]
        if item["present"] and cid not in stored:
            problems[cid] = "the cell is not in the notebook"
        elif not item["present"] and cid in stored:
            problems[cid] = "the cell is still in the notebook"
        elif want is not None and cid in stored and _hash(stored[cid], cid) != want:
            problems[cid] = "the notebook holds different code than the change stored"
    ran = []
    for cid in args["ran"]:
        if cid in stored:
            report = _run_report(cid, False, names)
            view = _CTX.cells[cid]
            report["errors"] = _errors(view, live=False)
            report["has_output"] = _has_output(view)
            ran.append(report)
    return {"problems": problems, "order": order, "ran": ran,
            "notebook_version": _version(_pairs())}
"""

_PACKAGES_LIST = r"""
async def _main(args):
    manager = _CTX._kernel.packages_callbacks.package_manager
    packages = [{"name": p.name, "version": p.version} for p in _CTX.packages.list()]
    return {"manager": getattr(manager, "name", None), "packages": packages}
"""

_PACKAGES_CHANGE = r"""
async def _main(args):
    manager = _CTX._kernel.packages_callbacks.package_manager
    async with _CTX as ctx:
        queue = ctx.packages.add if args["action"] == "add" else ctx.packages.remove
        queue(*args["names"])
        # Flushed here rather than on exit: exit prints the outcomes but drops them.
        outcomes = await ctx.packages._flush()
    results = [{"package": r.op.package, "action": args["action"], "outcome": r.outcome}
               for r in outcomes]
    return {"manager": getattr(manager, "name", None), "results": results,
            "restart_required": any(r["outcome"] == "restart-required" for r in results),
            "manager_missing": manager is None}
"""

_SET_UI = r"""
async def _main(args):
    name = args["name"]
    async with _CTX as ctx:
        if name not in ctx.globals:
            raise _Refused("not_found", f"No variable {name!r} in the kernel: the cell that "
                           "defines it may not have run.", cell=name)
        element = ctx.globals[name]
        if not (hasattr(element, "_id") and hasattr(element, "value")):
            raise _Refused("validation", f"{name!r} is a {type(element).__name__}, not a "
                           "marimo UI element (mo.ui.*).")
        before = _jsonable(element.value)
        ctx.set_ui_value(element, args["value"])
    # Values are applied (and dependent cells re-run) when the context exits.
    current = _CTX.globals.get(name)
    value = _jsonable(getattr(current, "value", None))
    names = {c.id: _name(c) for c in _DOC.cells}
    graph = _Graph(_pairs())
    readers = {cid for cid in graph.order if name in graph.info[cid][1]}
    for cid in list(readers):
        readers |= graph.closure(cid, graph.children)
    ran = [_run_report(cid, False, names) for cid in graph.sort(readers)]
    return {"name": name, "element_type": type(element).__name__, "requested": args["value"],
            "before": before, "value": value, "took": value == _jsonable(args["value"]),
            "ran": ran}
"""

_VARIABLES = r"""
def _describe(name, value, defined_by, max_repr):
    item = {"name": name, "defined_by": defined_by, "type": None, "repr": None,
            "shape": None, "columns": None, "length": None}
    kind = type(value)
    item["type"] = kind.__qualname__ if kind.__module__ == "builtins" else (
        f"{kind.__module__}.{kind.__qualname__}")
    limiter = _reprlib.Repr()
    limiter.maxstring = limiter.maxother = max_repr
    try:
        item["repr"] = _cut(limiter.repr(value), max_repr)
    except Exception as exc:  # any object's __repr__ may raise
        item["repr"] = f"<repr failed: {type(exc).__name__}>"
    try:
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
            item["shape"] = list(shape)
        columns = getattr(value, "columns", None)
        if columns is not None and not callable(columns):
            item["columns"] = [str(c) for c in list(columns)[:50]]
        if not isinstance(value, (str, bytes)) and hasattr(value, "__len__") and not (
                isinstance(value, type)):
            item["length"] = len(value)
    except Exception:  # duck-typed probing of arbitrary objects
        pass
    return item


async def _main(args):
    env = _CTX.globals
    defined = {}
    for view in _DOC.cells:
        impl = _CTX.graph.cells.get(view.id)
        for n in sorted(impl.defs) if impl is not None else ():
            defined.setdefault(n, view.id)
    wanted = args["names"] if args["names"] is not None else list(defined)
    present = [n for n in wanted if n in env]
    page = present[: args["limit"]]
    return {"variables": [_describe(n, env[n], defined.get(n), args["max_repr"]) for n in page],
            "total": len(present), "missing": [n for n in wanted if n not in env],
            "truncated": len(present) > len(page)}
"""

_STATUS = r"""
async def _main(args):
    counts, running, queued = {}, [], []
    for view in _CTX.cells:
        status = _status(view) or "empty"
        counts[status] = counts.get(status, 0) + 1
        if status == "running":
            running.append(view.id)
        elif status == "queued":
            queued.append(view.id)
    return {"state": "running" if running or queued else "idle", "counts": counts,
            "running": running, "queued": queued, "cell_count": len(_DOC.cells),
            "notebook_version": _version(_pairs())}
"""

_SNAPSHOT = r"""
async def _main(args):
    import marimo
    names = {c.id: _name(c) for c in _DOC.cells}
    graph = _Graph(_pairs())
    cells = []
    for view in _CTX.cells:
        cell = _DOC.get_cell(view.id)
        cells.append({"id": cell.id, "name": names[cell.id], "code": cell.code,
                      "code_hash": _hash(cell.code, cell.id), "status": _status(view),
                      "hide_code": bool(cell.config.hide_code),
                      "disabled": bool(cell.config.disabled)})
    version = _version(_pairs())
    graph_payload = graph.payload(names)
    graph_payload.update(focus=None, notebook_version=version)
    errors = _errors_payload(graph, names)
    errors["notebook_version"] = version
    filename = _CTX._kernel.app_metadata.filename
    file = None
    if filename:
        with open(filename, "rb") as handle:
            data = handle.read()
        file = {"path": filename, "sha256": _hashlib.sha256(data).hexdigest(), "size": len(data)}
    return {"cells": cells, "graph": graph_payload, "errors": errors, "file": file,
            "notebook_version": version, "marimo_version": marimo.__version__}
"""


# --------------------------------------------------------------------------
# Program builders (pure)
# --------------------------------------------------------------------------


_LAUNCHER = """\
import ast as _marimo_pair_ast
_marimo_pair_result = await eval(compile({source}, "<marimo-pair>", "exec", \
flags=_marimo_pair_ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), {{"__name__": "__marimo_pair__"}})
"""


def program_source(body: str, args: Mapping[str, Any]) -> str:
    """The program itself: prelude, the arguments as one JSON literal, body, epilogue."""
    literal = repr(json.dumps(dict(args)))
    return f"{_PRELUDE}\n_ARGS = _json.loads({literal})\n{body}{_EPILOGUE}"


def _program(body: str, args: Mapping[str, Any]) -> str:
    # marimo runs its static analysis over scratchpad code before running it:
    # ~50 ms for a 16 KB program, but ~0 for one string literal. So the program
    # travels as a literal and is compiled (3 ms) and awaited in a namespace of
    # its own, which also keeps every helper name away from notebook globals.
    return _LAUNCHER.format(source=repr(program_source(body, args)))


def cells_program(*, offset: int = 0, limit: int | None = None) -> str:
    """List cells in notebook order, with a page window over them."""
    return _program(_CELLS, {"offset": offset, "limit": limit})


def read_cell_program(
    cell: str, *, max_output_chars: int = 2_000_000, max_console_chars: int = 20_000
) -> str:
    """Read one cell (by id or name): code, status, output, console, errors."""
    return _program(
        _READ,
        {
            "cell": cell,
            "max_output_chars": max_output_chars,
            "max_console_chars": max_console_chars,
        },
    )


def codes_program(cells: Sequence[str]) -> str:
    """The code of each cell (id or name) that exists, keyed by the reference given."""
    return _program(_CODES, {"cells": list(cells)})


def graph_program(cell: str | None = None) -> str:
    """The static dataflow graph; with ``cell``, that cell's relatives and dependents."""
    return _program(_GRAPH, {"cell": cell})


def errors_program() -> str:
    """Every cell with a runtime, graph or syntax error, plus cycles and multiply-defined names."""
    return _program(_ERRORS, {})


def apply_program(changes: Sequence[Mapping[str, Any]]) -> str:
    """Apply a batch of changes (JSON dicts of the `models.Change` union) atomically."""
    return _program(_APPLY, {"changes": [dict(c) for c in changes]})


def verify_program(expect: Sequence[Mapping[str, Any]], ran: Sequence[str]) -> str:
    """Re-read the session's document after an apply (a fresh snapshot, one execute later).

    Args:
        expect: ``{"cell_id", "present", "code_hash"}`` per changed cell.
        ran: ids of cells the apply ran, whose fresh outputs and errors to read.
    """
    return _program(_VERIFY, {"expect": [dict(e) for e in expect], "ran": list(ran)})


def packages_list_program() -> str:
    """The packages installed in the kernel's environment."""
    return _program(_PACKAGES_LIST, {})


def packages_change_program(action: Literal["add", "remove"], names: Sequence[str]) -> str:
    """Install or remove packages with the notebook's package manager."""
    return _program(_PACKAGES_CHANGE, {"action": action, "names": list(names)})


def set_ui_value_program(name: str, value: Any) -> str:
    """Set the `mo.ui` element held by global ``name`` and read its value back."""
    return _program(_SET_UI, {"name": name, "value": value})


def variables_program(
    names: Sequence[str] | None = None, *, limit: int = 50, max_repr: int = 200
) -> str:
    """Describe kernel variables defined by cells (type, short repr, shape, columns)."""
    return _program(
        _VARIABLES,
        {"names": list(names) if names is not None else None, "limit": limit, "max_repr": max_repr},
    )


def status_program() -> str:
    """Cell status counts; answering at all means the kernel took our request."""
    return _program(_STATUS, {})


def snapshot_program() -> str:
    """Everything at once: cells with code, graph, errors, and the file's hash on disk."""
    return _program(_SNAPSHOT, {})


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
    "with expected_hash={current_hash}.",
    "match": "Nothing was applied. Copy `old` exactly from the current code below, or make it "
    "unique.",
    "graph_changed": "Nothing was applied. The notebook changed since your inspect_graph: call "
    "inspect_graph(cell=...) again and acknowledge the descendants it lists.",
    "unsettled": "Nothing was applied. If a person just ran this cell, the code the kernel ran "
    "(below) is their newest version and the notebook catches up within a second or two: call "
    "read_cell again, then redo your change on their version. Never drop their work.",
}
_CURRENT_CODE_LIMIT = 4000

_ERROR_CLASSES: dict[str, type[NotebookOperationError]] = {
    "not_found": CellNotFoundError,
    "validation": ValidationFailedError,
    "stale": StaleCellError,
    "match": EditMatchError,
    "graph_changed": StaleCellError,
    "unsettled": StaleCellError,
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
        CellNotFoundError, ValidationFailedError, StaleCellError, EditMatchError:
            the program refused; ``exc.details`` holds its structured facts.
        CodeExecutionError: the program failed unexpectedly, or printed no result
            (the message quotes the tail of stderr).
    """
    at = stdout.rfind(RESULT_TAG)
    if at < 0:
        raise CodeExecutionError(
            "The kernel program printed no result: it was interrupted, or marimo rejected "
            "it before it ran. Check that the kernel is idle and retry once."
            + (f"\nKernel stderr (tail):\n{_tail(stderr)}" if stderr.strip() else "")
        )
    line = stdout[at + len(RESULT_TAG) :].split("\n", 1)[0]
    try:
        payload = json.loads(line)
    except ValueError:
        raise CodeExecutionError(
            f"The kernel program's result was cut or garbled ({len(line):,} characters "
            "received). Retry with a smaller request (a page of cells, fewer variables)."
        ) from None
    if payload.get("ok"):
        return payload.get("result")
    error = dict(payload.get("error") or {})
    kind = str(error.pop("kind", "internal"))
    message = str(error.pop("message", "unknown error"))
    cls = _ERROR_CLASSES.get(kind)
    if cls is None:
        text = (
            f"The marimo-pair kernel program failed: {error.get('type', 'Error')}: {message}. "
            "This is a bug in marimo-pair-tools or an unsupported marimo version; the "
            "notebook was not changed by a failed read, but check it after a failed change."
        )
        if error.get("traceback"):
            text += f"\n{_tail(str(error['traceback']), 3000)}"
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
        text += f"\n{label}:\n```python\n{code}\n```"
    if isinstance(error.get("kernel_code"), str):
        ran = _cut_code(error["kernel_code"])
        text += f"\nCode the kernel last ran (differs from the text):\n```python\n{ran}\n```"
    raise cls(text, **error)
