"""One request at a time per notebook session, for every client in this process.

marimo's ``/api/kernel/status`` says ``running`` while *any* scratchpad code runs,
ours included. Parallel tool calls in one model turn (LangGraph's ToolNode runs
them concurrently, in threads or as tasks) would each see the others' code and
refuse as if a person's cell were running. So our own requests to one session
wait for each other here, and the busy check before each one sees only work
that is not ours. The server runs executes on one session one after another
anyway (its scratchpad lock), so nothing is lost by waiting on this side.

The slots are process-wide and keyed by server and session, so a toolkit's sync
and async clients (and two toolkits on one notebook) queue together. The server
part of the key is its normalised address (`server_key`), not the URL's text:
``http://127.0.0.1:2718`` and ``http://localhost:2718/`` are one server. A slot is a
`threading.Lock`: threads block on it, coroutines poll it without blocking their
event loop, and it belongs to no event loop, so ``asyncio.run`` twice works.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._security import connect_host, is_loopback_host

__all__ = ["SessionSlot", "server_key", "slot_for"]

_POLL_FIRST = 0.002
_POLL_MAX = 0.05


@dataclass
class SessionSlot:
    """The queue of one session, and what this process knows about its kernel."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    holder: str = ""
    """What holds the slot now (for messages): ``execute``, ``restart``, ..."""
    held_since: float = 0.0
    wedged_since: float | None = None
    """When code we sent passed its limit and kept running after the interrupt
    (`time.time()`); cleared once the kernel is seen idle again."""
    sent: bool = False
    """Whether the holder's code reached the kernel (so a cancelled call must stop it)."""

    def acquire(self, wait: float | None, what: str) -> bool:
        """Take the slot, blocking up to ``wait`` seconds (``None``: as long as needed)."""
        got = self.lock.acquire(timeout=-1 if wait is None else max(wait, 0.0))
        if got:
            self._mark(what)
        return got

    async def aacquire(self, wait: float | None, what: str) -> bool:
        """Take the slot without blocking the event loop (polls the lock)."""
        deadline = None if wait is None else time.monotonic() + wait
        delay = _POLL_FIRST
        while not self.lock.acquire(blocking=False):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
        self._mark(what)
        return True

    def release(self) -> None:
        self.holder = ""
        self.lock.release()

    def _mark(self, what: str) -> None:
        self.holder = what
        self.sent = False
        self.held_since = time.monotonic()


_slots: dict[tuple[str, str], SessionSlot] = {}
_slots_lock = threading.Lock()


_DEFAULT_PORTS = {"http": 80, "https": 443}


def server_key(base_url: str) -> str:
    """One spelling per server: scheme, host, port and base path, normalised.

    Every loopback name (``localhost``, 127.0.0.0/8, ``::1``, a bind-all address) is
    this machine, so they are one host; names are lower-cased, a default port is
    written out and a trailing slash dropped. A remote host's name and its IP address
    stay two keys (nothing is resolved here).
    """
    parts = urlsplit(base_url)
    host = connect_host((parts.hostname or "").lower())
    if is_loopback_host(host):
        host = "loopback"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{host}:{port}{parts.path.rstrip('/')}"


def slot_for(base_url: str, session_key: str) -> SessionSlot:
    """The process-wide slot of one session (by its stable id when the server has one)."""
    key = (server_key(base_url), session_key)
    with _slots_lock:
        slot = _slots.get(key)
        if slot is None:
            slot = _slots[key] = SessionSlot()
        return slot
