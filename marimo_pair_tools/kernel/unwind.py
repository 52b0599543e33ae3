"""Stopping Python code that swallows every exception: raise again at each line it runs.

A signal raises once, at the next bytecode, and a bare ``except:`` (or an ``except
asyncio.CancelledError`` around an ``await``) catches that one exception and loops on.
`Unwinder` raises at the next line the chosen frames run, through the interpreter's
trace hook (``sys.settrace``, frames' ``f_trace``). CPython turns tracing off when a
trace function raises, so a profile hook (``sys.setprofile``, which never raises and
so stays on) turns it back on at the next call or return, typically the frame the
first raise left: the next line, inside the ``except`` that caught it, raises again
and leaves the handler. Callers with a periodic signal also `rearm`. Only in the
kernel's main thread, only for frames the caller chooses (never our own); the
previous trace and profile functions are put back when it stops.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["Unwinder", "calls_into", "coroutine_frames"]

_MAX_DEPTH = 200


class Unwinder:
    """Raise ``make_error()`` at each line of frames ``chosen`` picks, until `stop`."""

    def __init__(
        self, make_error: Callable[[], BaseException], chosen: Callable[[FrameType], bool]
    ) -> None:
        self._make_error = make_error
        self._chosen = chosen
        self._previous: Any = None
        self._previous_profile: Any = None
        self._frames: list[FrameType] = []
        self.active = False

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if self.active and event == "line" and self._chosen(frame):
            raise self._make_error()
        return self._local

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        if self.active and self._chosen(frame):
            frame.f_trace_lines = True
            return self._local
        return None

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if self.active and sys.gettrace() is None:
            self.rearm(frame)

    def start(self, frames: list[FrameType]) -> None:
        """Begin with the given frames (a running stack, suspended coroutines) and new ones."""
        if self.active:
            return
        self.active = True
        self._previous = sys.gettrace()
        self._previous_profile = sys.getprofile()
        for frame in frames:
            self._trace(frame)
        sys.settrace(self._global)
        sys.setprofile(self._profile)

    def rearm(self, frame: FrameType | None) -> None:
        """Trace again (a raise turned tracing off), from ``frame`` up and in new frames."""
        if not self.active:
            return
        self._trace(frame)
        sys.settrace(self._global)

    def _trace(self, frame: FrameType | None) -> None:
        depth = 0
        while frame is not None and depth < _MAX_DEPTH:
            if self._chosen(frame):
                frame.f_trace = self._local
                frame.f_trace_lines = True
                self._frames.append(frame)
            frame = frame.f_back
            depth += 1

    def stop(self) -> None:
        """Stop raising and put the previous trace function back."""
        if not self.active:
            return
        self.active = False
        sys.settrace(self._previous)
        sys.setprofile(self._previous_profile)
        for frame in self._frames:
            frame.f_trace = None
        self._frames.clear()


def coroutine_frames(coroutine: Any) -> list[FrameType]:
    """The frames of a suspended coroutine and of what it awaits, outermost first."""
    frames = []
    depth = 0
    while coroutine is not None and depth < _MAX_DEPTH:
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)
        depth += 1
    return frames


def calls_into(frame: FrameType | None, code: Any) -> bool:
    """Whether ``frame`` runs ``code`` or was called, directly or not, from a frame that does."""
    depth = 0
    while frame is not None and depth < _MAX_DEPTH:
        if frame.f_code is code:
            return True
        frame = frame.f_back
        depth += 1
    return False
