"""HTTP clients for one marimo server: sessions, scratchpad execute, headless attach.

`MarimoClient` and `AsyncMarimoClient` differ only in their I/O calls; request
building, session matching, SSE handling, redaction, path policy and error
mapping are shared pure helpers in `_ClientCore`, so the two cannot drift apart.

Three things here exist because a person may be using the same kernel:

- Before each execute the client asks marimo whether the kernel is already
  running something (``GET /api/kernel/status``). If it is, our code would queue
  behind that run, and our timeout's disconnect would interrupt it; so the
  client refuses up front (`KernelBusyError`) unless ``interrupt_others=True``.
- ``input()`` in code we send would wait for a reply nobody can type. A small
  guard, installed once per kernel, makes it fail at once instead (only for our
  requests; the person's own ``input()`` still works). It marks itself, and its
  installer rides in front of a process's first request on a session, so a fresh
  process pays no extra request for it.
- ``attach`` reuses a session that is already open for the notebook, so the
  agent and the browser tab share one kernel rather than fighting over it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from . import errors
from ._security import ensure_allowed_url, is_loopback_host, redact
from ._sse import SSEDecoder
from ._text import BoundedText, truncate
from ._versions import check_server_version
from .errors import (
    AmbiguousSessionError,
    AuthenticationError,
    ConfigurationError,
    MarimoPairError,
    OutcomeUnknownError,
    ReadOnlyServerError,
    ServerError,
    ServerUnavailableError,
    SessionError,
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
    "RestartResult",
    "SessionInfo",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT_CHARS = 200_000
DEFAULT_EXECUTE_TIMEOUT = 120.0
STABLE_SESSION_HEADER = "Marimo-Stable-Session-Id"
SESSION_HEADER = "Marimo-Session-Id"
SERVER_TOKEN_HEADER = "Marimo-Server-Token"  # noqa: S105 - a header name, not a secret
PAIR_CLIENT_HEADER = "X-Pair-Client"  # marimo hides `marimo-*` headers from the kernel
"""Marks our execute requests, so the kernel-side ``input()`` guard fires only for them."""
_RUN_ALL_BODY = {"objectIds": [], "values": [], "autoRun": True}
"""What marimo's page sends to `/api/kernel/instantiate` on open, with autorun on."""
_PROBE_TIMEOUT = 5.0
_CONTROL_TIMEOUT = 15.0
_SERVER_TOKEN_RE = re.compile(r"<marimo-server-token\b[^>]*\bdata-token=\"([^\"]*)\"")
_VARIABLES_TAG = "\x1fmarimo-pair-variables:"
_TEXT_MIMETYPES = ("text/plain", "text/html", "text/markdown")

# Lists the variables cells defined that the kernel holds now: the state a restart
# loses. marimo's graph knows each cell's definitions; names marimo itself puts in
# the namespace (`input`, leftovers of its patches) are not state. Without the
# internals (a future marimo), all public globals are listed.
_VARIABLES_PROGRAM = f"""
import json
try:
    from marimo._runtime.context import get_context
    _ctx = get_context()
    _defs = {{_d for _c in _ctx.graph.cells.values() for _d in _c.defs}}
    _names = sorted(_k for _k in _ctx.globals if _k in _defs and not _k.startswith("_"))
except (ImportError, AttributeError, LookupError, RuntimeError):
    _names = sorted(_k for _k in globals() if not _k.startswith("_"))
print({_VARIABLES_TAG!r} + json.dumps(_names))
"""

# Installed once per kernel (it checks its own mark first). marimo answers `input()` by asking the frontend
# for a line; nothing answers a scratchpad request from us, so it would hang until
# our timeout. The guard raises instead, only in the scratchpad and only for
# requests carrying our header. It relies on marimo internals and does nothing
# when they are missing (then `input()` just waits for the timeout again).
_INPUT_GUARD_PROGRAM = f"""
def _marimo_pair_install_input_guard():
    import sys
    stdin = sys.stdin
    original = getattr(stdin, "_readline_with_prompt", None)
    if original is None or getattr(original, "_marimo_pair_guard", False):
        return

    def from_pair_client():
        try:
            from marimo._runtime.context import get_context
            request = get_context().request
        except (ImportError, AttributeError, LookupError, RuntimeError):
            return False
        if request is None:
            return False
        headers = getattr(request, "headers", None) or {{}}
        return any(str(k).lower() == {PAIR_CLIENT_HEADER.lower()!r} for k in headers)

    def guarded(prompt="", password=False):
        stream = getattr(stdin, "_stream", None)
        if getattr(stream, "cell_id", None) == "__scratch__" and from_pair_client():
            raise RuntimeError(
                "input() cannot be answered here: this code came from marimo-pair-tools "
                "through marimo's scratchpad, where nobody can type a reply. Put the "
                "value in the code instead (or ask the person and pass their answer)."
            )
        return original(prompt, password)

    guarded._marimo_pair_guard = True
    try:
        stdin._readline_with_prompt = guarded
    except (AttributeError, TypeError):
        pass


_marimo_pair_install_input_guard()
"""

# The installer as one expression: it checks the guard's `_marimo_pair_guard` mark
# and returns at once when the kernel has it, so it can ride in front of any request.
_INPUT_GUARD_PREFIX = f"exec({_INPUT_GUARD_PROGRAM!r}, {{}})"
_COMPOUND = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.Match,
    *((ast.TryStar,) if hasattr(ast, "TryStar") else ()),
)


