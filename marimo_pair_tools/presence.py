"""Presence: the agent learns what the person did, and the person sees what the agent does.

Before each tool call the toolkit sends one short program to the kernel
(`presence_program`). It

- reads a fingerprint of every cell: id, name, code hash (the same ``code_hash``
  the tools report), the first error, and how often a *person* ran it: a
  post-execution hook, installed once per kernel, counts the runs of requests that
  do not carry our ``X-Pair-Client`` header (runs our tools cause, reactive ones
  included, carry it);
- shows the person what the agent is about to do, as a toast in marimo's page
  (marimo's ``alert`` notification; see ``docs/presence.md`` for what else marimo
  0.25 offers and why it is not used).

`Presence` compares that fingerprint with what the agent last knew (the previous
one, plus the effects of the agent's own calls, taken from their results) and
returns a short digest of the rest: cells the person edited, added, deleted or
ran, and new errors. The tools put it in front of their result.

The kernel-side program is a string here, written apart from the kernel package
(`marimo_pair_tools.kernel`) while that was being built; it belongs there, as one
more read sent as a short call (and folded into each tool's own call, which would
remove its extra request). It uses the same marimo internals and the same hash
folding as `kernel.state.NotebookState.hash` (`tests/test_presence.py` checks that
they agree).
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .client import PAIR_CLIENT_HEADER
from .models import untrusted

__all__ = ["PRESENCE_TAG", "CellMark", "Presence", "announcement", "presence_program"]

PRESENCE_TAG = "<<marimo-pair:presence>>"

# Kernel side. Synchronous and read-only (no code-mode context is entered).
_PROGRAM = r"""
import hashlib as _hashlib
import html as _html
import json as _json
import sys as _sys
import types as _types

import marimo._code_mode as _cm
from marimo._ast.names import is_internal_cell_name as _is_internal_name
from marimo._runtime.context import get_context as _runtime_context

_STATE = _sys.modules.get("_marimo_pair_presence")
if _STATE is None:
    _STATE = _sys.modules["_marimo_pair_presence"] = _types.ModuleType("_marimo_pair_presence")
    _STATE.person_runs = {}


def _from_pair_client():
    try:
        request = _runtime_context().request
    except (LookupError, RuntimeError, AttributeError):
        return False
    headers = getattr(request, "headers", None) or {}
    return any(str(key).lower() == HEADER for key in headers)


def _count_person_runs(cell, ctx, run_result):
    if cell.cell_id != "__scratch__" and not _from_pair_client():
        _STATE.person_runs[cell.cell_id] = _STATE.person_runs.get(cell.cell_id, 0) + 1


if not getattr(_STATE, "hooked", False):
    try:
        from marimo._runtime.runner.hooks import Priority as _Priority
        _runtime_context()._kernel._hooks.add_post_execution(_count_person_runs, _Priority.LATE)
        _STATE.hooked = True
    except (ImportError, AttributeError, LookupError, RuntimeError):
        _STATE.hooked = False  # a marimo without these internals: runs go unseen

_CTX = _cm.get_context(skip_staleness_check=True)
_DOC = _CTX._document


def _hash(cid, code):
    # As `kernel.state.NotebookState.hash`: fold in the code the kernel last ran.
    impl = _CTX.graph.cells.get(cid)
    ran = getattr(impl, "code", None)
    text = code if ran is None or ran == code else code + "\0ran\0" + ran
    return _hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


_NOTES = ("MarimoAncestorStoppedError", "MarimoAncestorPreventedError", "MarimoInterruptionError")


def _first_error(view):
    # As `kernel.views.errors`: a failing mo.sql and marimo's annotated errors are only
    # in the output; an ancestor's error or a stop shown there is not this cell's.
    if view.errors:
        return view.errors[0].msg
    out = view.output
    if out is None or out.mimetype != "application/vnd.marimo+error":
        return None
    for err in out.data if isinstance(out.data, (list, tuple)) else ():
        kind = type(err).__name__
        if kind in _NOTES or getattr(err, "raising_cell", None) is not None:
            continue
        try:
            return f"{getattr(err, 'exception_type', None) or kind}: {err.describe()}"
        except Exception:
            return kind
    return None


