"""Warm marimo servers: directory servers a worker reuses for many tasks.

Starting ``marimo edit`` costs ~1 s and stopping it ~0.35 s; opening a
session on a running directory server costs ~0.45 s (marimo spawns a new
kernel interpreter per session) and closing it a few milliseconds. So a
worker keeps servers, each on a private directory (a *slot*), and for each
task, on a slot:

1. empties the directory, marimo's session cache (``__marimo__``) included:
   that cache would show an earlier run's outputs for a notebook with the
   same code. No session is open there: every session opened on a slot was
   closed and checked gone, or the slot's server was replaced (a leftover
   session would be *joined* by the next attach, sharing its kernel);
2. copies the task's notebook and data files in, under their own names, so
   the kernel's working directory is the notebook's, as with a server started
   on the notebook;
3. opens a new session on that file: a new kernel process, so nothing an
   earlier task defined, imported or patched is there;
4. after the task, closes the session (``/api/home/shutdown_session``), which
   ends that kernel.

A worker that knows its next task `prefetch`-es it: steps 1-3 run in the
background on the *other* slot while the current task runs, and the next
`open` takes the ready session, so the kernel's start is off the task's
critical path. That is why a worker has two slots (two servers, used in
turn): the working directory of every kernel of a server is the server's, so
two notebooks with their own data files cannot be open on one server at
once. With ``slots=1`` the prefetch waits until the current session is
closed (it then overlaps only the grading).

A slot whose server died, whose attach failed half-way, or whose session
would not close, starts a new server next time rather than trust the old one.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..client import MarimoClient
from ..errors import MarimoPairError
from ..server import MarimoServer
from ..toolkit import MarimoPairToolkit

__all__ = ["WarmServer", "WarmSession"]

logger = logging.getLogger(__name__)

_SHUTDOWN_SESSION = "/api/home/shutdown_session"

_Key = tuple[tuple[str, ...], str, float]


class _Slot:
    """One directory and the marimo server on it; one task session at a time."""

    def __init__(self, root: Path, startup_timeout: float) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.startup_timeout = startup_timeout
        self.server: MarimoServer | None = None
        self._control: MarimoClient | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.running

    def ensure_started(self) -> float:
        """Start the server unless it runs; returns the seconds spent starting it."""
        if self.running:
            return 0.0
        self.drop()
        started = time.monotonic()
        server = MarimoServer(self.root, startup_timeout=self.startup_timeout)
        server.start()
        self.server = server
        self._control = server.client()
        self.starts += 1
        return time.monotonic() - started

    def place(self, files: Sequence[Path], notebook: str) -> Path:
        """Empty the directory and copy the task's files in (no session is open here)."""
        self._require_control()
        for entry in list(self.root.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for path in files:
            if path.is_dir():
                shutil.copytree(path, self.root / path.name)
            else:
                shutil.copy2(path, self.root / path.name)
        return self.root / notebook

    def shutdown_session(self, key: str) -> None:
        """Close one session (its kernel ends); raise if the server still lists it."""
        control = self._require_control()
        # client.py has no public call for this endpoint yet; `_post_control` adds the
        # skew-protection token marimo wants on every POST but execute.
        control._post_control(
            _SHUTDOWN_SESSION, "close the task's session", None, {"sessionId": key}
        )
        if any(s.key == key for s in control.sessions()):
            raise MarimoPairError(f"marimo still lists session {key} after closing it.")

    def drop(self) -> None:
        """Stop the server (if any); the next `ensure_started` starts a new one."""
        from .runner import stop_server

        server, self.server = self.server, None
        control, self._control = self._control, None
        if control is not None:
            control.close()
        if server is not None:
            with contextlib.suppress(MarimoPairError):
                stop_server(server)

    def _require_control(self) -> MarimoClient:
        if self._control is None or not self.running:
            raise MarimoPairError("The warm marimo server is not running.")
        return self._control


@dataclass(frozen=True)
class WarmSession:
    """A task's session on a warm server."""

    toolkit: MarimoPairToolkit
    """Tools bound to the task's notebook (closed with the session)."""
    path: Path
    """The notebook file marimo saves."""
    key: str
    """marimo's session id."""
    slot: int
    """Which of the worker's servers holds it."""
    prefetched: bool = False
    """Opened in the background before the task asked for it."""


class WarmServer:
    """The warm servers of one worker: a fresh notebook and kernel per task.

    Not thread-safe: one task at a time (a worker owns it); only its own
    prefetch runs beside that.

    Args:
        slots: servers used in turn (2: the next task's session opens while the
            current task runs; 1: only while it is graded).
        startup_timeout: seconds for a server to answer ``/health``.
    """

    def __init__(self, *, slots: int = 2, startup_timeout: float = 60.0) -> None:
        if slots < 1:
            raise ValueError("a warm server needs at least one slot")
        self.root = Path(tempfile.mkdtemp(prefix="mpt-warm-"))
        self._slots = [_Slot(self.root / str(i), startup_timeout) for i in range(slots)]
        self._prefetch: tuple[_Key, int, Future[WarmSession], threading.Thread] | None = None
        self._busy: int | None = None
        self._deferred: tuple[Sequence[Path], str, float | None] | None = None
        self.sessions_opened = 0
        self.start_seconds = 0.0
        """Seconds the last `open` spent starting a server (0 when one ran), kept
        even when the open then failed, so the start is accounted for."""

    def __repr__(self) -> str:
        urls = [s.server.url if s.server else None for s in self._slots]
        return f"WarmServer(root={str(self.root)!r}, urls={urls!r}, starts={self.starts})"

    @property
    def starts(self) -> int:
        """How many servers were started (one per slot while nothing went wrong)."""
        return sum(slot.starts for slot in self._slots)

    @property
    def servers(self) -> list[MarimoServer]:
        """The running servers."""
        return [s.server for s in self._slots if s.server is not None and s.running]

    def open(self, files: Sequence[Path], notebook: str, *, timeout: float | None) -> WarmSession:
        """A new session on a fresh copy of ``files``: the prefetched one if it matches.

        Args:
            files: the task's notebook and data files, copied under their names.
            notebook: the notebook's file name among them.
            timeout: the tools' execute limit (seconds).

        Returns:
            The session; `start_seconds` says what starting a server cost.
        """
        self.start_seconds = 0.0
        ready = self._take_prefetched(_key(files, notebook, timeout))
        if ready is None:
            index = self._free_slot()
            self.start_seconds = self._slots[index].ensure_started()
            ready = self._open_now(index, files, notebook, timeout)
        self._busy = ready.slot
        return ready

    def prefetch(self, files: Sequence[Path], notebook: str, *, timeout: float | None) -> None:
        """Open, in the background, the session `open` will be asked for next.

        Call it once the current task's session is open: with two slots the
        next one opens on the other server now; with one it opens as soon as
        the current session is closed (placing the files empties the
        directory). A server that is not running is started in the background.
        """
        self._drop_prefetch()
        if len(self._slots) == 1 and self._busy is not None:
            self._deferred = (files, notebook, timeout)
            return
        self._launch(files, notebook, timeout)

    def _launch(self, files: Sequence[Path], notebook: str, timeout: float | None) -> None:
        index = self._free_slot()
        future: Future[WarmSession] = Future()

        def work() -> None:
            try:
                self._slots[index].ensure_started()
                future.set_result(self._open_now(index, files, notebook, timeout, prefetched=True))
            except BaseException as exc:  # noqa: BLE001 - handed to `open`, which reopens
                future.set_exception(exc)

        thread = threading.Thread(target=work, name="mpt-warm-prefetch", daemon=True)
        self._prefetch = (_key(files, notebook, timeout), index, future, thread)
        thread.start()

    def close_session(self, session: WarmSession) -> None:
        """Close a task's clients and its session (its kernel ends)."""
        if self._busy == session.slot:
            self._busy = None
        session.toolkit.close()
        self._slots[session.slot].shutdown_session(session.key)
        deferred, self._deferred = self._deferred, None
        if deferred is not None and self._busy is None:
            self._launch(*deferred)

    def discard(self, session: WarmSession | None = None) -> None:
        """Forget a server after a failure (``session``'s, else all): start anew next time."""
        if session is None:
            self._drop_prefetch()
            for slot in self._slots:
                slot.drop()
        else:
            self._slots[session.slot].drop()
        self._busy = None

    def abort(self) -> None:
        """Stop every server now, without waiting for a prefetch (Ctrl-C, SIGTERM)."""
        for slot in self._slots:
            slot.drop()

    def close(self) -> None:
        """Stop the servers and remove the directories."""
        self.discard()
        shutil.rmtree(self.root, ignore_errors=True)

    def _free_slot(self) -> int:
        """A slot that holds no task's session (the next after the busy one)."""
        if self._busy is None:
            return 0
        return (self._busy + 1) % len(self._slots)

    def _open_now(
        self,
        index: int,
        files: Sequence[Path],
        notebook: str,
        timeout: float | None,
        *,
        prefetched: bool = False,
    ) -> WarmSession:
        slot = self._slots[index]
        path = slot.place(files, notebook)
        server = slot.server
        assert server is not None  # place() checked that it runs
        # Plain HTTP to loopback: transports without certificate loading save ~50 ms
        # per task (httpx loads the CA bundle for every default client).
        toolkit = MarimoPairToolkit.from_clients(
            server.client(transport=httpx.HTTPTransport(verify=False)),
            server.async_client(transport=httpx.AsyncHTTPTransport(verify=False)),
            notebook=str(path),
            timeout=timeout,
            recheck_scratchpad=True,  # the audit sees changes the kernel never sees
        )
        try:
            handle = toolkit.session.sync()
            # No session is open on this slot: this opens a new one.
            key = handle.client.attach(str(path)).key
        except BaseException:
            toolkit.close()
            slot.drop()  # the session may exist without us knowing its key
            raise
        self.sessions_opened += 1
        return WarmSession(toolkit=toolkit, path=path, key=key, slot=index, prefetched=prefetched)

    def _take_prefetched(self, key: _Key) -> WarmSession | None:
        """The prefetched session if it is for ``key`` and opened; otherwise close it."""
        pending, self._prefetch = self._prefetch, None
        if pending is None:
            return None
        wanted, index, future, thread = pending
        thread.join()
        try:
            session = future.result()
        except Exception as exc:  # noqa: BLE001 - any failure: the task opens its own now
            logger.warning("a prefetched session did not open (%r); opening it now", exc)
            return None
        if wanted == key and self._slots[index].running:
            return session
        self._close_or_drop(session)
        return None

    def _drop_prefetch(self) -> None:
        self._deferred = None
        pending, self._prefetch = self._prefetch, None
        if pending is None:
            return
        _, _, future, thread = pending
        thread.join()
        if future.exception() is None:
            self._close_or_drop(future.result())

    def _close_or_drop(self, session: WarmSession) -> None:
        """Close an unused session; if that fails, replace its server instead."""
        try:
            self.close_session(session)
        except (MarimoPairError, OSError) as exc:
            logger.warning("an unused warm session did not close (%s); replacing its server", exc)
            self._slots[session.slot].drop()


def _key(files: Sequence[Path], notebook: str, timeout: float | None) -> _Key:
    return (tuple(str(f) for f in files), notebook, -1.0 if timeout is None else timeout)
