"""What the kernel is doing, and the words for each cause, with its way out.

The client's I/O finds the facts (``GET /api/kernel/status``, a read-only look at
the session's cells); this module turns them into one error per cause, so the
sync and async clients say exactly the same thing. A restart is advised only
when the kernel does not answer and what keeps it busy is our own code.

Which work keeps a kernel busy is read from a *kiosk* view of the session
(``GET /sse?kiosk=true``): marimo replays each cell's last status to a
read-only viewer, the scratchpad (``__scratch__``, where our code runs)
included. Nothing is sent to the kernel to find out.

The `ToolException` errors are reached through `errors` at the moment one is
raised: importing them loads langchain_core, which the plain HTTP paths skip.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import errors
from ._sse import SSEDecoder
from .errors import Cause, OutcomeUnknownError, ServerUnavailableError

if TYPE_CHECKING:
    from .errors import ExecuteTimeoutError, KernelBusyError, KernelDeadError

__all__ = [
    "KernelActivity",
    "ReplayReader",
    "busy_error",
    "dead_error",
    "queue_timeout_error",
    "server_down_after_timeout",
    "server_not_answering",
    "stream_cut_error",
    "timeout_error",
]

SCRATCH_CELL = "__scratch__"
_ACTIVE = frozenset({"queued", "running"})
_MAX_NAMED = 3
_RESTART_HOW = "the browser's restart button, or MarimoClient.restart"


@dataclass(frozen=True)
class KernelActivity:
    """What a kernel runs now, as marimo's session view has it."""

    scratchpad: bool
    """Scratchpad code (ours, or another client's) is queued or running."""
    cells: tuple[str, ...] = ()
    """Notebook cells queued or running, as ``name (id)`` or ``id``."""

    def describe_cells(self) -> str:
        shown = ", ".join(self.cells[:_MAX_NAMED])
        more = f" and {len(self.cells) - _MAX_NAMED} more" if len(self.cells) > _MAX_NAMED else ""
        noun = "cell" if len(self.cells) == 1 else "cells"
        return f"{noun} {shown}{more}"


@dataclass
class ReplayReader:
    """Reads a kiosk replay (SSE text) and keeps only each cell's latest status.

    Outputs and code in the replay are parsed and dropped at once: nothing from
    it is kept or shown except cell ids, names and statuses.
    """

    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    ready: bool = False
    closed: bool = False
    statuses: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def feed(self, text: str) -> None:
        for event in self.decoder.feed(text):
            if event.event == "close":
                self.closed = True
                continue
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                self._message(json.loads(event.data))

    def _message(self, message: dict[str, object]) -> None:
        body = message.get("data")
        if not isinstance(body, dict):
            return
        op = message.get("op")
        if op == "kernel-ready":
            self.ready = True
            ids, names = body.get("cell_ids") or [], body.get("names") or []
            for cell_id, name in zip(ids, names, strict=False):
                if isinstance(name, str) and name and name != "_":
                    self.names[str(cell_id)] = name
        elif op == "cell-op":
            status = body.get("status")
            if isinstance(status, str):
                self.statuses[str(body.get("cell_id"))] = status

    def activity(self) -> KernelActivity | None:
        """The activity seen, or ``None`` when the replay never arrived."""
        if not self.ready:
            return None
        active = [c for c, s in self.statuses.items() if s in _ACTIVE]
        cells = tuple(
            f"{self.names[c]} ({c})" if c in self.names else c for c in active if c != SCRATCH_CELL
        )
        return KernelActivity(scratchpad=SCRATCH_CELL in active, cells=cells)


def _ago(since: float | None) -> str:
    if since is None:
        return "earlier"
    return f"{max(time.time() - since, 0):.0f} s ago"


