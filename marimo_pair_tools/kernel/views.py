"""What a cell shows: status, output, console and errors, bounded and as JSON."""

from __future__ import annotations

import json
import traceback
from typing import Any

from marimo._ast.compiler import extract_markdown

from .analysis import Graph
from .state import ERROR_MIME, TRACEBACK_MIME, NotebookState
from .text import cut, keep_tail, plain

__all__ = ["console", "errors", "errors_payload", "has_output", "output", "run_report", "status"]


# marimo's errors that explain a status rather than report a failure of the cell itself:
# the page shows them as a note (the status says it), never as the cell's error.
NOT_ERRORS = frozenset(
    {"MarimoAncestorStoppedError", "MarimoAncestorPreventedError", "MarimoInterruptionError"}
)
_GRAPH_ERRORS = frozenset(
    {"MultipleDefinitionError", "CycleError", "DeleteNonlocalError", "ImportStarError"}
)
TRACEBACK_LIMIT = 8000
MESSAGE_LIMIT = 2000


def status(view: Any) -> str | None:
    """The cell's status as the person's page shows it (None: an empty cell, never ran).

    marimo's code mode reports the kernel's bookkeeping, which differs from the page in
    two cases: a cell ended by ``mo.stop`` is "exception" there (the page shows the
    stop's output, no error): here "stopped", and so are the cells it kept from running;
    a markdown cell of a notebook just opened is "stale" there (marimo renders it on
    open without running it; the page shows the text): here "idle".
    """
    value = view.status
    if value is None:
        return None
    value = str(getattr(value, "value", value))
    if value == "exception" and not view.errors and not own_errors(view):
        return "stopped"
    if value == "cancelled":
        notes = output_errors(view)
        if notes and all(type(e).__name__ == "MarimoAncestorStoppedError" for e in notes):
            return "stopped"
    if value == "stale" and _rendered_on_open(view):
        return "idle"
    return value


def _rendered_on_open(view: Any) -> bool:
    """A markdown cell marimo rendered when the notebook opened, and has not run since."""
    if getattr(view, "_impl", None) is not None or not has_output(view):
        return False
    try:
        return extract_markdown(view.code) is not None
    except SyntaxError:
        return False


def output_errors(view: Any) -> list[Any]:
    """marimo's error structs in the cell's output (what the page shows in red)."""
    out = view.output
    if out is None or out.mimetype != ERROR_MIME or not isinstance(out.data, (list, tuple)):
        return []
    return list(out.data)


def is_note(error: Any) -> bool:
    """Whether marimo's error explains why the cell did not run instead of being its own.

    A cell whose ancestor raised shows that ancestor's exception (``raising_cell`` set).
    """
    name = type(error).__name__
    return name in NOT_ERRORS or (
        name == "MarimoExceptionRaisedError" and getattr(error, "raising_cell", None) is not None
    )


def own_errors(view: Any) -> list[Any]:
    """The output errors that are failures of this cell (not notes on a status)."""
    return [e for e in output_errors(view) if not is_note(e)]


def _describe(error: Any) -> str:
    try:
        return str(error.describe())
    except Exception:  # noqa: BLE001 - a marimo struct we do not know; its type still says
        return ""


