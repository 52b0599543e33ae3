"""The two entry points a client's short call reaches: `call` (sync) and `acall` (async).

Each prints exactly one tagged line on stdout and returns None::

    <<marimo-pair:result>>{"ok": true, "result": ...}
    <<marimo-pair:result>>{"ok": false, "error": {"kind": ..., "message": ...}}

Read operations go through `call`, with no ``await`` anywhere: marimo cancels an
async scratchpad run only at its next ``await``, but interrupts synchronous code
at once, so a timeout can always stop a read (even one stuck in a user's
``__repr__``). Only changes, which need code mode's ``async with``, use `acall`.
"""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from marimo._runtime.context.types import safe_get_context

from . import changes, evidence, fence, interrupts, reads, saved
from .state import NotebookState, Refused, classify, write_stdout
from .text import cut

__all__ = [
    "ASYNC_OPERATIONS",
    "OPERATIONS",
    "RESULT_TAG",
    "acall",
    "arun_scratchpad",
    "call",
    "run_scratchpad",
]

RESULT_TAG = "<<marimo-pair:result>>"

# Once per kernel: our async runs that never await can still be interrupted.
interrupts.install()

OPERATIONS: dict[str, Callable[[NotebookState, dict[str, Any]], Any]] = {
    "cells": reads.cells,
    "read": reads.read,
    "read_many": reads.read_many,
    "codes": reads.codes,
    "graph": reads.graph,
    "errors": reads.errors,
    "verify": reads.verify,
    "packages_list": reads.packages_list,
    "variables": reads.variables,
    "status": reads.status,
    "snapshot": reads.snapshot,
    "version": reads.version,
}
ASYNC_OPERATIONS: dict[str, Callable[[NotebookState, dict[str, Any]], Awaitable[Any]]] = {
    "apply": changes.apply,
    "packages_change": changes.packages_change,
    "set_ui_value": changes.set_ui_value,
}


def _failure(exc: Exception, state: NotebookState | None) -> dict[str, Any]:
    document = _document(state)
    if isinstance(exc, Refused):
        return {
            "ok": False,
            "error": {
                "kind": exc.kind,
                "type": "Refused",
                "message": str(exc),
                "document": document,
                **exc.details,
            },
        }
    # Reported to the caller, who raises the matching error.
    return {
        "ok": False,
        "error": {
            "kind": classify(exc),
            "type": type(exc).__name__,
            "message": str(exc),
            "document": document,
            "traceback": cut("".join(traceback.format_exception(exc)), 6000),
        },
    }


def _document(state: NotebookState | None) -> str | None:
    try:
        return state.document_id() if state is not None else None
    except Exception:  # noqa: BLE001 - the id is a courtesy; the answer matters more
        return None


def _success(result: Any, state: NotebookState) -> dict[str, Any]:
    if isinstance(result, dict):
        result["document"] = _document(state)
    return {"ok": True, "result": result}


def _emit(payload: dict[str, Any]) -> None:
    write_stdout(RESULT_TAG + json.dumps(payload, default=str) + "\n")


def _unknown(op: str) -> Refused:
    return Refused("internal", f"unknown kernel operation {op!r}")


def _fence_setup() -> tuple[str | None, str | None, int | None]:
    """Install the fence (once per kernel); the notebook file, the server's host and port."""
    ctx: Any = safe_get_context()
    kernel = getattr(ctx, "_kernel", None)
    fence.install(kernel, getattr(ctx, "stream", None))
    filename = getattr(getattr(kernel, "app_metadata", None), "filename", None)
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None) or {}
    host = next((str(v) for k, v in headers.items() if str(k).lower() == "host"), "")
    name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
    return filename, name or None, int(port) if port.isdigit() else None


def run_scratchpad(code: str, namespace: dict[str, Any], nonce: str = "") -> Any:
    """The agent's scratchpad code, inside the fence; returns its last expression's value.

    Afterwards, however the code ended, one tagged line tells what the fence refused
    and whether the notebook changed (`evidence`).
    """
    filename, host, port = _fence_setup()
    watch = evidence.Watch(nonce)
    try:
        return fence.run(code, namespace, filename, port, __name__.rsplit(".", 1)[0], host=host)
    finally:
        watch.report()


async def arun_scratchpad(code: str, namespace: dict[str, Any], nonce: str = "") -> Any:
    """`run_scratchpad` for code with a top-level ``await``."""
    filename, host, port = _fence_setup()
    watch = evidence.Watch(nonce)
    try:
        return await fence.arun(
            code, namespace, filename, port, __name__.rsplit(".", 1)[0], host=host
        )
    finally:
        watch.report()


def call(op: str, args_json: str) -> None:
    """Run read operation ``op`` with JSON arguments; print its tagged result."""
    fence.refuse_if_active("marimo-pair's own kernel calls")
    state = None
    try:
        function = OPERATIONS.get(op)
        if function is None:
            raise _unknown(op)
        state = NotebookState()
        payload = _success(function(state, json.loads(args_json)), state)
        _observe_file(state)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the caller's error
        payload = _failure(exc, state)
    _emit(payload)


def _observe_file(state: NotebookState) -> None:
    """Note the file as it matches the running notebook, to tell outside edits later."""
    # A courtesy for later checks: whatever goes wrong here, the read's answer stands.
    with contextlib.suppress(Exception):
        saved.observe(state)


async def acall(op: str, args_json: str) -> None:
    """Run change operation ``op`` with JSON arguments; print its tagged result."""
    fence.refuse_if_active("marimo-pair's own kernel calls")
    state = None
    try:
        function = ASYNC_OPERATIONS.get(op)
        if function is None:
            raise _unknown(op)
        state = NotebookState()
        payload = _success(await function(state, json.loads(args_json)), state)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the caller's error
        payload = _failure(exc, state)
    _emit(payload)