_cells = []
for _view, _cell in zip(_CTX.cells, _DOC.cells):
    _error = _first_error(_view)
    _first = next((line.strip() for line in _cell.code.splitlines() if line.strip()), "")
    _cells.append({
        "id": _cell.id,
        "name": None if not _cell.name or _is_internal_name(_cell.name) else _cell.name,
        "hash": _hash(_cell.id, _cell.code),
        "preview": _first[:60],
        "error": _error[:200] if _error else None,
        "runs": _STATE.person_runs.get(_cell.id, 0),
    })

if ANNOUNCE is not None:
    from marimo._messaging.notification import AlertNotification
    from marimo._messaging.notification_utils import broadcast_notification
    broadcast_notification(AlertNotification(
        title=_html.escape(ANNOUNCE[0]), description=_html.escape(ANNOUNCE[1])))

print(TAG + _json.dumps({"cells": _cells, "counting_runs": bool(_STATE.hooked)}))
"""


def presence_program(announce: tuple[str, str] | None = None) -> str:
    """The kernel program: install the run counter once, read fingerprints, maybe toast.

    It runs in a namespace of its own (no notebook name is touched) and prints one
    line, ``PRESENCE_TAG`` + JSON.

    Args:
        announce: ``(title, text)`` of a toast to show in the person's page
            (escaped there: it is shown as HTML).
    """
    source = (
        f"HEADER = {PAIR_CLIENT_HEADER.lower()!r}\nTAG = {PRESENCE_TAG!r}\n"
        f"ANNOUNCE = {announce!r}\n{_PROGRAM}"
    )
    return f"exec(compile({source!r}, '<marimo-pair-presence>', 'exec'), {{}})"


def parse_presence(stdout: str) -> dict[str, CellMark] | None:
    """The fingerprints a `presence_program` printed, in notebook order; None if none."""
    at = stdout.rfind(PRESENCE_TAG)
    if at < 0:
        return None
    try:
        payload = json.loads(stdout[at + len(PRESENCE_TAG) :].split("\n", 1)[0])
    except ValueError:
        return None
    return {
        c["id"]: CellMark(
            name=c.get("name"),
            hash=str(c["hash"]),
            preview=str(c.get("preview") or ""),
            error=c.get("error"),
            runs=int(c.get("runs") or 0),
        )
        for c in payload.get("cells", [])
    }


@dataclass(frozen=True)
class CellMark:
    """What the agent knows of one cell: enough to tell that someone changed it."""

    name: str | None
    hash: str
    preview: str
    error: str | None
    runs: int
    """How often a person ran it (runs our tools cause are not counted)."""

    def label(self, cell_id: str) -> str:
        return f"{cell_id} ({self.name})" if self.name else cell_id


# ------------------------------------------------------------------ what the person sees

_CHANGES = {
    "create_cell": "adding a cell",
    "edit_cell": "editing cell {cell}",
    "delete_cell": "deleting cell {cell}",
    "move_cell": "moving cell {cell}",
    "run_cell": "running cell {cell}",
    "apply_changes": "applying {count} change(s) at once",
    "execute_code": "running code in the scratchpad (nothing is saved)",
    "install_packages": "changing packages: {packages}",
    "set_ui_value": "setting {name}",
}
_READS = {
    "list_notebooks": "looking at the open notebooks",
    "read_notebook": "reading the notebook",
    "read_cell": "reading cell {cell}",
    "inspect_graph": "checking what depends on {cell}",
    "get_errors": "checking for errors",
    "get_variables": "looking at variables",
}
Announce = Literal["changes", "all", "off"]


def announcement(tool: str, args: Mapping[str, Any], level: Announce) -> str | None:
    """One line for the person about the tool call the agent is making, or None."""
    template = _CHANGES.get(tool) or (_READS.get(tool) if level == "all" else None)
    if template is None or level == "off":
        return None
    code = str(args.get("code") or "")
    first = next((line.strip() for line in code.splitlines() if line.strip()), "")
    values = {
        "cell": args.get("cell") or ", ".join(args.get("cells") or []) or "the whole notebook",
        "count": len(args.get("changes") or []),
        "packages": ", ".join([*(args.get("add") or []), *(args.get("remove") or [])]),
        "name": args.get("name") or "a widget",
    }
    text = template.format(**values)
    if first and tool in ("create_cell", "execute_code"):
        text += f": {first[:80]}"
    return text


# ------------------------------------------------------------------ what the agent learns


@dataclass
class Presence:
    """What the agent last knew of the notebook, and the digest of what changed since.

    One per toolkit (every tool shares it). Not thread-safe by itself: the tools
    hold `lock` from a call's look to its learning, so that one call's own change
    is never reported to another as the person's.

    Args:
        announce: which calls to show in the person's page: ``changes`` (those that
            change the notebook or run code), ``all``, or ``off``.
        max_items: the digest lists at most this many changes (then a count).
    """

    announce: Announce = "changes"
    max_items: int = 8
    known: dict[str, CellMark] | None = None
    """The cells as the agent knows them; None before the first look."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Held by a sync tool call from its look to its learning."""
    _accept: set[str] = field(default_factory=set, repr=False)
    _undo: tuple[dict[str, CellMark] | None, set[str]] | None = field(default=None, repr=False)
    _async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    def async_lock(self) -> asyncio.Lock:
        """`lock` for async tool calls: one per event loop (an asyncio lock is bound to one)."""
        loop = asyncio.get_running_loop()
        lock = self._async_locks.get(loop)
        if lock is None:
            lock = self._async_locks[loop] = asyncio.Lock()
        return lock

    def program(self, tool: str, args: Mapping[str, Any]) -> str:
        """The presence program for a call of ``tool`` (with its toast, if any)."""
        line = announcement(tool, args, self.announce)
        return presence_program(("marimo-pair agent", line) if line else None)

    def look(self, now: dict[str, CellMark]) -> str | None:
        """Compare what the kernel shows now with what the agent knew; adopt ``now``.

        Returns:
            The digest for the model, or None when nothing changed that the agent
            did not do (always None on the first look).
        """
        before, accept = self.known, self._accept
        self._undo = (before, accept)
        self.known, self._accept = dict(now), set()
        if before is None:
            return None
        items: list[str] = []
        for cid, mark in now.items():
            old = before.get(cid)
            if old is None:
                items.append(f"added cell {mark.label(cid)}: {mark.preview or '(empty)'}")
                continue
            if mark.hash != old.hash:
                items.append(f"edited cell {mark.label(cid)}")
            if mark.runs > old.runs:
                times = mark.runs - old.runs
                items.append(f"ran cell {mark.label(cid)}" + (f" ({times}x)" if times > 1 else ""))
            if mark.error and mark.error != old.error and cid not in accept:
                items.append(f"new error in cell {mark.label(cid)}: {mark.error}")
        items += [f"deleted cell {old.label(cid)}" for cid, old in before.items() if cid not in now]
        if not items:
            return None
        shown = items[: self.max_items]
        more = len(items) - len(shown)
        if more:
            shown.append(f"and {more} more change(s)")
        # Names, code and error text are the notebook's: data for the model, never orders.
        return (
            "[Since your last call, in this notebook (not your doing): the changes below. "
            "Re-read a cell before you edit it.]\n" + untrusted("\n".join(shown))
        )

    def begin(self) -> None:
        """A tool call starts (under `lock`): `undo` may only take back its own look."""
        self._undo = None

    def undo(self) -> None:
        """Take back this call's look: its digest never reached the model (the call failed)."""
        if self._undo is not None:
            self.known, self._accept = self._undo
            self._undo = None

    def learn(self, tool: str, artifact: Mapping[str, Any] | None) -> None:
        """Take in what the agent's own call did, so it is not reported back as news."""
        if self.known is None or not isinstance(artifact, Mapping):
            return
        for change in artifact.get("changes") or []:
            cid = change.get("cell_id")
            if not cid:
                continue
            if change.get("op") == "delete":
                self.known.pop(cid, None)
            elif change.get("code_hash"):
                old = self.known.get(cid)
                self.known[cid] = CellMark(
                    name=change.get("name") or (old.name if old else None),
                    hash=str(change["code_hash"]),
                    preview=old.preview if old else "",
                    error=old.error if old else None,
                    runs=old.runs if old else 0,
                )
        # Errors of cells our call ran are the agent's news, already in its result.
        self._accept |= {r["cell_id"] for r in artifact.get("ran") or [] if r.get("cell_id")}