def busy_error(
    notebook: str,
    activity: KernelActivity | None,
    *,
    ours_since: float | None,
) -> KernelBusyError:
    """The kernel was busy before we sent anything: say whose work it is."""
    head = f"The kernel of {notebook} is"
    if activity is not None and activity.scratchpad and ours_since is not None:
        return errors.KernelBusyError(
            f"{head} still running code this agent sent {_ago(ours_since)}, which passed its "
            "time limit and did not stop when interrupted twice, so nothing was sent. The "
            "kernel answers nothing until that code ends. If it was cleaning up, it ends by "
            "itself: wait and retry. If it stays busy (it catches KeyboardInterrupt), the "
            "kernel is wedged and only a restart frees it, and a restart loses every variable. "
            f"Tell the person before anyone restarts it ({_RESTART_HOW}).",
            cause="busy_ours",
        )
    if activity is not None and activity.cells:
        return errors.KernelBusyError(
            f"{head} running {activity.describe_cells()} that someone else started (the "
            "person in the browser, most likely), so nothing was sent: your request would "
            "wait behind that run, and a timeout would interrupt it. Wait until it finishes "
            "and retry, or ask the person. Do not interrupt or restart their run.",
            cause="busy_person",
        )
    if activity is not None and activity.scratchpad:
        return errors.KernelBusyError(
            f"{head} running scratchpad code that another client sent (another agent, "
            "`marimo-pair exec`, or marimo's own assistant), so nothing was sent. Wait a "
            "moment and retry; the kernel answers when that code ends.",
            cause="busy_scratchpad",
        )
    return errors.KernelBusyError(
        f"{head} already running other work (a cell someone started in the browser, or "
        "another agent's code), so nothing was sent. Our code would queue behind that run, "
        "and if it then timed out, the disconnect would interrupt that run too. Wait and "
        "retry, or ask the person.",
        cause="busy_unknown",
    )


def queue_timeout_error(notebook: str, holder: str, held_for: float) -> KernelBusyError:
    """Our own earlier request on this notebook did not finish while this one waited."""
    return errors.KernelBusyError(
        f"This agent's earlier request to {notebook} ({holder or 'a request'}) is still "
        f"running after {held_for:.0f} s, and this one waited for it, so nothing was sent. "
        "Wait for it to finish (or interrupt it) and retry.",
        cause="busy_ours",
    )


def dead_error(notebook: str, *, sent: bool) -> KernelDeadError:
    """marimo reports the kernel process stopped: nothing answers until a restart."""
    if sent:
        what = (
            f"The kernel process of {notebook} stopped while this code ran (marimo reports "
            "it stopped: it crashed, was killed, or ran out of memory). The code may have "
            "partly run."
        )
    else:
        what = (
            f"The kernel process of {notebook} is not running (marimo reports it stopped: it "
            "crashed, was killed, or ran out of memory), so nothing was sent."
        )
    return errors.KernelDeadError(
        f"{what} Every variable it held is gone; the notebook's code is safe. Tell the "
        f"person: the kernel needs a restart ({_RESTART_HOW}), then re-run the cells you need."
    )


