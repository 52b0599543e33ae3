"""A warm marimo server: one directory server a worker reuses for many tasks.

Starting ``marimo edit`` costs ~1.3 s and stopping it ~0.4 s; opening a
session on a running directory server costs ~0.45 s (the kernel process) and
closing it a few milliseconds. So a worker keeps one server on a private
directory and, for each task:

1. makes sure no session is open (a leftover would be *joined* by the next
   attach, sharing its kernel), then empties the directory, marimo's session
   cache (``__marimo__``) included: that cache would show a previous run's
   outputs for a notebook with the same code;
2. copies the task's notebook and data files into it, under their own names,
   so the kernel's working directory is the notebook's, as with a server
   started on the notebook;
3. opens a new session on that file: marimo starts a new kernel process for
   it, so nothing a previous task defined can be seen;
4. after the task, closes the session (``/api/home/shutdown_session``), which
   ends that kernel.

Most of a session's cost is its kernel starting (~0.45 s; marimo spawns a new
interpreter per session). A worker that knows its next task can `prefetch` it:
once the current task's session is closed, steps 1-3 for the next task run in
the background while the current one is graded, and the next `open` takes
the ready session. Nothing is shared: the prefetched session is still a new
kernel on a freshly placed file, opened after the previous one closed.

If the server died or a session would not close, the next task starts a new
server rather than trust the old one.
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


@dataclass(frozen=True)
class WarmSession:
    """A task's session on a warm server."""

    toolkit: MarimoPairToolkit
    """Tools bound to the task's notebook (closed with the session)."""
    path: Path
    """The notebook file marimo saves."""
    key: str
    """marimo's session id."""
    prefetched: bool = False
    """Opened in the background before the task asked for it."""


