"""What a cell shows: status, output, console and errors, bounded and as JSON."""

from __future__ import annotations

import json
import traceback
from typing import Any

from .analysis import Graph
from .state import ERROR_MIME, TRACEBACK_MIME, NotebookState
from .text import cut

__all__ = ["console", "errors", "errors_payload", "has_output", "output", "run_report", "status"]


def status(view: Any) -> str | None:
    """The cell's status as marimo's code mode reports it (None: never ran)."""
    value = view.status
    return None if value is None else str(value)


def _live_traceback(exc: BaseException) -> str:
    """The exception's traceback, limited to frames of notebook cells."""
    frames = traceback.extract_tb(exc.__traceback__)
    cell_frames = [f for f in frames if "__marimo__cell_" in (f.filename or "")]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(cell_frames or frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def errors(view: Any, live: bool) -> list[dict[str, Any]]:
    """Errors of one cell. live=True: from the kernel now; else what the person sees."""
    shown = None
    if not live:
        for out in view.console_outputs:
            if out.mimetype == TRACEBACK_MIME and isinstance(out.data, str):
                shown = out.data
    result = []
    for err in view.errors:
        item: dict[str, Any] = {
            "kind": err.kind,
            "message": err.msg,
            "exception_type": None,
            "traceback": None,
        }
        if err.exception is not None:
            item["exception_type"] = type(err.exception).__name__
            item["traceback"] = cut(shown or _live_traceback(err.exception), 8000)
        result.append(item)
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
        item["errors"] = [{"type": type(e).__name__, "message": e.describe()} for e in out.data]
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
