"""Interrupts that reach our async scratchpad run when its code never awaits.

marimo interrupts a synchronous run by raising in it, but cancels an async run
(code with a top-level ``await``), and a cancel lands only at the run's next
``await``: ``await asyncio.sleep(0)`` followed by ``while True: pass`` ignores it
and strands the kernel until a restart, which loses every variable. So, for runs
that came from marimo-pair-tools (our request header) and only those, a cancel
that has not taken after a grace period is followed by a second interrupt that
raises `RunInterrupted` inside the running code, as marimo does for sync code.
A person's runs keep marimo's own behaviour.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from marimo._runtime.context.types import safe_get_context

from . import fence
from .unwind import Unwinder, calls_into, coroutine_frames

__all__ = ["PAIR_CLIENT_HEADER", "RunInterrupted", "install"]

PAIR_CLIENT_HEADER = "x-pair-client"
GRACE_SECONDS = 1.0
ATTEMPTS = 5
_MARK = "_marimo_pair_escalates"


class RunInterrupted(Exception):
    """Raised in our run's code when it ignored marimo's cancel (it never awaits)."""


def _from_pair_client(ctx: Any) -> bool:
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None) or {}
    return any(str(key).lower() == PAIR_CLIENT_HEADER for key in headers)


def _in_asyncio(frame: FrameType | None) -> bool:
    """Raising inside asyncio's own machinery would break the loop, not the run."""
    return frame is not None and f"{os.sep}asyncio{os.sep}" in frame.f_code.co_filename


def _unwind_async_run() -> None:
    """Make our async run raise at every line it runs from now on (see `unwind`)."""
    run = fence.async_run()
    coroutine, code = run.get("coroutine"), run.get("code")
    if coroutine is None or "stop" in run:
        return
    unwinder = Unwinder(
        lambda: RunInterrupted(
            "interrupted: this code caught every cancel of its async run, so it was "
            "stopped where it was"
        ),
        lambda frame: calls_into(frame, code),
    )
    unwinder.start(coroutine_frames(coroutine))
    run["stop"] = unwinder.stop


def install() -> None:
    """Wrap the kernel's SIGINT handler once (idempotent across our versions)."""
    if threading.current_thread() is not threading.main_thread():
        return
    marimo_handler = signal.getsignal(signal.SIGINT)
    if getattr(marimo_handler, _MARK, False) or not callable(marimo_handler):
        return
    original: Callable[[int, FrameType | None], Any] = marimo_handler
    pending = {"escalate": False}

    def handler(signum: int, frame: FrameType | None) -> None:
        if pending["escalate"]:
            code = fence.async_run().get("code")
            if code is not None and not calls_into(frame, code):
                # Waiting in the event loop: the code swallows each cancel at its await.
                pending["escalate"] = False
                _unwind_async_run()
            elif code is not None or not _in_asyncio(frame):
                pending["escalate"] = False
                raise RunInterrupted(
                    "interrupted: this code ignored the cancel of its async run (it never "
                    "awaits), so it was stopped where it was"
                )
        original(signum, frame)  # marimo: raises for sync runs, cancels async ones
        ctx = safe_get_context()
        scheduler = getattr(ctx, "active_scheduler", None)
        # Between two steps of an async run marimo's context holds no request: our fenced
        # scratchpad run is known by the fence's record of it instead.
        ours = _from_pair_client(ctx) or bool(fence.async_run())
        if scheduler is None or not scheduler.has_active_tasks() or not ours:
            return

        def follow_up(attempt: int = 1) -> None:
            if not scheduler.has_active_tasks() or attempt > ATTEMPTS:
                return
            pending["escalate"] = True
            os.kill(os.getpid(), signal.SIGINT)
            timer = threading.Timer(GRACE_SECONDS, follow_up, (attempt + 1,))
            timer.daemon = True
            timer.start()

        timer = threading.Timer(GRACE_SECONDS, follow_up)
        timer.daemon = True
        timer.start()

    setattr(handler, _MARK, True)
    signal.signal(signal.SIGINT, handler)
