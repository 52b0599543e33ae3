"""Bounded text: keep the head and tail of a long stream, say exactly what was cut."""

from __future__ import annotations

__all__ = ["BoundedText", "short_repr", "truncate"]


def short_repr(value: str, limit: int = 60) -> str:
    """``repr(value)``, or its start and its length when longer than ``limit`` characters.

    For echoing what a caller sent (a name, a reference) in a message: a 1 MB
    argument must not come back whole, once per mention.
    """
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value):,} characters)"


def _marker(cut: int, what: str, hint: str) -> str:
    return f"\n… [{cut:,} characters of {what} cut; {hint}] …\n"


def truncate(text: str, limit: int, *, what: str = "output", hint: str = "ask for less") -> str:
    """Cut ``text`` to about ``limit`` characters, keeping its start and end."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return text[:head] + _marker(cut, what, hint) + (text[-tail:] if tail else "")


class BoundedText:
    """An append-only text buffer whose memory stays under ``limit`` characters.

    The first two thirds of the budget keep the head of the stream, the last third
    its most recent tail; what falls between is counted, not kept.
    """

    def __init__(self, limit: int, *, what: str, hint: str) -> None:
        self.limit = max(limit, 0)
        self._what = what
        self._hint = hint
        self._head_limit = self.limit * 2 // 3
        self._tail_limit = self.limit - self._head_limit
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        self.total = 0

    def append(self, text: str) -> None:
        """Add text; older middle parts are dropped once the budget is full."""
        self.total += len(text)
        room = self._head_limit - self._head_len
        if room > 0:
            part = text[:room]
            self._head.append(part)
            self._head_len += len(part)
            text = text[room:]
        if text and self._tail_limit:
            self._tail = (self._tail + text)[-self._tail_limit :]

    @property
    def cut(self) -> int:
        """How many characters were dropped."""
        return self.total - self._head_len - len(self._tail)

    def getvalue(self) -> str:
        """The kept text, with a marker where characters were dropped."""
        head = "".join(self._head)
        if self.cut <= 0:
            return head + self._tail
        return head + _marker(self.cut, self._what, self._hint) + self._tail