def _live_traceback(exc: BaseException) -> str:
    """The exception's traceback, limited to frames of notebook cells."""
    frames = traceback.extract_tb(exc.__traceback__)
    cell_frames = [f for f in frames if "__marimo__cell_" in (f.filename or "")]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(cell_frames or frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def errors(view: Any, live: bool) -> list[dict[str, Any]]:
    """Errors of one cell, as plain text. live=True: from the kernel now; else what the page shows.

    Besides the exception the kernel holds, marimo reports some failures only in the
    cell's output: a failing ``mo.sql`` (``MarimoSQLError``) and its annotated errors
    (a module shadowed by a local file, strict-mode and internal errors). Tracebacks
    arrive as highlighted HTML; they are turned into text and cut keeping their end.
    """
    shown = None
    if not live:
        for out in view.console_outputs:
            if out.mimetype == TRACEBACK_MIME and isinstance(out.data, str):
                shown = plain(out.data)
    result = []
    for err in view.errors:
        item: dict[str, Any] = {
            "kind": err.kind,
            "message": cut(err.msg, MESSAGE_LIMIT),
            "exception_type": None,
            "traceback": None,
        }
        if err.exception is not None:
            item["exception_type"] = type(err.exception).__name__
            item["traceback"] = keep_tail(shown or _live_traceback(err.exception), TRACEBACK_LIMIT)
        result.append(item)
    described = {err.msg for err in view.errors}
    raised = any(item["kind"] == "runtime" for item in result)
    for error in own_errors(view):
        name = type(error).__name__
        text = _describe(error)
        if text in described or (name == "MarimoExceptionRaisedError" and raised):
            continue  # the exception above, or a graph error code mode already reports
        if name in _GRAPH_ERRORS and any(item["kind"] == "graph" for item in result):
            continue
        kind = "graph" if name in _GRAPH_ERRORS else "syntax" if "Syntax" in name else "runtime"
        shown_type = getattr(error, "exception_type", None) or name
        result.append(
            {
                "kind": kind,
                "message": cut(f"{shown_type}: {text}" if text else shown_type, MESSAGE_LIMIT),
                "exception_type": shown_type,
                "traceback": keep_tail(shown, TRACEBACK_LIMIT) if shown else None,
            }
        )
    return result


def has_output(view: Any) -> bool:
    """Whether the cell shows an output other than an error."""
    out = view.output
    return out is not None and out.mimetype != ERROR_MIME and bool(out.data)


def output(view: Any, limit: int) -> dict[str, Any] | None:
    """The cell's output, cut to ``limit`` characters (images and bundles omitted, not cut)."""
    out = view.output
    if out is None or (not out.data and out.mimetype != ERROR_MIME):
        return None
    item: dict[str, Any] = {
        "mimetype": out.mimetype,
        "data": None,
        "size": 0,
        "omitted": False,
        "errors": [],
    }
    if isinstance(out.data, (list, tuple)):
        item["errors"] = [
            {"type": type(e).__name__, "message": _describe(e), "note": is_note(e)}
            for e in out.data
        ]
        return item
    data = out.data if isinstance(out.data, str) else json.dumps(out.data, default=str)
    item["size"] = len(data)
    if len(data) > limit:
        # A cut image or JSON document is useless; cut text is still readable.
        if out.mimetype.startswith("image/") or "mimebundle" in out.mimetype:
            item["omitted"] = True
            return item
        data = cut(data, limit)
    item["data"] = data
    return item


def console(view: Any, limit: int) -> list[dict[str, Any]]:
    """The cell's console, merged by channel, keeping the most recent ``limit`` characters."""
    merged: list[dict[str, Any]] = []
    for out in view.console_outputs:
        text = out.data if isinstance(out.data, str) else json.dumps(out.data, default=str)
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


def run_report(
    state: NotebookState, cid: str, explicit: bool, names: dict[str, str | None]
) -> dict[str, Any]:
    """How a cell that ran ended: status and live errors."""
    view = state.ctx.cells[cid]
    return {
        "cell_id": cid,
        "name": names.get(cid),
        "status": status(view),
        "errors": errors(view, live=True),
        "explicit": explicit,
    }


def errors_payload(
    state: NotebookState, graph: Graph, names: dict[str, str | None]
) -> dict[str, Any]:
    """Every cell with an error (runtime or syntax), plus cycles and multiply-defined names."""
    cells = []
    for view in state.ctx.cells:
        errs = errors(view, live=False)
        syntax = graph.info[view.id][2]
        if syntax:
            errs.append(
                {
                    "kind": "syntax",
                    "message": syntax,
                    "exception_type": "SyntaxError",
                    "traceback": None,
                }
            )
        if errs:
            cells.append(
                {
                    "cell_id": view.id,
                    "name": names.get(view.id),
                    "status": status(view),
                    "errors": errs,
                }
            )
    return {
        "cells": cells,
        "cycles": graph.cycles,
        "multiply_defined": dict(sorted(graph.multiply.items())),
    }
