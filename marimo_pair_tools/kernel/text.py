"""Bounded text inside the kernel: results must stay small whatever a cell holds."""

from __future__ import annotations

import html
import re

__all__ = ["cut", "keep_tail", "listing", "plain", "some"]

_TAG = re.compile(r"<[^>]*>")


def cut(text: str, limit: int | None) -> str:
    """Keep the head and tail of ``text`` within about ``limit`` characters, marking the cut."""
    if limit is None or len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    dropped = len(text) - head - tail
    return text[:head] + f"\n… [{dropped:,} characters cut] …\n" + (text[-tail:] if tail else "")


def listing(order: list[str], names: dict[str, str | None], limit: int = 40) -> str:
    """``id (name), id, …`` for an error message, at most ``limit`` cells."""
    shown = [cid + (f" ({names[cid]})" if names.get(cid) else "") for cid in order[:limit]]
    more = f", … {len(order) - limit} more" if len(order) > limit else ""
    return ", ".join(shown) + more


def plain(text: str) -> str:
    """Text of marimo's highlighted HTML (tracebacks are ~70% markup); text stays text."""
    if "<span" not in text and "<pre" not in text and "<div" not in text:
        return text
    return html.unescape(_TAG.sub("", text))


def keep_tail(text: str, limit: int) -> str:
    """Cut a traceback to about ``limit`` characters, keeping its first line and its end.

    The end holds the frame that raised and the exception line, the part worth reading.
    """
    if len(text) <= limit:
        return text
    first, _, rest = text.partition("\n")
    first = first[: limit // 4]
    tail = max(0, limit - len(first))
    dropped = len(rest) - tail
    return f"{first}\n… [{dropped:,} characters of earlier frames cut] …\n{rest[-tail:]}"


def some(items: list[str], limit: int = 20, sep: str = ", ") -> str:
    """At most ``limit`` items of a message, then how many more: refusals stay bounded."""
    more = len(items) - limit
    return sep.join(items[:limit]) + (f"{sep}and {more:,} more" if more > 0 else "")
