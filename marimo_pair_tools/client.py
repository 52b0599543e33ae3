"""HTTP clients for one marimo server: sessions, scratchpad execute, headless attach.

`MarimoClient` and `AsyncMarimoClient` differ only in their I/O calls; request
building, session matching, SSE handling and error mapping are shared pure
helpers in `_ClientCore`, so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from ._security import ensure_allowed_url, redact
from ._sse import SSEDecoder
from ._text import BoundedText
from ._versions import check_server_version
from .errors import (
    AmbiguousSessionError,
    ExecuteTimeoutError,
    KernelBusyError,
    MarimoPairError,
    OutcomeUnknownError,
    ReadOnlyServerError,
    ServerError,
    ServerUnavailableError,
    SessionNotFoundError,
    error_for_status,
)

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "AsyncMarimoClient",
    "ChunkCallback",
    "ExecuteResult",
    "MarimoClient",
    "OutputData",
    "SessionInfo",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT_CHARS = 200_000
DEFAULT_EXECUTE_TIMEOUT = 120.0
STABLE_SESSION_HEADER = "Marimo-Stable-Session-Id"
SESSION_HEADER = "Marimo-Session-Id"
_PROBE_TIMEOUT = 5.0

ChunkCallback = Callable[[str, str], None]
"""Called with ``(channel, text)`` for every streamed stdout/stderr chunk."""


class OutputData(BaseModel):
    """The scratchpad's rendered return value (``done.output``)."""

    model_config = ConfigDict(frozen=True)

    mimetype: str
    data: str


class ExecuteResult(BaseModel):
    """What one scratchpad execute produced. Text fields are bounded and token-free."""

    model_config = ConfigDict(frozen=True)

    success: bool
    stdout: str
    stderr: str
    output: OutputData | None
    elapsed: float
    stdout_cut: int = 0
    stderr_cut: int = 0


class SessionInfo(BaseModel):
    """One open notebook session on a server."""

    model_config = ConfigDict(frozen=True)

    key: str
    """The routing key (`Marimo-Session-Id`); changes when a browser reconnects."""
    stable_id: str | None
    """The stable id (`Marimo-Stable-Session-Id`) on servers that offer it."""
    path: str | None
    filename: str | None

    def headers(self) -> dict[str, str]:
        """Routing headers for this session: the stable id when the server has one."""
        if self.stable_id:
            return {STABLE_SESSION_HEADER: self.stable_id}
        return {SESSION_HEADER: self.key}


@dataclass
class _StreamState:
    """Accumulates one execute stream."""

    stdout: BoundedText
    stderr: BoundedText
    on_chunk: ChunkCallback | None
    token: str | None
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    done: dict[str, Any] | None = None

    def feed(self, text: str) -> None:
        for event in self.decoder.feed(text):
            if event.event == "done":
                self.done = json.loads(event.data)
                continue
            if event.event not in {"stdout", "stderr"}:
                continue
            payload = json.loads(event.data)
            chunk = redact(str(payload.get("data", "")), self.token)
            (self.stdout if event.event == "stdout" else self.stderr).append(chunk)
            if self.on_chunk is not None:
                self.on_chunk(event.event, chunk)

    def result(self, elapsed: float) -> ExecuteResult:
        if self.done is None:
            raise OutcomeUnknownError(
                "The execute stream ended before marimo reported completion: the code may "
                "have run fully, partly or not at all. Inspect the notebook state before "
                "retrying; do not re-run it blindly." + _tail_hint(self.stderr.getvalue())
            )
        output = self.done.get("output")
        out = None
        if isinstance(output, dict) and (output.get("data") or output.get("mimetype")):
            out = OutputData(
                mimetype=str(output.get("mimetype", "text/plain")),
                data=redact(str(output.get("data", "")), self.token),
            )
        return ExecuteResult(
            success=bool(self.done.get("success")),
            stdout=self.stdout.getvalue(),
            stderr=self.stderr.getvalue(),
            output=out,
            elapsed=elapsed,
            stdout_cut=self.stdout.cut,
            stderr_cut=self.stderr.cut,
        )


def _tail_hint(stderr: str) -> str:
    tail = stderr.strip()[-500:]
    return f"\nLast stderr before the cut:\n{tail}" if tail else ""


