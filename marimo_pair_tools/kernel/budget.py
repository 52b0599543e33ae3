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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["BudgetExceeded", "bounded"]

_TICK = 0.01


class BudgetExceeded(BaseException):
    """Our code ran over its time or memory budget on a user's object."""


def _rss() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def bounded(seconds: float, max_growth_bytes: int) -> Iterator[None]:
    """Raise `BudgetExceeded` inside the block after ``seconds`` or that much memory growth.

    Without a usable timer (not the main thread, no ``setitimer``, or the notebook
    itself handles SIGALRM) the block runs unbounded: the client's timeout still
    interrupts it, because reads are synchronous calls.
    """
    usable = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    previous = signal.getsignal(signal.SIGALRM) if usable else None
    if not usable or previous not in (signal.SIG_DFL, signal.SIG_IGN, None):
        yield
        return
    deadline = time.monotonic() + seconds
    start = _rss()

    def check(signum: int, frame: FrameType | None) -> None:
        if time.monotonic() > deadline:
            raise BudgetExceeded(f"took over {seconds:g} s")
        if _rss() - start > max_growth_bytes:
            raise BudgetExceeded(f"grew memory by over {max_growth_bytes >> 20} MB")

    signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, _TICK, _TICK)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