def _with_input_guard(code: str) -> str | None:
    """``code`` with the guard installer in front on its first line, or None.

    The installer joins line 1 (``installer; first statement`` or ``installer  #
    comment``), so every line number in a traceback stays the caller's. None when
    that is impossible (a compound statement or ``from __future__`` first) or
    pointless (code that does not compile never runs, so cannot call ``input()``).
    """
    try:
        tree = compile(code, "<code>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except (SyntaxError, ValueError):
        return None
    if not isinstance(tree, ast.Module) or not tree.body:
        return _INPUT_GUARD_PREFIX + "  " + code
    first = tree.body[0]
    starts = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
    if starts > 1:  # line 1 is blank or a comment
        return _INPUT_GUARD_PREFIX + "  " + code
    if isinstance(first, _COMPOUND) or first.col_offset != 0:
        return None
    if isinstance(first, ast.ImportFrom) and first.module == "__future__":
        return None
    return _INPUT_GUARD_PREFIX + "; " + code


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
    output_cut: int = 0
    """Characters cut from a text (plain/HTML/markdown) ``output``; images are never cut."""


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


class RestartResult(BaseModel):
    """What `restart` did, and what it cost."""

    model_config = ConfigDict(frozen=True)

    notebook: str | None
    """The notebook whose kernel was restarted (as the server names it)."""
    variables_lost: list[str] | None
    """Public names the old kernel held that the new one lacks; ``None`` when the old
    kernel did not answer, so they could not be listed (all of them are gone)."""
    session: SessionInfo | None
    """The session on the new kernel, or ``None`` when no client has reopened it yet."""
    message: str
    """A sentence for a person or a model: what was restarted and what was lost."""


@dataclass(frozen=True)
class _Scope:
    """What a server serves: a directory (``root``), or exactly one notebook file."""

    root: str | None
    files: tuple[str, ...] = ()


class _StreamRedactor:
    """Removes a secret from a stream even when it arrives split across chunks.

    It holds back the last ``len(secret) - 1`` characters until the next chunk (or
    the end) shows whether they start the secret.
    """

    def __init__(self, secret: str | None) -> None:
        self._secret = secret or ""
        self._keep = max(len(self._secret) - 1, 0)
        self._carry = ""

    def feed(self, text: str) -> str:
        if not self._secret:
            return text
        text = redact(self._carry + text, self._secret)
        if not self._keep:
            self._carry = ""
            return text
        self._carry = text[-self._keep :]
        return text[: -self._keep]

    def flush(self) -> str:
        rest, self._carry = self._carry, ""
        return redact(rest, self._secret) if self._secret else rest


@dataclass
class _StreamState:
    """Accumulates one execute stream."""

    stdout: BoundedText
    stderr: BoundedText
    on_chunk: ChunkCallback | None
    token: str | None
    max_output_chars: int
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    done: dict[str, Any] | None = None
    _redactors: dict[str, _StreamRedactor] = field(default_factory=dict)

    def _emit(self, channel: str, text: str) -> None:
        if not text:
            return
        (self.stdout if channel == "stdout" else self.stderr).append(text)
        if self.on_chunk is not None:
            self.on_chunk(channel, text)

    def _flush(self) -> None:
        for channel, redactor in self._redactors.items():
            self._emit(channel, redactor.flush())

    def feed(self, text: str) -> None:
        for event in self.decoder.feed(text):
            if event.event == "done":
                self._flush()
                self.done = json.loads(event.data)
                continue
            if event.event not in {"stdout", "stderr"}:
                continue
            payload = json.loads(event.data)
            redactor = self._redactors.setdefault(event.event, _StreamRedactor(self.token))
            self._emit(event.event, redactor.feed(str(payload.get("data", ""))))

    def result(self, elapsed: float) -> ExecuteResult:
        self._flush()
        if self.done is None:
            raise OutcomeUnknownError(
                "The execute stream ended before marimo reported completion: the code may "
                "have run fully, partly or not at all. Inspect the notebook state before "
                "retrying; do not re-run it blindly." + _tail_hint(self.stderr.getvalue())
            )
        output = self.done.get("output")
        out = None
        cut = 0
        if isinstance(output, dict) and (output.get("data") or output.get("mimetype")):
            mimetype = str(output.get("mimetype", "text/plain"))
            data = redact(str(output.get("data", "")), self.token)
            if mimetype.startswith(_TEXT_MIMETYPES) and len(data) > self.max_output_chars:
                bounded = truncate(
                    data, self.max_output_chars, what="output", hint="return something smaller"
                )
                cut = len(data) - self.max_output_chars
                data = bounded
            out = OutputData(mimetype=mimetype, data=data)
        return ExecuteResult(
            success=bool(self.done.get("success")),
            stdout=self.stdout.getvalue(),
            stderr=self.stderr.getvalue(),
            output=out,
            elapsed=elapsed,
            stdout_cut=self.stdout.cut,
            stderr_cut=self.stderr.cut,
            output_cut=cut,
        )


def _tail_hint(stderr: str) -> str:
    tail = stderr.strip()[-500:]
    return f"\nLast stderr before the cut:\n{tail}" if tail else ""


def _norm(path: str) -> str:
    return os.path.normcase(os.path.normpath(path))


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([_norm(path), _norm(root)]) == _norm(root)
    except ValueError:  # different drives on Windows
        return False


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
        probe_timeout: float,
        root: str | os.PathLike[str] | None,
    ) -> None:
        self.base_url = ensure_allowed_url(base_url, allow_remote=allow_remote)
        self._token = token if token is not None else (os.environ.get("MARIMO_TOKEN") or None)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_output_chars = max_output_chars
        self.probe_timeout = probe_timeout
        self.root = os.fspath(root) if root is not None else None
        self._check_version = check_version
        self._version_checked = not check_version
        self._sessions_cache: dict[tuple[str | None, str | None], SessionInfo] = {}
        self._server_token: str | None = None
        self._scope_cache: _Scope | None = None
        self._guarded: set[str] = set()
        self._ran: set[str] = set()
        self._released: dict[str, str | None] = {}
        """Sessions this client opened and let go (key -> notebook): still its to reopen."""
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

    def _execute_headers(self, session: SessionInfo) -> dict[str, str]:
        return {
            **self._headers(),
            **session.headers(),
            "Accept": "text/event-stream",
            PAIR_CLIENT_HEADER: "1",
        }

    def _control_headers(self, session: SessionInfo | None, server_token: str) -> dict[str, str]:
        headers = {**self._headers(), SERVER_TOKEN_HEADER: server_token}
        if session is not None:
            # Control endpoints route by the session key only (no stable-id support).
            headers[SESSION_HEADER] = session.key
        return headers

    def _httpx_timeout(self, read: float | None) -> httpx.Timeout:
        return httpx.Timeout(self.connect_timeout, read=read, write=30.0, pool=30.0)

    def _redact(self, text: str) -> str:
        return redact(text, self._token)

    def _raise_for(self, response_status: int, body: str, what: str) -> None:
        detail = body
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                for key in ("detail", "error"):
                    if key in parsed:
                        detail = str(parsed[key])
                        break
        detail = self._redact(detail.strip())[:500]
        raise error_for_status(response_status, detail, what=what)

    @staticmethod
    def _is_skew_rejection(status_code: int, body: str) -> bool:
        """marimo's skew protection answers 401 ``{"error": "... server token"}``."""
        return status_code == 401 and "server token" in body.lower()

    @staticmethod
    def _skew_error(what: str) -> ServerError:
        return ServerError(
            f"{what}: the server refused its own skew-protection token twice (HTTP 401). "
            "A proxy may strip the Marimo-Server-Token header.",
            status_code=401,
        )

    @staticmethod
    def _parse_server_token(html: str) -> str:
        match = _SERVER_TOKEN_RE.search(html)
        if match is None or not match.group(1):
            raise ServerError(
                "The server's page carries no skew-protection token (`marimo-server-token`), "
                "so kernel control requests (interrupt, restart) cannot be sent. Is this a "
                "marimo edit server?"
            )
        return match.group(1)

    def _transport_error(self, exc: httpx.TransportError, what: str) -> MarimoPairError:
        if isinstance(exc, httpx.ConnectError):
            return ServerUnavailableError(
                f"{what}: nothing answers at {self.base_url} ({type(exc).__name__}). "
                "Is the marimo server running? `marimo-pair discover` lists live servers."
            )
        return ServerUnavailableError(f"{what}: connection to {self.base_url} failed: {exc!r}")

    @staticmethod
    def _read_only_error() -> ReadOnlyServerError:
        return ReadOnlyServerError(
            "This server does not let anyone edit: it is a read-only app server "
            "(`marimo run`), which refuses sessions and code execution. Start the notebook "
            "with `marimo edit` to pair on it."
        )

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

    def _given(self, notebook: str | None, session_id: str | None) -> SessionInfo | None:
        """The session an execute names by id, without listing the sessions first.

        A wrong or stale id is refused by the server before anything runs (500
        ``Invalid session id``); `execute` then lists the sessions once and retries,
        so the listing is paid only when it is needed.
        """
        if session_id is None or notebook is not None:
            return None
        cached = self._sessions_cache.get((None, session_id))
        return cached or SessionInfo(key=session_id, stable_id=None, path=None, filename=None)

    def _forget(self, session: SessionInfo) -> None:
        """Drop cached knowledge of a session that no longer exists."""
        for cache_key, cached in list(self._sessions_cache.items()):
            if cached.key == session.key or (
                cached.stable_id and cached.stable_id == session.stable_id
            ):
                del self._sessions_cache[cache_key]
        self._guarded.discard(self._guard_key(session))

    @staticmethod
    def _guard_key(session: SessionInfo) -> str:
        return session.stable_id or session.key

    # -- the path policy for `attach(file=...)` ---------------------------------

    @staticmethod
    def _parse_scope(body: Any) -> _Scope:
        if not isinstance(body, dict):
            raise ServerError(f"Unexpected workspace answer: {type(body).__name__}")
        root = str(body.get("root") or "") or None
        files = tuple(
            str(f["path"])
            for f in body.get("files") or []
            if isinstance(f, dict) and f.get("path") and not f.get("isDirectory")
        )
        return _Scope(root=root, files=files)

    def _check_scope(self, notebook: str, scope: _Scope | None) -> str:
        """Refuse a notebook path the server does not serve, before anything is sent.

        marimo refuses paths outside a directory server's root (403), but a
        single-file server opens *any* path given as ``file=``; and a path is
        better refused here, with a reason, than discovered by the server.

        The allowed area is what the server itself reports (``root`` of
        ``/api/home/workspace_files``, or the one file a single-file server
        serves), narrowed by the client's ``root=`` when given. Paths are compared
        after normalisation, and, when this machine is the server's (loopback),
        after resolving symlinks too, so a link cannot point out of the root.

        Returns:
            The absolute, normalised path the server will open.
        """
        local = is_loopback_host(httpx.URL(self.base_url).host)
        server_root = scope.root if scope is not None else None
        served = scope.files if scope is not None and not scope.root else ()
        roots = [r for r in (server_root, self.root) if r]
        base = server_root or (os.path.dirname(served[0]) if len(served) == 1 else self.root)
        candidate = os.path.expanduser(notebook)
        if not os.path.isabs(candidate) and base is not None:
            candidate = os.path.join(base, candidate)
        candidate = os.path.normpath(candidate)

        def refuse(where: str) -> ConfigurationError:
            return ConfigurationError(
                self._redact(
                    f"Refusing to open {notebook!r}: it is outside {where}. Only notebooks "
                    "the server serves can be opened; name one inside it."
                )
            )

        if not os.path.isabs(candidate):
            raise refuse("what this client can check (give an absolute path or root=...)")
        for root in roots:
            if not _inside(candidate, root) or (
                local and not _inside(os.path.realpath(candidate), os.path.realpath(root))
            ):
                raise refuse(f"the served directory {root!r}")
        if scope is not None and not scope.root:
            # A single-notebook server: that notebook, and nothing else.
            if not served:
                raise refuse("anything the server reports serving")
            if not any(_norm(candidate) == _norm(f) for f in served) and not (
                local and any(os.path.realpath(candidate) == os.path.realpath(f) for f in served)
            ):
                raise refuse(f"the one notebook this server serves ({served[0]!r})")
        elif scope is None and not roots:
            raise refuse("what this client can check (the server does not say; pass root=...)")
        return candidate

    # -- execute, busy check, timeouts ------------------------------------------

    def _state(self, on_chunk: ChunkCallback | None) -> _StreamState:
        hint = "print less, or raise max_output_chars"
        return _StreamState(
            stdout=BoundedText(self.max_output_chars, what="stdout", hint=hint),
            stderr=BoundedText(self.max_output_chars, what="stderr", hint=hint),
            on_chunk=on_chunk,
            token=self._token,
            max_output_chars=self.max_output_chars,
        )

    def _execute_timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    @staticmethod
    def _parse_status(response: httpx.Response) -> str:
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("state"), str):
                return str(body["state"])
        return "unknown"

    @staticmethod
    def _busy_error(session: SessionInfo) -> errors.KernelBusyError:
        return errors.KernelBusyError(
            f"The kernel of {session.path or session.filename or 'this notebook'} is already "
            "running other work (a cell someone started in the browser, or another agent's "
            "code), so nothing was sent. Our code would queue behind that run, and if it then "
            "timed out, the disconnect would interrupt that run too. Wait and retry, ask the "
            "person, or pass interrupt_others=True to accept that risk."
        )

    def _stream_ended_error(self, session: SessionInfo) -> ServerUnavailableError:
        name = session.path or session.filename or "the notebook"
        return ServerUnavailableError(
            f"The session of {name} closed before its first run finished: the server at "
            f"{self.base_url} stopped or dropped it. Is it still running?"
        )

    @staticmethod
    def _not_sent_error(session: SessionInfo, exc: MarimoPairError) -> MarimoPairError:
        """The one-time setup request before the caller's code failed: their code never ran."""
        name = session.path or session.filename or "this notebook"
        if isinstance(exc, errors.ExecuteTimeoutError):
            return errors.KernelBusyError(
                f"The kernel of {name} did not answer a trivial request, so your code was not "
                "sent. It is busy with a long run or wedged: wait and retry, interrupt it, or "
                "restart it (that loses its variables)."
            )
        return ServerUnavailableError(
            f"The server stopped answering before your code was sent (your code did not run): {exc}"
        )

    @staticmethod
    def _timeout_error(
        timeout: float, responsive: bool | None, *, busy_before: bool
    ) -> errors.ExecuteTimeoutError:
        if responsive is None:
            after = ""
        elif responsive:
            after = " The kernel answers again."
        else:
            after = (
                " The kernel did not answer afterwards: it is wedged (code that swallows "
                "KeyboardInterrupt, or a blocking call). Only a restart frees it (the "
                "browser's restart, or `MarimoClient.restart`), and that loses its variables: "
                "tell the person before anyone restarts."
            )
        others = (
            " The kernel was already running other work when this code was sent "
            "(interrupt_others=True): the interrupt hit that run too, which may have been "
            "a person's cell. Tell them."
            if busy_before
            else ""
        )
        return errors.ExecuteTimeoutError(
            f"Execution passed its {timeout:g} s limit; marimo interrupted the kernel. The code "
            f"may have partly run: inspect state before retrying.{others}{after}",
            kernel_responsive=responsive,
        )

    @staticmethod
    def _parse_variables(result: ExecuteResult) -> list[str] | None:
        for line in result.stdout.splitlines():
            if line.startswith(_VARIABLES_TAG):
                with contextlib.suppress(ValueError):
                    names = json.loads(line[len(_VARIABLES_TAG) :])
                    if isinstance(names, list):
                        return [str(n) for n in names]
        return None

    @staticmethod
    def _restart_result(
        old: SessionInfo,
        before: list[str] | None,
        after: list[str] | None,
        new: SessionInfo | None,
    ) -> RestartResult:
        name = old.path or old.filename or "the notebook"
        if before is None:
            lost = None
            what = (
                "The old kernel did not answer, so its variables could not be listed; all of "
                "them are gone."
            )
        else:
            lost = sorted(set(before) - set(after or []))
            if lost:
                shown = ", ".join(lost[:50]) + (
                    f" … ({len(lost)} in all)" if len(lost) > 50 else ""
                )
                what = f"Lost {len(lost)} variable(s): {shown}."
            else:
                what = "The old kernel held no public variables, so nothing was lost."
        if new is None:
            then = (
                ' No client has reopened the notebook: a browser tab now shows "kernel not '
                'found". The person should reload the page, not click "Try again" (marimo '
                "0.25 then blanks cells added since the page loaded and autosaves the "
                "blanks). If nobody has it open, call attach() to start it headless."
            )
        else:
            then = " Re-run the cells that define what you need."
        return RestartResult(
            notebook=old.path or old.filename,
            variables_lost=lost,
            session=new,
            message=f"Restarted the kernel of {name}. {what}{then}",
        )