def _norm(path: str) -> str:
    return os.path.normcase(os.path.normpath(path))


class _ClientCore:
    """Configuration and the pure parts shared by the sync and async clients."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None,
        allow_remote: bool,
        timeout: float | None,
        connect_timeout: float,
        max_output_chars: int,
        check_version: bool,
    ) -> None:
        self.base_url = ensure_allowed_url(base_url, allow_remote=allow_remote)
        self._token = token if token is not None else (os.environ.get("MARIMO_TOKEN") or None)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_output_chars = max_output_chars
        self._check_version = check_version
        self._version_checked = not check_version
        self._sessions_cache: dict[tuple[str | None, str | None], SessionInfo] = {}
        self.server_version: str | None = None

    def __repr__(self) -> str:
        auth = "token=set" if self._token else "token=none"
        return f"{type(self).__name__}(base_url={self.base_url!r}, {auth})"

    @property
    def has_token(self) -> bool:
        """Whether requests carry a bearer token (the token itself is never exposed)."""
        return self._token is not None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _httpx_timeout(self, read: float | None) -> httpx.Timeout:
        return httpx.Timeout(self.connect_timeout, read=read, write=30.0, pool=30.0)

    def _redact(self, text: str) -> str:
        return redact(text, self._token)

    def _raise_for(self, response_status: int, body: str, what: str) -> None:
        detail = body
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict) and "detail" in parsed:
                detail = str(parsed["detail"])
        detail = self._redact(detail.strip())[:500]
        raise error_for_status(response_status, detail, what=what)

    def _transport_error(self, exc: httpx.TransportError, what: str) -> MarimoPairError:
        if isinstance(exc, httpx.ConnectError):
            return ServerUnavailableError(
                f"{what}: nothing answers at {self.base_url} ({type(exc).__name__}). "
                "Is the marimo server running? `marimo-pair discover` lists live servers."
            )
        return ServerUnavailableError(f"{what}: connection to {self.base_url} failed: {exc!r}")

    @staticmethod
    def _parse_sessions(body: Any) -> list[SessionInfo]:
        if not isinstance(body, dict):
            raise ServerError(f"Unexpected /api/sessions answer: {type(body).__name__}")
        sessions: list[SessionInfo] = []
        for key, raw in body.items():
            info = raw if isinstance(raw, dict) else {}
            sessions.append(
                SessionInfo(
                    key=str(key),
                    stable_id=info.get("session_id") or None,
                    path=info.get("path"),
                    filename=info.get("filename"),
                )
            )
        return sessions

    @staticmethod
    def _match(
        sessions: list[SessionInfo], notebook: str | None, session_id: str | None
    ) -> SessionInfo:
        """Pick the session for a notebook file, a session id, or the only one open."""

        def listing() -> str:
            rows = [
                f"  - {s.path or s.filename or '(unsaved)'} (session {s.key})" for s in sessions
            ]
            return "\n".join(rows) or "  (none)"

        if session_id is not None:
            found = [s for s in sessions if session_id in (s.key, s.stable_id)]
            if not found:
                raise SessionNotFoundError(
                    f"No session {session_id!r} on this server. Open sessions:\n{listing()}"
                )
            return found[0]
        if notebook is None:
            if len(sessions) == 1:
                return sessions[0]
            if not sessions:
                raise SessionNotFoundError(
                    "No notebook session is open on this server. Open the notebook in a "
                    "browser, or attach one headless (`client.attach(path)`, CLI "
                    "`marimo-pair open`)."
                )
            raise AmbiguousSessionError(
                f"{len(sessions)} sessions are open; name the notebook file:\n{listing()}"
            )
        want = _norm(notebook)
        want_abs = _norm(str(Path(notebook).expanduser().resolve()))
        exact = [
            s
            for s in sessions
            if s.key == notebook
            or (s.path and _norm(s.path) in {want, want_abs})
            or (s.filename and _norm(s.filename) in {want, want_abs})
        ]
        if not exact:
            # A relative path or bare file name as the server reports it.
            parts = PurePath(want).parts
            exact = [
                s
                for s in sessions
                if (p := s.path or s.filename) and PurePath(_norm(p)).parts[-len(parts) :] == parts
            ]
        if len(exact) == 1:
            return exact[0]
        if not exact:
            raise SessionNotFoundError(
                f"No open session for notebook {notebook!r}. Open sessions:\n{listing()}\n"
                "Open it in a browser or attach it headless first."
            )
        raise AmbiguousSessionError(
            f"Several sessions match {notebook!r}; pass session_id=...:\n{listing()}"
        )

    def _state(self, on_chunk: ChunkCallback | None) -> _StreamState:
        hint = "print less, or raise max_output_chars"
        return _StreamState(
            stdout=BoundedText(self.max_output_chars, what="stdout", hint=hint),
            stderr=BoundedText(self.max_output_chars, what="stderr", hint=hint),
            on_chunk=on_chunk,
            token=self._token,
        )

    def _execute_timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def _timeout_error(self, timeout: float, responsive: bool | None) -> ExecuteTimeoutError:
        after = (
            "The kernel answers again."
            if responsive
            else "The kernel did not answer afterwards: it may be wedged (code that swallows "
            "KeyboardInterrupt). Restart the kernel; that loses its variables."
        )
        return ExecuteTimeoutError(
            f"Execution passed its {timeout:g} s limit; marimo interrupted the kernel. The code "
            f"may have partly run: inspect state before retrying. {after}",
            kernel_responsive=responsive,
        )


class MarimoClient(_ClientCore):
    """A synchronous client for one marimo server.

    Example:
        >>> with MarimoClient(base_url="http://127.0.0.1:2718") as client:
        ...     print(client.execute("1 + 1", notebook="analysis.py").output)
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None = None,
        allow_remote: bool = False,
        timeout: float | None = DEFAULT_EXECUTE_TIMEOUT,
        connect_timeout: float = 5.0,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        check_version: bool = True,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            token=token,
            allow_remote=allow_remote,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_output_chars=max_output_chars,
            check_version=check_version,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            transport=transport, timeout=self._httpx_timeout(30.0)
        )
        self._attachments: list[_SyncAttachment] = []

    def __enter__(self) -> MarimoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release headless sessions and the connection pool."""
        for attachment in self._attachments:
            attachment.close()
        self._attachments.clear()
        if self._owns_http:
            self._http.close()

    def _get(
        self, path: str, what: str, *, timeout: float | None = _PROBE_TIMEOUT
    ) -> httpx.Response:
        try:
            response = self._http.get(
                self.base_url + path, headers=self._headers(), timeout=self._httpx_timeout(timeout)
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc, what) from None
        if response.status_code >= 400:
            self._raise_for(response.status_code, response.text, what)
        return response

    def health(self) -> bool:
        """True when the server answers ``/health`` with ``healthy``."""
        try:
            response = self._get("/health", "health check")
        except MarimoPairError:
            return False
        return "healthy" in response.text

    def version(self) -> str:
        """The server's marimo version (checked against the supported range once)."""
        version = self._get("/api/version", "version check").text.strip().strip('"')
        self.server_version = version
        if not self._version_checked:
            check_server_version(version)
            self._version_checked = True
        return version

    def sessions(self) -> list[SessionInfo]:
        """Every open session on the server."""
        if not self._version_checked:
            self.version()
        response = self._get("/api/sessions", "list sessions")
        if response.status_code == 200 and "json" not in response.headers.get("content-type", ""):
            raise ReadOnlyServerError(
                "This server does not list sessions: it is probably a read-only app server "
                "(`marimo run`). Start it with `marimo edit` to pair on it."
            )
        return self._parse_sessions(response.json())

    def resolve_session(
        self, notebook: str | None = None, *, session_id: str | None = None, refresh: bool = False
    ) -> SessionInfo:
        """The session for a notebook file (or id, or the only one open); cached."""
        cache_key = (notebook, session_id)
        if not refresh and cache_key in self._sessions_cache:
            return self._sessions_cache[cache_key]
        session = self._match(self.sessions(), notebook, session_id)
        self._sessions_cache[cache_key] = session
        return session

    def execute(
        self,
        code: str,
        *,
        notebook: str | None = None,
        session_id: str | None = None,
        timeout: float | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> ExecuteResult:
        """Run code in the notebook's scratchpad and wait for it to finish.

        Args:
            code: Python source; top-level ``await`` works.
            notebook: the notebook file (absolute, relative, or as the server lists it).
            session_id: a session key or stable id instead of ``notebook``.
            timeout: seconds before we disconnect (marimo then interrupts the kernel);
                defaults to the client's ``timeout``; ``None`` there means no limit.
            on_chunk: called with ``(channel, text)`` as stdout/stderr arrive.

        Raises:
            ExecuteTimeoutError: the deadline passed (the code may have partly run).
            OutcomeUnknownError: the stream ended before ``done``; never retry blindly.
            SessionNotFoundError, AmbiguousSessionError: the notebook has no single session.
        """
        session = self.resolve_session(notebook, session_id=session_id)
        try:
            return self._execute_on(session, code, timeout, on_chunk)
        except SessionNotFoundError:
            # The key went stale (a browser reconnected). The server rejected the request
            # before the code reached the kernel, so one retry after re-resolving is safe.
            if notebook is None and session_id is not None:
                raise
            session = self.resolve_session(notebook, session_id=session_id, refresh=True)
            return self._execute_on(session, code, timeout, on_chunk)

    def _execute_on(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
    ) -> ExecuteResult:
        limit = self._execute_timeout(timeout)
        state = self._state(on_chunk)
        started = time.monotonic()
        timed_out = False
        try:
            with self._http.stream(
                "POST",
                self.base_url + "/api/kernel/execute",
                json={"code": code},
                headers={**self._headers(), **session.headers(), "Accept": "text/event-stream"},
                timeout=self._httpx_timeout(limit),
            ) as response:
                if response.status_code >= 400:
                    self._raise_for(
                        response.status_code, response.read().decode(errors="replace"), "execute"
                    )
                for text in response.iter_text():
                    state.feed(text)
                    if (
                        limit is not None
                        and time.monotonic() - started > limit
                        and state.done is None
                    ):
                        timed_out = True
                        break
        except httpx.ReadTimeout:
            timed_out = True
        except httpx.ConnectError as exc:
            raise self._transport_error(exc, "execute") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            logger.debug("execute stream broke: %r", exc)
        if timed_out and limit is not None:
            raise self._timeout_error(limit, self._kernel_answers(session))
        return state.result(time.monotonic() - started)

    def _kernel_answers(self, session: SessionInfo, wait: float = _PROBE_TIMEOUT) -> bool:
        """After an interrupt, does a trivial execute complete within ``wait`` seconds?"""
        try:
            return self._execute_on(session, "None", wait, None).success
        except (ExecuteTimeoutError, OutcomeUnknownError, ServerUnavailableError):
            return False

    def ping(self, notebook: str | None = None, *, wait: float = _PROBE_TIMEOUT) -> None:
        """Raise `KernelBusyError` unless a trivial execute finishes within ``wait`` s."""
        session = self.resolve_session(notebook)
        if not self._kernel_answers(session, wait):
            raise KernelBusyError(
                f"The kernel did not answer within {wait:g} s: it is busy running a cell or "
                "wedged. Interrupt it, or restart it (loses variables)."
            )

    def attach(self, notebook: str | None = None, *, wait: float = 30.0) -> SessionInfo:
        """Open a session without a browser by holding ``/sse`` open in the background.

        Args:
            notebook: the notebook file for a directory server; ``None`` for a
                single-notebook server.
            wait: seconds to wait for the session to appear.

        The session is released (its stream closed) when the client closes; marimo
        keeps an edit session alive after that unless started with ``--session-ttl``.
        """
        key = f"mpt-{uuid.uuid4().hex[:12]}"
        params = {"session_id": key}
        if notebook is not None:
            params["file"] = notebook
        attachment = _SyncAttachment(self, params)
        self._attachments.append(attachment)
        deadline = time.monotonic() + wait
        while True:
            attachment.raise_if_failed()
            found = [s for s in self.sessions() if s.key == key]
            if found:
                session = found[0]
                self._sessions_cache[(notebook, None)] = session
                return session
            if time.monotonic() > deadline:
                attachment.close()
                raise SessionNotFoundError(
                    f"Opened a headless session for {notebook or 'the notebook'} but it did "
                    f"not appear within {wait:g} s."
                )
            time.sleep(0.02)


class _SyncAttachment:
    """A background thread that keeps one ``/sse`` stream open."""

    def __init__(self, client: MarimoClient, params: Mapping[str, str]) -> None:
        self._client = client
        self._params = dict(params)
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self.error: MarimoPairError | None = None
        self._thread = threading.Thread(target=self._run, name="marimo-pair-attach", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        client = self._client
        try:
            with client._http.stream(
                "GET",
                client.base_url + "/sse",
                params=self._params,
                headers={**client._headers(), "Accept": "text/event-stream"},
                timeout=client._httpx_timeout(None),
            ) as response:
                self._response = response
                if response.status_code >= 400:
                    body = response.read().decode(errors="replace")
                    try:
                        client._raise_for(response.status_code, body, "attach session")
                    except MarimoPairError as exc:
                        self.error = exc
                    return
                for _ in self._iter(response):
                    if self._stop.is_set():
                        return
        except httpx.HTTPError as exc:
            if not self._stop.is_set():
                self.error = client._transport_error(
                    exc
                    if isinstance(exc, httpx.TransportError)
                    else httpx.TransportError(str(exc)),
                    "attach session",
                )

    @staticmethod
    def _iter(response: httpx.Response) -> Iterator[bytes]:
        yield from response.iter_raw()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
        if not self._thread.is_alive() and self.error is None and not self._stop.is_set():
            raise SessionNotFoundError(
                "The server closed the headless session stream at once (a wrong token on "
                "/sse is answered this way, or the notebook could not be opened)."
            )

    def close(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(httpx.HTTPError, RuntimeError):
                response.close()
        self._thread.join(timeout=5)


class AsyncMarimoClient(_ClientCore):
    """The asyncio twin of `MarimoClient`; same arguments, awaitable methods."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None = None,
        allow_remote: bool = False,
        timeout: float | None = DEFAULT_EXECUTE_TIMEOUT,
        connect_timeout: float = 5.0,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        check_version: bool = True,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            token=token,
            allow_remote=allow_remote,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_output_chars=max_output_chars,
            check_version=check_version,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            transport=transport, timeout=self._httpx_timeout(30.0)
        )
        self._attachments: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> AsyncMarimoClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release headless sessions and the connection pool."""
        for task in self._attachments:
            task.cancel()
        for task in self._attachments:
            with contextlib.suppress(asyncio.CancelledError, MarimoPairError):
                await task
        self._attachments.clear()
        if self._owns_http:
            await self._http.aclose()

    async def _get(
        self, path: str, what: str, *, timeout: float | None = _PROBE_TIMEOUT
    ) -> httpx.Response:
        try:
            response = await self._http.get(
                self.base_url + path, headers=self._headers(), timeout=self._httpx_timeout(timeout)
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc, what) from None
        if response.status_code >= 400:
            self._raise_for(response.status_code, response.text, what)
        return response

    async def health(self) -> bool:
        """True when the server answers ``/health`` with ``healthy``."""
        try:
            response = await self._get("/health", "health check")
        except MarimoPairError:
            return False
        return "healthy" in response.text

    async def version(self) -> str:
        """The server's marimo version (checked against the supported range once)."""
        version = (await self._get("/api/version", "version check")).text.strip().strip('"')
        self.server_version = version
        if not self._version_checked:
            check_server_version(version)
            self._version_checked = True
        return version

    async def sessions(self) -> list[SessionInfo]:
        """Every open session on the server."""
        if not self._version_checked:
            await self.version()
        response = await self._get("/api/sessions", "list sessions")
        if "json" not in response.headers.get("content-type", ""):
            raise ReadOnlyServerError(
                "This server does not list sessions: it is probably a read-only app server "
                "(`marimo run`). Start it with `marimo edit` to pair on it."
            )
        return self._parse_sessions(response.json())

    async def resolve_session(
        self, notebook: str | None = None, *, session_id: str | None = None, refresh: bool = False
    ) -> SessionInfo:
        """The session for a notebook file (or id, or the only one open); cached."""
        cache_key = (notebook, session_id)
        if not refresh and cache_key in self._sessions_cache:
            return self._sessions_cache[cache_key]
        session = self._match(await self.sessions(), notebook, session_id)
        self._sessions_cache[cache_key] = session
        return session

    async def execute(
        self,
        code: str,
        *,
        notebook: str | None = None,
        session_id: str | None = None,
        timeout: float | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> ExecuteResult:
        """Run code in the notebook's scratchpad; see `MarimoClient.execute`."""
        session = await self.resolve_session(notebook, session_id=session_id)
        try:
            return await self._execute_on(session, code, timeout, on_chunk)
        except SessionNotFoundError:
            if notebook is None and session_id is not None:
                raise
            session = await self.resolve_session(notebook, session_id=session_id, refresh=True)
            return await self._execute_on(session, code, timeout, on_chunk)

    async def _execute_on(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
    ) -> ExecuteResult:
        limit = self._execute_timeout(timeout)
        state = self._state(on_chunk)
        started = time.monotonic()

        async def consume() -> None:
            async with self._http.stream(
                "POST",
                self.base_url + "/api/kernel/execute",
                json={"code": code},
                headers={**self._headers(), **session.headers(), "Accept": "text/event-stream"},
                timeout=self._httpx_timeout(None),
            ) as response:
                if response.status_code >= 400:
                    body = (await response.aread()).decode(errors="replace")
                    self._raise_for(response.status_code, body, "execute")
                async for text in response.aiter_text():
                    state.feed(text)

        try:
            await asyncio.wait_for(consume(), timeout=limit)
        except asyncio.TimeoutError:
            assert limit is not None
            raise self._timeout_error(limit, await self._kernel_answers(session)) from None
        except httpx.ConnectError as exc:
            raise self._transport_error(exc, "execute") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            logger.debug("execute stream broke: %r", exc)
        return state.result(time.monotonic() - started)

    async def _kernel_answers(self, session: SessionInfo, wait: float = _PROBE_TIMEOUT) -> bool:
        try:
            return (await self._execute_on(session, "None", wait, None)).success
        except (ExecuteTimeoutError, OutcomeUnknownError, ServerUnavailableError):
            return False

    async def ping(self, notebook: str | None = None, *, wait: float = _PROBE_TIMEOUT) -> None:
        """Raise `KernelBusyError` unless a trivial execute finishes within ``wait`` s."""
        session = await self.resolve_session(notebook)
        if not await self._kernel_answers(session, wait):
            raise KernelBusyError(
                f"The kernel did not answer within {wait:g} s: it is busy running a cell or "
                "wedged. Interrupt it, or restart it (loses variables)."
            )

    async def attach(self, notebook: str | None = None, *, wait: float = 30.0) -> SessionInfo:
        """Open a session without a browser; see `MarimoClient.attach`."""
        key = f"mpt-{uuid.uuid4().hex[:12]}"
        params = {"session_id": key}
        if notebook is not None:
            params["file"] = notebook
        opened = asyncio.Event()
        failure: list[MarimoPairError] = []

        async def hold() -> None:
            try:
                async with self._http.stream(
                    "GET",
                    self.base_url + "/sse",
                    params=params,
                    headers={**self._headers(), "Accept": "text/event-stream"},
                    timeout=self._httpx_timeout(None),
                ) as response:
                    if response.status_code >= 400:
                        body = (await response.aread()).decode(errors="replace")
                        try:
                            self._raise_for(response.status_code, body, "attach session")
                        except MarimoPairError as exc:
                            failure.append(exc)
                        return
                    opened.set()
                    async for _ in response.aiter_raw():
                        pass
            except httpx.TransportError as exc:
                failure.append(self._transport_error(exc, "attach session"))

        task = asyncio.create_task(hold())
        self._attachments.append(task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            if failure:
                raise failure[0]
            if task.done() and not failure:
                raise SessionNotFoundError(
                    "The server closed the headless session stream at once (a wrong token on "
                    "/sse is answered this way, or the notebook could not be opened)."
                )
            found = [s for s in await self.sessions() if s.key == key]
            if found:
                self._sessions_cache[(notebook, None)] = found[0]
                return found[0]
            if loop.time() > deadline:
                task.cancel()
                raise SessionNotFoundError(
                    f"Opened a headless session for {notebook or 'the notebook'} but it did "
                    f"not appear within {wait:g} s."
                )
            await asyncio.sleep(0.02)