class WarmServer:
    """One directory server reused across tasks, one fresh session per task.

    Not thread-safe: one task at a time (a worker owns it).

    Args:
        startup_timeout: seconds for the server to answer ``/health``.
    """

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.root = Path(tempfile.mkdtemp(prefix="mpt-warm-"))
        self.server: MarimoServer | None = None
        self._control: MarimoClient | None = None
        self._prefetch: tuple[_Key, Future[WarmSession], threading.Thread] | None = None
        self.starts = 0
        """How many servers this object has started (1 while nothing went wrong)."""
        self.sessions_opened = 0

    def __repr__(self) -> str:
        url = self.server.url if self.server is not None else None
        return f"WarmServer(root={str(self.root)!r}, url={url!r}, starts={self.starts})"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.server is not None and self.server.running

    def ensure_started(self) -> float:
        """Start the server unless it runs; returns the seconds this call spent starting it."""
        if self.running:
            return 0.0
        self._drop_server()
        started = time.monotonic()
        server = MarimoServer(self.root, startup_timeout=self.startup_timeout)
        server.start()
        self.server = server
        self._control = server.client()
        self.starts += 1
        return time.monotonic() - started

    def open(
        self, files: Sequence[Path], notebook: str, *, timeout: float | None
    ) -> tuple[WarmSession, float]:
        """A new session on a fresh copy of ``files``: the prefetched one if it matches.

        Args:
            files: the task's notebook and data files, copied under their names.
            notebook: the notebook's file name among them.
            timeout: the tools' execute limit (seconds).

        Returns:
            The session, and the seconds spent starting the server (0 when it ran).
        """
        ready = self._take_prefetched(_key(files, notebook, timeout))
        if ready is not None:
            return ready, 0.0
        started = self.ensure_started()
        return self._open_now(files, notebook, timeout), started

    def prefetch(self, files: Sequence[Path], notebook: str, *, timeout: float | None) -> None:
        """Open the session `open` will be asked for next, in the background.

        Call it only with no session open (the previous task's closed): placing
        the files empties the directory. Does nothing if the server is down.
        """
        self._drop_prefetch()
        if not self.running:
            return
        future: Future[WarmSession] = Future()

        def work() -> None:
            try:
                future.set_result(self._open_now(files, notebook, timeout, prefetched=True))
            except BaseException as exc:  # noqa: BLE001 - handed to `open`, which reopens
                future.set_exception(exc)

        thread = threading.Thread(target=work, name="mpt-warm-prefetch", daemon=True)
        self._prefetch = (_key(files, notebook, timeout), future, thread)
        thread.start()

    def place(self, files: Sequence[Path], notebook: str) -> Path:
        """Empty the directory (no session may be open) and copy the task's files in.

        Returns:
            The notebook's path on the server, to attach to.
        """
        self._close_open_sessions()
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

    def close_session(self, session: WarmSession) -> None:
        """Close a task's clients and its session (its kernel ends)."""
        session.toolkit.close()
        self._shutdown_session(session.key)

    def _shutdown_session(self, key: str) -> None:
        """Close one session; raise if the server still lists it."""
        control = self._require_control()
        # client.py has no public call for this endpoint yet; `_post_control` adds the
        # skew-protection token marimo wants on every POST but execute.
        control._post_control(
            _SHUTDOWN_SESSION, "close the task's session", None, {"sessionId": key}
        )
        if any(s.key == key for s in control.sessions()):
            raise MarimoPairError(f"marimo still lists session {key} after closing it.")

    def discard(self) -> None:
        """Forget the server after a failure: the next task starts a new one."""
        self._drop_prefetch()
        self._drop_server()

    def close(self) -> None:
        """Stop the server and remove the directory."""
        self.discard()
        shutil.rmtree(self.root, ignore_errors=True)

    def _open_now(
        self,
        files: Sequence[Path],
        notebook: str,
        timeout: float | None,
        *,
        prefetched: bool = False,
    ) -> WarmSession:
        server = self.server
        if server is None or not self.running:
            raise MarimoPairError("The warm marimo server is not running.")
        path = self.place(files, notebook)
        # Plain HTTP to loopback: transports without certificate loading save ~50 ms
        # per task (httpx loads the CA bundle for every default client).
        toolkit = MarimoPairToolkit.from_clients(
            server.client(transport=httpx.HTTPTransport(verify=False)),
            server.async_client(transport=httpx.AsyncHTTPTransport(verify=False)),
            notebook=str(path),
            timeout=timeout,
        )
        try:
            handle = toolkit.session.sync()
            # The directory was just emptied with no session open: this opens a new one.
            key = handle.client.attach(str(path)).key
        except BaseException:
            toolkit.close()
            raise
        self.sessions_opened += 1
        return WarmSession(toolkit=toolkit, path=path, key=key, prefetched=prefetched)

    def _take_prefetched(self, key: _Key) -> WarmSession | None:
        """The prefetched session if it is for ``key`` and opened; otherwise close it."""
        pending, self._prefetch = self._prefetch, None
        if pending is None:
            return None
        wanted, future, thread = pending
        thread.join()
        try:
            session = future.result()
        except MarimoPairError as exc:
            logger.warning("a prefetched session did not open (%s); opening it now", exc)
            return None
        except Exception as exc:  # noqa: BLE001 - any failure: open again in the task's own call
            logger.warning("a prefetched session failed (%r); opening it now", exc)
            return None
        if wanted == key and self.running:
            return session
        with contextlib.suppress(MarimoPairError):
            self.close_session(session)
        return None

    def _drop_prefetch(self) -> None:
        pending, self._prefetch = self._prefetch, None
        if pending is None:
            return
        _, future, thread = pending
        thread.join()
        if future.exception() is None:
            with contextlib.suppress(MarimoPairError):
                self.close_session(future.result())

    def _require_control(self) -> MarimoClient:
        if self._control is None or not self.running:
            raise MarimoPairError("The warm marimo server is not running.")
        return self._control

    def _close_open_sessions(self) -> None:
        """Close whatever session is still open (a task that crashed before closing its own)."""
        control = self._require_control()
        for session in control.sessions():
            logger.warning("closing a leftover session %s on the warm server", session.key)
            self._shutdown_session(session.key)

    def _drop_server(self) -> None:
        from .runner import stop_server

        server, self.server = self.server, None
        control, self._control = self._control, None
        if control is not None:
            control.close()
        if server is not None:
            with contextlib.suppress(MarimoPairError):
                stop_server(server)


def _key(files: Sequence[Path], notebook: str, timeout: float | None) -> _Key:
    return (tuple(str(f) for f in files), notebook, -1.0 if timeout is None else timeout)
