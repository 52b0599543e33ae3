"""Bounded text inside the kernel: results must stay small whatever a cell holds."""

from __future__ import annotations

__all__ = ["cut", "listing"]


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