class MarimoClient(_ClientCore):
    """A synchronous client for one marimo server.

    Example:
        >>> with MarimoClient(base_url="http://127.0.0.1:2718") as client:
        ...     print(client.execute("1 + 1", notebook="analysis.py").output)

    Args:
        base_url: the server URL; loopback only unless ``allow_remote``.
        token: the server's token; defaults to ``MARIMO_TOKEN``.
        allow_remote: accept a non-loopback URL (code runs there with your rights).
        timeout: default execute limit in seconds; ``None`` for none.
        connect_timeout: seconds to wait for a connection.
        max_output_chars: bound for stdout, stderr and text output of one execute.
        check_version: check the server's marimo version once.
        probe_timeout: seconds a trivial execute may take before the kernel counts
            as unresponsive (after a timeout, in `ping`, before a restart).
        root: a directory that ``attach(file)`` must stay inside, on top of what
            the server itself serves.
        http_client / transport: bring your own httpx client or transport.
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
        probe_timeout: float = _PROBE_TIMEOUT,
        root: str | os.PathLike[str] | None = None,
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
            probe_timeout=probe_timeout,
            root=root,
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
        self,
        path: str,
        what: str,
        *,
        timeout: float | None = _PROBE_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        for attempt in range(2):
            try:
                response = self._http.get(
                    self.base_url + path,
                    headers={**self._headers(), **(headers or {})},
                    timeout=self._httpx_timeout(timeout),
                )
                break
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                # uvicorn resets a kept-alive connection after some 500 answers (a stale
                # session key); the next request on it fails at once. A GET is safe to
                # send again, on a fresh connection.
                if attempt:
                    raise self._transport_error(exc, what) from None
            except httpx.TransportError as exc:
                raise self._transport_error(exc, what) from None
        if response.status_code >= 400:
            self._raise_for(response.status_code, response.text, what)
        return response

    def _fetch_server_token(self, *, refresh: bool = False) -> str:
        if self._server_token is None or refresh:
            html = self._get("/", "read the server token", headers={"Accept": "text/html"}).text
            self._server_token = self._parse_server_token(html)
        return self._server_token

    def _post_control(
        self, path: str, what: str, session: SessionInfo | None, body: Any = None
    ) -> httpx.Response:
        """POST to a control endpoint with the skew-protection token (re-fetched once)."""
        for attempt in range(2):
            token = self._fetch_server_token(refresh=attempt > 0)
            try:
                response = self._http.post(
                    self.base_url + path,
                    json=body if body is not None else {},
                    headers=self._control_headers(session, token),
                    timeout=self._httpx_timeout(_CONTROL_TIMEOUT),
                )
            except httpx.TransportError as exc:
                raise self._transport_error(exc, what) from None
            if self._is_skew_rejection(response.status_code, response.text):
                if attempt == 0:
                    continue  # the server restarted: its token changed
                raise self._skew_error(what)
            if response.status_code >= 400:
                self._raise_for(response.status_code, response.text, what)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

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
        """Every open session on the server.

        Raises:
            ReadOnlyServerError: a `marimo run` app server (it lists no sessions).
            AuthenticationError: the token is missing or wrong.
        """
        if not self._version_checked:
            self.version()
        try:
            response = self._get("/api/sessions", "list sessions")
        except AuthenticationError:
            # `marimo run` answers 401 here but its version endpoint is open; a token
            # server refuses both.
            if self._answers_version():
                raise self._read_only_error() from None
            raise
        if "json" not in response.headers.get("content-type", ""):
            raise self._read_only_error()
        return self._parse_sessions(response.json())

    def _answers_version(self) -> bool:
        try:
            self._get("/api/version", "version check")
        except MarimoPairError:
            return False
        return True

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
        interrupt_others: bool = False,
    ) -> ExecuteResult:
        """Run code in the notebook's scratchpad and wait for it to finish.

        Args:
            code: Python source; top-level ``await`` works.
            notebook: the notebook file (absolute, relative, or as the server lists it).
            session_id: a session key or stable id instead of ``notebook``.
            timeout: seconds before we disconnect (marimo then interrupts the kernel);
                defaults to the client's ``timeout``; ``None`` there means no limit.
            on_chunk: called with ``(channel, text)`` as stdout/stderr arrive.
            interrupt_others: send even when the kernel is already running other work
                (a person's cell); a timeout would then interrupt that work too.

        Raises:
            KernelBusyError: the kernel was running other work; nothing was sent.
            ExecuteTimeoutError: the deadline passed (the code may have partly run).
            OutcomeUnknownError: the stream ended before ``done``; never retry blindly.
            SessionNotFoundError, AmbiguousSessionError: the notebook has no single session.
        """
        session = self._given(notebook, session_id) or self.resolve_session(
            notebook, session_id=session_id
        )
        try:
            return self._execute_checked(session, code, timeout, on_chunk, interrupt_others)
        except SessionNotFoundError:
            # The key went stale (a browser reconnected). The server rejected the request
            # before the code reached the kernel, so one retry after re-resolving is safe.
            session = self.resolve_session(notebook, session_id=session_id, refresh=True)
            return self._execute_checked(session, code, timeout, on_chunk, interrupt_others)

    def _execute_checked(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
        interrupt_others: bool,
    ) -> ExecuteResult:
        busy = self._kernel_state(session) == "running"
        if busy and not interrupt_others:
            raise self._busy_error(session)
        sent = self._ensure_input_guard(session, timeout, code)
        result = self._execute_on(session, sent, timeout, on_chunk, busy_before=busy)
        if sent != code:
            self._guarded.add(self._guard_key(session))
        return result

    def _kernel_state(self, session: SessionInfo) -> str:
        """``running``, ``idle``, ``stopped``, or ``unknown`` (a server without the endpoint)."""
        try:
            response = self._get(
                "/api/kernel/status", "kernel status", headers={SESSION_HEADER: session.key}
            )
        except ServerError as exc:
            if exc.status_code in {404, 405}:
                return "unknown"
            raise
        return self._parse_status(response)

    def _ensure_input_guard(self, session: SessionInfo, timeout: float | None, code: str) -> str:
        """The code to send: behind the guard's installer when this kernel may lack it.

        The installer rides in front of the caller's code when it can do so without
        moving a line (`_with_input_guard`); otherwise it is sent alone, once.
        """
        key = self._guard_key(session)
        if key in self._guarded:
            return code
        folded = _with_input_guard(code)
        if folded is not None:
            return folded
        limit = self._execute_timeout(timeout)
        wait = self.probe_timeout if limit is None else min(limit, self.probe_timeout)
        try:
            result = self._execute_on(session, _INPUT_GUARD_PROGRAM, wait, None, internal=True)
        except (errors.ExecuteTimeoutError, OutcomeUnknownError) as exc:
            raise self._not_sent_error(session, exc) from None
        if not result.success:
            logger.debug("input() guard not installed: %s", result.stderr[-300:])
        self._guarded.add(key)
        return code

    def _execute_on(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
        *,
        busy_before: bool = False,
        internal: bool = False,
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
                headers=self._execute_headers(session),
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
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the server: safe to report as unavailable.
            raise self._transport_error(exc, "execute") from None
        except httpx.TransportError as exc:
            logger.debug("execute stream broke: %r", exc)
        if timed_out and limit is not None:
            # An internal request (a probe) must not probe again: that recursion never ends
            # on a wedged kernel.
            responsive = None if internal else self._kernel_answers(session)
            raise self._timeout_error(limit, responsive, busy_before=busy_before)
        return state.result(time.monotonic() - started)

    def _kernel_answers(self, session: SessionInfo, wait: float | None = None) -> bool:
        """Does a trivial execute complete within ``wait`` (default ``probe_timeout``) s?"""
        try:
            return self._execute_on(
                session, "None", wait or self.probe_timeout, None, internal=True
            ).success
        except (errors.ExecuteTimeoutError, OutcomeUnknownError, ServerUnavailableError):
            return False

    def ping(self, notebook: str | None = None, *, wait: float = _PROBE_TIMEOUT) -> None:
        """Raise `KernelBusyError` unless a trivial execute finishes within ``wait`` s."""
        session = self.resolve_session(notebook)
        # A probe that times out disconnects, which would interrupt a person's running cell.
        if self._kernel_state(session) == "running":
            raise self._busy_error(session)
        if not self._kernel_answers(session, wait):
            raise errors.KernelBusyError(
                f"The kernel did not answer within {wait:g} s: it is busy running a cell or "
                "wedged. Interrupt it, or restart it (loses variables)."
            )

    def _control(
        self, path: str, what: str, notebook: str | None, session_id: str | None
    ) -> SessionInfo:
        session = self.resolve_session(notebook, session_id=session_id)
        try:
            self._post_control(path, what, session)
        except SessionNotFoundError:
            # A stale key was refused before anything happened: re-resolve once.
            session = self.resolve_session(notebook, session_id=session_id, refresh=True)
            self._post_control(path, what, session)
        return session

    def interrupt(self, notebook: str | None = None, *, session_id: str | None = None) -> None:
        """Interrupt whatever the notebook's kernel runs (like the browser's stop button).

        This stops a person's running cell as well as ours. Code that swallows
        ``KeyboardInterrupt`` ignores it; only `restart` frees such a kernel.
        """
        self._control("/api/kernel/interrupt", "interrupt", notebook, session_id)

    def restart(
        self, notebook: str | None = None, *, session_id: str | None = None, wait: float = 30.0
    ) -> RestartResult:
        """Restart the notebook's kernel: a fresh process, every variable lost.

        First lists the old kernel's public variables (when it answers within
        ``probe_timeout``), so the result can say what was lost. marimo closes the
        session. A headless session this client attached is re-attached (within
        ``wait`` s); one it opened and let go (`release`) is reopened and let go again,
        unless a person took it meanwhile. A browser tab does not reconnect by itself (it shows "kernel
        not found"), so for a session this client did not attach the result has
        ``session=None`` and tells the person to reload (the tab's "Try again"
        loses cells created since the page loaded; measured on marimo 0.25.2).
        The client never attaches headless in the person's place. Cells are not
        re-run.

        Returns:
            `RestartResult` with the lost variable names and the new session.
        """
        session = self.resolve_session(notebook, session_id=session_id, refresh=True)
        before = self._list_variables(session)
        session = self._control("/api/kernel/restart_session", "restart", notebook, session_id)
        self._forget(session)
        ours = [a for a in self._attachments if a.key == session.key]
        new: SessionInfo | None = None
        if ours:
            for attachment in ours:
                attachment.close()
                self._attachments.remove(attachment)
            new = self.attach(ours[0].notebook, wait=wait)
        elif session.key in self._released:
            # Ours, let go so that a person could take it; nobody did (the key would have
            # changed). Reopen it, and let go again.
            new = self.attach(self._released.pop(session.key), wait=wait)
            self.release(new)
        else:
            new = self._wait_for_session(session, min(wait, 1.0))
        after = self._list_variables(new) if new is not None else None
        return self._restart_result(session, before, after, new)

    def _list_variables(self, session: SessionInfo) -> list[str] | None:
        try:
            result = self._execute_on(
                session, _VARIABLES_PROGRAM, self.probe_timeout, None, internal=True
            )
        except (errors.ExecuteTimeoutError, OutcomeUnknownError, ServerUnavailableError):
            return None
        return self._parse_variables(result)

    def _wait_for_session(self, old: SessionInfo, wait: float) -> SessionInfo | None:
        deadline = time.monotonic() + wait
        path = old.path or old.filename
        while time.monotonic() < deadline:
            for candidate in self.sessions():
                if candidate.key != old.key and (candidate.path or candidate.filename) == path:
                    return candidate
            time.sleep(0.1)
        return None

    def _scope(self) -> _Scope | None:
        if self._scope_cache is None:
            try:
                response = self._post_control(
                    "/api/home/workspace_files",
                    "read the served directory",
                    None,
                    {"includeMarkdown": False},
                )
            except ServerError as exc:
                logger.debug("server does not report its directory: %s", exc)
                return None
            self._scope_cache = self._parse_scope(response.json())
        return self._scope_cache

    def attach(self, notebook: str | None = None, *, wait: float = 30.0) -> SessionInfo:
        """Make sure the notebook has a session, opening one headless if needed.

        When the notebook already has a session (a person's browser tab, or an
        earlier attach), that session is returned and no second consumer is
        opened: the agent and the person share one kernel. Otherwise ``/sse`` is
        held open in the background.

        Args:
            notebook: the notebook file for a directory server; ``None`` for a
                single-notebook server. It must lie inside what the server serves
                (and inside the client's ``root``); this is checked before
                anything is sent.
            wait: seconds to wait for the session to appear.

        The session is released (its stream closed) when the client closes; marimo
        keeps an edit session alive after that unless started with ``--session-ttl``.

        Raises:
            ConfigurationError: ``notebook`` is outside what the server serves.
            ReadOnlyServerError: the server is a `marimo run` app server.
        """
        if notebook is not None:
            target: str | None = self._check_scope(notebook, self._scope())
        else:
            target = None
        existing = self._existing_session(notebook, target)
        if existing is not None:
            return existing
        key = f"mpt-{uuid.uuid4().hex[:12]}"
        params = {"session_id": key}
        if target is not None:
            params["file"] = target  # the path that passed the check, not a re-interpretation
        attachment = _SyncAttachment(self, params, key=key, notebook=notebook)
        self._attachments.append(attachment)
        deadline = time.monotonic() + wait
        while True:
            attachment.raise_if_failed()
            try:
                listed = self.sessions()
            except ServerUnavailableError:
                # marimo may not answer while it starts the session's kernel, which on a
                # loaded machine outlasts one listing's timeout: poll until `wait`.
                listed = []
            found = [s for s in listed if s.key == key]
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

    def _existing_session(self, notebook: str | None, target: str | None) -> SessionInfo | None:
        try:
            session = self._match(self.sessions(), target or notebook, None)
        except SessionNotFoundError:
            return None
        self._sessions_cache[(notebook, None)] = session
        return session

    def opened(self, session: SessionInfo) -> bool:
        """Whether this client opened ``session`` (holds its headless ``/sse`` stream).

        Such a session has no person's tab behind it: nobody else will run it.
        """
        return any(a.key == session.key for a in self._attachments)

    def run_all(self, session: SessionInfo, *, wait: float = 600.0) -> bool:
        """Run the notebook in a session this client opened, as marimo's page does on open.

        The page asks marimo to instantiate the notebook when it connects; a
        headless session has no page, so its cells would never run, and errors,
        variables and outputs would be missing. This sends the same request with
        ``autoRun`` on (what the person gets by opening the tab and running all),
        then waits until marimo reports the run complete. Only for a session this
        client opened: a person's session is never re-run. Runs once per session.

        Args:
            session: a session `attach` opened (see `opened`).
            wait: seconds to wait for the run to finish; it goes on after that, and
                executes are refused as busy until it ends.

        Returns:
            True when the run finished within ``wait`` (or had been done before).

        Raises:
            SessionError: ``session`` was not opened by this client.
        """
        attachment = next((a for a in self._attachments if a.key == session.key), None)
        if attachment is None:
            raise SessionError(
                "run_all runs only a session this client opened headless; a session a "
                "person has open is theirs to run."
            )
        if session.key in self._ran:
            return True
        seen = attachment.runs.count
        self._post_control("/api/kernel/instantiate", "run the notebook", session, _RUN_ALL_BODY)
        self._ran.add(session.key)
        done = attachment.runs.wait_beyond(seen, wait)
        if not done and attachment.runs.ended:
            attachment.raise_if_failed()
            raise self._stream_ended_error(session)
        return done

    def release(self, session: SessionInfo) -> None:
        """Close the headless stream this client holds for ``session``; the session stays.

        marimo keeps an edit session that no client is connected to, and gives it to
        the next browser tab that opens the notebook, as its editor. While our stream
        holds it, that tab is only a reader and must press "Take over".
        """
        for attachment in [a for a in self._attachments if a.key == session.key]:
            attachment.close()
            self._attachments.remove(attachment)
            self._released[session.key] = attachment.notebook


class _CompletedRuns:
    """Counts marimo's ``completed-run`` messages on a session stream we hold.

    marimo sends one when a command's reactive cycle ends (a run of the whole
    notebook included), so a count that went up means the run we asked for is over.
    """

    _MARKER = b'"op": "completed-run"'

    def __init__(self) -> None:
        self.count = 0
        self.ended = False
        """The stream is over (closed, or the server went away): no run will be seen."""
        self._tail = b""
        self._changed = threading.Condition()

    def feed(self, chunk: bytes) -> None:
        text = self._tail + chunk
        found = text.count(self._MARKER)
        # Keep less than one marker: a marker split across chunks is seen once.
        self._tail = text[-(len(self._MARKER) - 1) :]
        if found:
            with self._changed:
                self.count += found
                self._changed.notify_all()

    def end(self) -> None:
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait_beyond(self, seen: int, timeout: float) -> bool:
        """Wait until more than ``seen`` runs completed; False when ``timeout`` passed first
        or the stream ended."""
        with self._changed:
            self._changed.wait_for(lambda: self.count > seen or self.ended, timeout)
            return self.count > seen


class _SyncAttachment:
    """A background thread that keeps one ``/sse`` stream open."""

    def __init__(
        self, client: MarimoClient, params: Mapping[str, str], *, key: str, notebook: str | None
    ) -> None:
        self._client = client
        self._params = dict(params)
        self.key = key
        self.notebook = notebook
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self.error: MarimoPairError | None = None
        self.runs = _CompletedRuns()
        self._thread = threading.Thread(target=self._run, name="marimo-pair-attach", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._hold()
        finally:
            self.runs.end()

    def _hold(self) -> None:
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
                for chunk in self._iter(response):
                    self.runs.feed(chunk)
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
            # The reader thread blocks in recv(); closing the response from this thread
            # does not wake it (teardown took 5 s per session). Shutting the socket down
            # does: recv returns at once and the thread ends.
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(httpx.HTTPError, RuntimeError):
                response.close()
        self._thread.join(timeout=5)


async def _closed_with_the_loop(pool: httpx.AsyncClient) -> AsyncIterator[None]:
    """Suspended for the life of an event loop; closes ``pool`` when the loop shuts down."""
    try:
        yield
    finally:
        await pool.aclose()


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
        probe_timeout: float = _PROBE_TIMEOUT,
        root: str | os.PathLike[str] | None = None,
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
            probe_timeout=probe_timeout,
            root=root,
        )
        self._owns_http = http_client is None
        self._transport = transport
        self._pool = http_client or self._new_pool()
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._closer: AsyncIterator[None] | None = None
        self._attachments: list[asyncio.Task[None]] = []
        self._attached: dict[str, tuple[asyncio.Task[None], str | None]] = {}
        self._runs: dict[str, _CompletedRuns] = {}

    def _new_pool(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self._transport, timeout=self._httpx_timeout(30.0))

    async def _http(self) -> httpx.AsyncClient:
        """The connection pool, for the event loop that runs now.

        httpx keeps connections bound to the loop that opened them, so a client used
        from a second `asyncio.run` failed with "Event loop is closed". A pool this
        client made is used by one loop only: it is closed as that loop shuts down
        (`asyncio.run` finalizes async generators before closing the loop), and the
        next loop gets a new one. Headless streams end with their loop too (marimo
        keeps those sessions).
        """
        loop = asyncio.get_running_loop()
        if self._pool_loop is not loop:
            if self._pool_loop is not None and self._owns_http:
                self._pool = self._new_pool()
                self._attachments.clear()
                self._attached.clear()
                self._runs.clear()
            self._pool_loop = loop
            if self._owns_http:
                self._closer = _closed_with_the_loop(self._pool)
                await self._closer.__anext__()
        return self._pool

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
        http = await self._http()  # forgets what belonged to an earlier loop
        for task in self._attachments:
            task.cancel()
        for task in self._attachments:
            with contextlib.suppress(asyncio.CancelledError, MarimoPairError):
                await task
        self._attachments.clear()
        self._attached.clear()
        self._runs.clear()
        if self._owns_http:
            await http.aclose()

    async def _get(
        self,
        path: str,
        what: str,
        *,
        timeout: float | None = _PROBE_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        for attempt in range(2):
            try:
                response = await (await self._http()).get(
                    self.base_url + path,
                    headers={**self._headers(), **(headers or {})},
                    timeout=self._httpx_timeout(timeout),
                )
                break
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                if attempt:  # see MarimoClient._get
                    raise self._transport_error(exc, what) from None
            except httpx.TransportError as exc:
                raise self._transport_error(exc, what) from None
        if response.status_code >= 400:
            self._raise_for(response.status_code, response.text, what)
        return response

    async def _fetch_server_token(self, *, refresh: bool = False) -> str:
        if self._server_token is None or refresh:
            response = await self._get(
                "/", "read the server token", headers={"Accept": "text/html"}
            )
            self._server_token = self._parse_server_token(response.text)
        return self._server_token

    async def _post_control(
        self, path: str, what: str, session: SessionInfo | None, body: Any = None
    ) -> httpx.Response:
        for attempt in range(2):
            token = await self._fetch_server_token(refresh=attempt > 0)
            try:
                response = await (await self._http()).post(
                    self.base_url + path,
                    json=body if body is not None else {},
                    headers=self._control_headers(session, token),
                    timeout=self._httpx_timeout(_CONTROL_TIMEOUT),
                )
            except httpx.TransportError as exc:
                raise self._transport_error(exc, what) from None
            if self._is_skew_rejection(response.status_code, response.text):
                if attempt == 0:
                    continue
                raise self._skew_error(what)
            if response.status_code >= 400:
                self._raise_for(response.status_code, response.text, what)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

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
        """Every open session on the server; see `MarimoClient.sessions`."""
        if not self._version_checked:
            await self.version()
        try:
            response = await self._get("/api/sessions", "list sessions")
        except AuthenticationError:
            if await self._answers_version():
                raise self._read_only_error() from None
            raise
        if "json" not in response.headers.get("content-type", ""):
            raise self._read_only_error()
        return self._parse_sessions(response.json())

    async def _answers_version(self) -> bool:
        try:
            await self._get("/api/version", "version check")
        except MarimoPairError:
            return False
        return True

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
        interrupt_others: bool = False,
    ) -> ExecuteResult:
        """Run code in the notebook's scratchpad; see `MarimoClient.execute`."""
        session = self._given(notebook, session_id) or await self.resolve_session(
            notebook, session_id=session_id
        )
        try:
            return await self._execute_checked(session, code, timeout, on_chunk, interrupt_others)
        except SessionNotFoundError:
            session = await self.resolve_session(notebook, session_id=session_id, refresh=True)
            return await self._execute_checked(session, code, timeout, on_chunk, interrupt_others)

    async def _execute_checked(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
        interrupt_others: bool,
    ) -> ExecuteResult:
        busy = await self._kernel_state(session) == "running"
        if busy and not interrupt_others:
            raise self._busy_error(session)
        sent = await self._ensure_input_guard(session, timeout, code)
        result = await self._execute_on(session, sent, timeout, on_chunk, busy_before=busy)
        if sent != code:
            self._guarded.add(self._guard_key(session))
        return result

    async def _kernel_state(self, session: SessionInfo) -> str:
        try:
            response = await self._get(
                "/api/kernel/status", "kernel status", headers={SESSION_HEADER: session.key}
            )
        except ServerError as exc:
            if exc.status_code in {404, 405}:
                return "unknown"
            raise
        return self._parse_status(response)

    async def _ensure_input_guard(
        self, session: SessionInfo, timeout: float | None, code: str
    ) -> str:
        key = self._guard_key(session)
        if key in self._guarded:
            return code
        folded = _with_input_guard(code)
        if folded is not None:
            return folded
        limit = self._execute_timeout(timeout)
        wait = self.probe_timeout if limit is None else min(limit, self.probe_timeout)
        try:
            result = await self._execute_on(
                session, _INPUT_GUARD_PROGRAM, wait, None, internal=True
            )
        except (errors.ExecuteTimeoutError, OutcomeUnknownError) as exc:
            raise self._not_sent_error(session, exc) from None
        if not result.success:
            logger.debug("input() guard not installed: %s", result.stderr[-300:])
        self._guarded.add(key)
        return code

    async def _execute_on(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
        *,
        busy_before: bool = False,
        internal: bool = False,
    ) -> ExecuteResult:
        limit = self._execute_timeout(timeout)
        state = self._state(on_chunk)
        started = time.monotonic()

        async def consume() -> None:
            async with (await self._http()).stream(
                "POST",
                self.base_url + "/api/kernel/execute",
                json={"code": code},
                headers=self._execute_headers(session),
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
            responsive = None if internal else await self._kernel_answers(session)
            raise self._timeout_error(limit, responsive, busy_before=busy_before) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self._transport_error(exc, "execute") from None
        except httpx.TransportError as exc:
            logger.debug("execute stream broke: %r", exc)
        return state.result(time.monotonic() - started)

    async def _kernel_answers(self, session: SessionInfo, wait: float | None = None) -> bool:
        try:
            result = await self._execute_on(
                session, "None", wait or self.probe_timeout, None, internal=True
            )
        except (errors.ExecuteTimeoutError, OutcomeUnknownError, ServerUnavailableError):
            return False
        return result.success

    async def ping(self, notebook: str | None = None, *, wait: float = _PROBE_TIMEOUT) -> None:
        """Raise `KernelBusyError` unless a trivial execute finishes within ``wait`` s."""
        session = await self.resolve_session(notebook)
        # A probe that times out disconnects, which would interrupt a person's running cell.
        if await self._kernel_state(session) == "running":
            raise self._busy_error(session)
        if not await self._kernel_answers(session, wait):
            raise errors.KernelBusyError(
                f"The kernel did not answer within {wait:g} s: it is busy running a cell or "
                "wedged. Interrupt it, or restart it (loses variables)."
            )

    async def _control(
        self, path: str, what: str, notebook: str | None, session_id: str | None
    ) -> SessionInfo:
        session = await self.resolve_session(notebook, session_id=session_id)
        try:
            await self._post_control(path, what, session)
        except SessionNotFoundError:
            session = await self.resolve_session(notebook, session_id=session_id, refresh=True)
            await self._post_control(path, what, session)
        return session

    async def interrupt(
        self, notebook: str | None = None, *, session_id: str | None = None
    ) -> None:
        """Interrupt whatever the kernel runs; see `MarimoClient.interrupt`."""
        await self._control("/api/kernel/interrupt", "interrupt", notebook, session_id)

    async def restart(
        self, notebook: str | None = None, *, session_id: str | None = None, wait: float = 30.0
    ) -> RestartResult:
        """Restart the kernel, saying what was lost; see `MarimoClient.restart`."""
        session = await self.resolve_session(notebook, session_id=session_id, refresh=True)
        before = await self._list_variables(session)
        session = await self._control(
            "/api/kernel/restart_session", "restart", notebook, session_id
        )
        self._forget(session)
        new: SessionInfo | None = None
        ours = self._attached.pop(session.key, None)
        self._runs.pop(session.key, None)
        if ours is not None:
            task, attached_notebook = ours
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, MarimoPairError):
                await task
            self._attachments.remove(task)
            new = await self.attach(attached_notebook, wait=wait)
        elif session.key in self._released:  # see MarimoClient.restart
            new = await self.attach(self._released.pop(session.key), wait=wait)
            await self.release(new)
        else:
            new = await self._wait_for_session(session, min(wait, 1.0))
        after = await self._list_variables(new) if new is not None else None
        return self._restart_result(session, before, after, new)

    async def _list_variables(self, session: SessionInfo) -> list[str] | None:
        try:
            result = await self._execute_on(
                session, _VARIABLES_PROGRAM, self.probe_timeout, None, internal=True
            )
        except (errors.ExecuteTimeoutError, OutcomeUnknownError, ServerUnavailableError):
            return None
        return self._parse_variables(result)

    async def _wait_for_session(self, old: SessionInfo, wait: float) -> SessionInfo | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        path = old.path or old.filename
        while loop.time() < deadline:
            for candidate in await self.sessions():
                if candidate.key != old.key and (candidate.path or candidate.filename) == path:
                    return candidate
            await asyncio.sleep(0.1)
        return None

    async def _scope(self) -> _Scope | None:
        if self._scope_cache is None:
            try:
                response = await self._post_control(
                    "/api/home/workspace_files",
                    "read the served directory",
                    None,
                    {"includeMarkdown": False},
                )
            except ServerError as exc:
                logger.debug("server does not report its directory: %s", exc)
                return None
            self._scope_cache = self._parse_scope(response.json())
        return self._scope_cache

    async def _existing_session(
        self, notebook: str | None, target: str | None
    ) -> SessionInfo | None:
        try:
            session = self._match(await self.sessions(), target or notebook, None)
        except SessionNotFoundError:
            return None
        self._sessions_cache[(notebook, None)] = session
        return session

    async def attach(self, notebook: str | None = None, *, wait: float = 30.0) -> SessionInfo:
        """Make sure the notebook has a session; see `MarimoClient.attach`."""
        if notebook is not None:
            target: str | None = self._check_scope(notebook, await self._scope())
        else:
            target = None
        existing = await self._existing_session(notebook, target)
        if existing is not None:
            return existing
        key = f"mpt-{uuid.uuid4().hex[:12]}"
        params = {"session_id": key}
        if target is not None:
            params["file"] = target  # the path that passed the check, not a re-interpretation
        failure: list[MarimoPairError] = []

        async def hold() -> None:
            try:
                async with (await self._http()).stream(
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
                    async for chunk in response.aiter_raw():
                        runs.feed(chunk)
            except httpx.TransportError as exc:
                failure.append(self._transport_error(exc, "attach session"))
            finally:
                runs.end()

        runs = self._runs[key] = _CompletedRuns()
        task = asyncio.create_task(hold())
        self._attachments.append(task)
        self._attached[key] = (task, notebook)
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
            try:
                listed = await self.sessions()
            except ServerUnavailableError:
                listed = []  # marimo may not answer while the kernel starts (see above)
            found = [s for s in listed if s.key == key]
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

    def opened(self, session: SessionInfo) -> bool:
        """See `MarimoClient.opened`."""
        return session.key in self._attached

    async def run_all(self, session: SessionInfo, *, wait: float = 600.0) -> bool:
        """See `MarimoClient.run_all`."""
        runs = self._runs.get(session.key)
        if runs is None or session.key not in self._attached:
            raise SessionError(
                "run_all runs only a session this client opened headless; a session a "
                "person has open is theirs to run."
            )
        if session.key in self._ran:
            return True
        seen = runs.count
        await self._post_control(
            "/api/kernel/instantiate", "run the notebook", session, _RUN_ALL_BODY
        )
        self._ran.add(session.key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while runs.count <= seen:
            if runs.ended:
                raise self._stream_ended_error(session)
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def release(self, session: SessionInfo) -> None:
        """See `MarimoClient.release`."""
        held = self._attached.pop(session.key, None)
        self._runs.pop(session.key, None)
        if held is None:
            return
        self._released[session.key] = held[1]
        task = held[0]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, MarimoPairError):
            await task
        self._attachments.remove(task)