def timeout_error(
    limit: float,
    cause: Cause,
    *,
    busy_before: bool,
    activity: KernelActivity | None = None,
    waited: float = 0.0,
    waited_for_others: float = 0.0,
    hit: KernelActivity | None = None,
) -> ExecuteTimeoutError:
    """Our code passed its limit; ``cause`` is what the kernel was found doing afterwards.

    ``waited_for_others`` is how long our code waited for someone else's run before it
    could start; ``hit`` the run still going when that wait ended (the interrupt hit it).
    """
    text = (
        f"Execution passed its {limit:g} s limit; marimo interrupted the kernel. The code "
        "may have partly run: inspect state before retrying."
    )
    if hit is not None:
        text += (
            f" It never started: {hit.describe_cells()}, which someone else started just "
            f"before it, ran all {waited_for_others:.0f} s this client waited, and the "
            "interrupt stopped that run. Tell the person."
        )
    elif waited_for_others:
        text += (
            f" (It first waited {waited_for_others:.0f} s for a run someone else had started "
            "just before it; that run was left to finish.)"
        )
    if busy_before:
        text += (
            " The kernel was already running other work when this code was sent (the "
            "caller chose to send it anyway): the interrupt hit that run too, which may have "
            "been a person's cell. Tell them."
        )
    if cause == "kernel_answers":
        text += (
            " The kernel answers again: no restart is needed. Make the code finish in time "
            "(do less per call, or give it a larger timeout)."
        )
    elif cause == "kernel_frozen":
        text += (
            " marimo reports the kernel idle, but it did not answer a trivial request in "
            "time: its process is paused (a debugger stopped at a breakpoint, a "
            "SIGSTOP, a suspended machine) or starved of memory or CPU. Tell the person: once "
            "resumed it carries on with its variables, and your code may still run then. "
            "Restart it only if it never comes back (a restart loses every variable)."
        )
    elif cause == "busy_ours":
        text += (
            f" The code still runs {waited:.0f} s later, after a second interrupt too. It may "
            "be cleaning up and end by itself; if it catches KeyboardInterrupt (or waits in a "
            "call that ignores it), the kernel is wedged and answers nothing until it ends. "
            "Wait a little and retry: the next call says whether it still runs. Restart only "
            "if it stays busy, since a restart loses every variable: tell the person first."
        )
    elif cause == "busy_person" and activity is not None:
        text += (
            f" Our code was stopped; the kernel now runs {activity.describe_cells()} that "
            "someone else started, and answers again when that run ends. Wait and retry; do "
            "not interrupt or restart their run."
        )
    elif cause == "busy_scratchpad":
        text += (
            " Our code was stopped; the kernel now runs scratchpad code another client sent, "
            "and answers again when that ends. Wait and retry."
        )
    else:
        text += (
            f" The kernel still did not answer {waited:g} s later, and what it runs could not "
            "be identified: this code ignoring the interrupt, or a cell someone started. Look "
            "at the notebook in the browser first; restart only if this code is what still "
            "runs (a restart loses every variable)."
        )
    return errors.ExecuteTimeoutError(
        text, kernel_responsive=cause == "kernel_answers", cause=cause
    )


_SERVER_WAY_OUT = (
    "Check that marimo still runs (`marimo-pair discover`) and start it again if not (its "
    "kernels' variables are then gone)"
)


def server_down_after_timeout(limit: float, url: str) -> ServerUnavailableError:
    """Our code passed its limit, and then the server itself did not answer."""
    return ServerUnavailableError(
        f"Execution passed its {limit:g} s limit, and then the marimo server at {url} did not "
        f"answer: it was stopped, crashed, or is frozen. The code may have partly run. "
        f"{_SERVER_WAY_OUT}; do not re-run the code blindly."
    )


def server_not_answering(what: str, url: str, problem: str) -> ServerUnavailableError:
    """A request of ours got no (whole) answer from the server: it is gone or frozen.

    ``problem`` names the transport failure (a timeout, a broken connection) without
    its text, which may quote the request.
    """
    return ServerUnavailableError(
        f"{what}: the marimo server at {url} did not answer ({problem}): it was stopped, "
        f"crashed, or is frozen (or too busy to answer). {_SERVER_WAY_OUT}."
    )


def stream_cut_error(
    cause: Cause | None, url: str, notebook: str, stderr_tail: str
) -> OutcomeUnknownError:
    """The execute stream ended before ``done``; ``cause`` is what was found afterwards."""
    text = (
        "The execute stream ended before marimo reported completion: the code may have run "
        "fully, partly or not at all."
    )
    if cause == "server_down":
        text += (
            f" The marimo server at {url} no longer answers: it was stopped or crashed. Start "
            "it again (its kernels' variables are gone)."
        )
    elif cause == "kernel_answers":
        text += (
            f" The server and the kernel of {notebook} still answer, so the connection was cut "
            "on the way (a proxy, the network)."
        )
    elif cause == "kernel_frozen":
        text += (
            f" marimo reports the kernel of {notebook} idle, but it does not answer a trivial "
            "request: its process is paused (a debugger, SIGSTOP) or starved. Tell the person."
        )
    return OutcomeUnknownError(
        text
        + " Inspect the notebook state before retrying; do not re-run it blindly."
        + stderr_tail,
        cause=cause,
    )
