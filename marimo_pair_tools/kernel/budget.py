"""A time and memory budget for our own code that touches a user's objects.

A ``repr()``, ``len()`` or attribute of a notebook object can run forever or grow
memory without end (an altair selection's repr was measured growing ~60 MB/s).
Inside the budget, a timer checks the clock and the process's memory every 10 ms
and raises `BudgetExceeded` in the main thread, at the next bytecode. It derives
from BaseException so that a user's ``except Exception`` cannot swallow it.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from .unwind import Unwinder, calls_into

__all__ = ["BudgetExceeded", "bounded"]

_TICK = 0.01
_PACKAGE = __name__.rsplit(".", 1)[0]


class BudgetExceeded(BaseException):
    """Our code ran over its time or memory budget on a user's object."""


def _rss() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class bounded:
    """Raise `BudgetExceeded` inside the block after ``seconds`` or that much memory growth.

    Code that swallows the exception (a bare ``except:`` retrying in a ``__repr__``)
    is unwound: from the next tick on, every line it runs raises again
    (`unwind.Unwinder`), our own frames excepted. A class, not a generator, so that
    leaving the block runs only our code.

    Without a usable timer (not the main thread, no ``setitimer``, or the notebook
    itself handles SIGALRM) the block runs unbounded: the client's timeout still
    interrupts it, because reads are synchronous calls.
    """

    def __init__(self, seconds: float, max_growth_bytes: int) -> None:
        self.seconds = seconds
        self.max_growth = max_growth_bytes
        self._previous: Any = None
        self._armed = False
        self._over: str | None = None
        self._unwinder: Unwinder | None = None

    def __enter__(self) -> bounded:
        usable = threading.current_thread() is threading.main_thread() and hasattr(
            signal, "setitimer"
        )
        self._previous = signal.getsignal(signal.SIGALRM) if usable else None
        if not usable or self._previous not in (signal.SIG_DFL, signal.SIG_IGN, None):
            return self
        self._deadline = time.monotonic() + self.seconds
        self._start = _rss()
        entered = sys._getframe(1).f_code  # the caller's code: what runs under it is theirs
        self._unwinder = Unwinder(
            self._error, lambda frame: not _ours(frame) and calls_into(frame, entered)
        )
        signal.signal(signal.SIGALRM, self._check)
        signal.setitimer(signal.ITIMER_REAL, _TICK, _TICK)
        self._armed = True
        return self

    def _error(self) -> BudgetExceeded:
        return BudgetExceeded(self._over or "ran over its budget")

    def _check(self, signum: int, frame: FrameType | None) -> None:
        if self._over is not None:
            # Still running after the first raise: the code swallowed it. Unwind it.
            if self._unwinder is not None:
                if self._unwinder.active:
                    self._unwinder.rearm(frame)  # each raise turns tracing off
                else:
                    self._unwinder.start([frame] if frame is not None else [])
            raise self._error()
        if time.monotonic() > self._deadline:
            self._over = f"took over {self.seconds:g} s"
        elif _rss() - self._start > self.max_growth:
            self._over = f"grew memory by over {self.max_growth >> 20} MB"
        else:
            return
        raise self._error()

    def __exit__(self, *exc: object) -> None:
        if not self._armed:
            return
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, self._previous)
        if self._unwinder is not None:
            self._unwinder.stop()


def _ours(frame: FrameType) -> bool:
    return str(frame.f_globals.get("__name__", "")).startswith(_PACKAGE)
