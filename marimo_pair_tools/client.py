"""HTTP clients for one marimo server: sessions, scratchpad execute, headless attach.

`MarimoClient` and `AsyncMarimoClient` differ only in their I/O calls; request
building, session matching, SSE handling, redaction, path policy and error
mapping are shared pure helpers in `_ClientCore`, so the two cannot drift apart.

Three things here exist because a person may be using the same kernel:

- Before each execute the client asks marimo whether the kernel is already
  running something (``GET /api/kernel/status``). If it is, our code would queue
  behind that run, and our timeout's disconnect would interrupt it; so the
  client refuses up front (`KernelBusyError`, saying whose work it is) unless
  ``interrupt_others=True``. Our own requests to one session queue behind each
  other first (`_queue`), so parallel tool calls never see each other as busy.
- ``input()`` in code we send would wait for a reply nobody can type. A small
  guard, installed once per kernel, makes it fail at once instead (only for our
  requests; the person's own ``input()`` still works). It marks itself, and its
  installer rides in front of a process's first request on a session, so a fresh
  process pays no extra request for it.
- ``attach`` reuses a session that is already open for the notebook, so the
  agent and the browser tab share one kernel rather than fighting over it.

After a timeout or a failure the client finds out what the kernel does and
names it (`errors.Cause`, words in `_diagnosis`): it answers again (an idle
status confirmed by one trivial request), its process is paused, it still runs
our code, it runs the person's cells, its process is dead (watched while code
runs, so that is reported at once), or the server itself is gone.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import http.cookiejar
import json
import logging
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from . import _diagnosis, errors
from ._diagnosis import KernelActivity, ReplayReader
from ._queue import SessionSlot, slot_for
from ._security import (
    credential_hold,
    credential_values,
    ensure_allowed_url,
    ensure_encodable,
    install_wire_log_redaction,
    is_loopback_host,
    redact_all,
    redact_credentials,
    redact_known,
    split_page_url,
    token_for,
)
from ._server_view import DocumentReader
from ._sse import SSEDecoder
from ._text import BoundedText, truncate
from ._versions import check_server_version
from .errors import (
    AmbiguousSessionError,
    AuthenticationError,
    Cause,
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
    "ScratchpadEvidence",
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
_ATTACH_WAIT = 30.0
_ATTACH_POLL = 2.0
"""A server that does not list its sessions within this is busy opening a notebook."""
_ATTACH_CAP = 900.0
# How marimo's own work grows with the notebook, measured on this project's 2-core CI
# machine with marimo 0.25.2 (bench/large_notebook.py): opening a 10,000-cell notebook
# took 16.7 s (1.7 ms a cell) and every execute carries ~0.3 ms a cell (3 s at 10,000).
# The allowances are three times that, for a loaded machine.
_ATTACH_SECONDS_PER_CELL = 0.005
_EXECUTE_SECONDS_PER_CELL = 0.001
_WATCH_INTERVAL = 0.5
"""How often the kernel's status is read while our code runs, to see a dead kernel."""
_SETTLE_POLL = 0.1
_KIOSK_GAP = 0.5
"""Seconds of silence that end a kiosk replay (it arrives as one burst)."""
_FIRST_LOOK = 1.0
"""Seconds after a timeout before looking at what runs (marimo's interrupt takes ~0.1 s
on a small notebook; three times a trivial request's time is added on a large one)."""
_SECOND_INTERRUPT_WAIT = 2.0
_IDLE_CONFIRMATIONS = 3
"""Consecutive idle status reads (`_SETTLE_POLL` apart) that count as idle."""
_RELOOK = 1.0
_NOTHING_RUNS_GRACE = 3.0
"""Seconds past our deadline that a kernel running nothing at all (not even our code) is
waited for before the timeout goes ahead."""
"""Seconds between looks while our code waits for someone else's run to end."""
_KIOSK_CAP = 10.0
_SENT_KEPT = 64
"""How many credential values seen on sent requests are kept for redaction."""
"""Seconds a kiosk replay may stream after its first chunk."""
_CELL_DECORATOR_RE = re.compile(rb"^@app\.(?:cell|function|class_definition)\b", re.MULTILINE)
_MD_CELL_FENCE_RE = re.compile(
    rb"^[ \t]*(?:`{3,}|~{3,})[^\n{]*\{[^}\n]*(?:python|sql|marimo)[^}\n]*\}", re.MULTILINE
)
"""A code cell's opening fence in a Markdown notebook (```` ```python {.marimo} ````, the
legacy ```` ```{.python.marimo} ````, ```` ```sql {.marimo} ````), as marimo's reader
recognises them. Text between fences adds at most one cell each: not counted."""
_MARKDOWN_SUFFIXES = (".md", ".qmd", ".markdown")
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


class ScratchpadEvidence(BaseModel):
    """What an agent's fenced scratchpad run did, as the kernel (and the server) saw it.

    Runtime evidence for the eval's audit (`marimo_pair_tools.eval.trajectory`): it
    does not depend on what the code's text looks like. The kernel's fields come from
    code that shares the kernel with the agent's, so determined code can forge them;
    the ``server_*`` and ``file_*`` fields (with ``recheck``) are read by the client
    from the server and the disk, where the agent's code cannot rewrite the answer.
    """

    model_config = ConfigDict(frozen=True)

    refusals: list[str] = Field(default_factory=list)
    """What the kernel's fence refused while the code ran, in order (at most 20), even
    when the code caught the error."""
    version_before: str | None = None
    """The kernel's fingerprint of the notebook (ids, order, code) as the request found it."""
    version_after: str | None = None
    """The kernel's copy after the code: differs when the code changed the notebook
    through the kernel, by whatever route."""
    server_before: str | None = None
    """With ``recheck``: the server's own copy of the notebook (ids, order, code, names,
    config) just before the request, read through a kiosk view (`_server_view`)."""
    server_after: str | None = None
    """With ``recheck``: the same, right after the run. Differs from ``server_before`` for
    every change the server saw, made through the kernel or not (a subprocess calling
    marimo's HTTP API), and for a person's edit made while the code ran."""
    file_before: str | None = None
    """With ``recheck`` and a notebook file on this machine: its sha256 before the request."""
    file_after: str | None = None
    """The file's sha256 right after the run."""

    @property
    def changed(self) -> bool:
        """Whether the notebook changed while the code ran (kernel, server or file view)."""
        return self.changed_in_kernel or self.changed_on_server or self.changed_on_disk

    @property
    def changed_in_kernel(self) -> bool:
        before = self.version_before
        return before is not None and self.version_after not in (None, before)

    @property
    def changed_on_server(self) -> bool:
        before = self.server_before
        return before is not None and self.server_after not in (None, before)

    @property
    def changed_on_disk(self) -> bool:
        before = self.file_before
        return before is not None and self.file_after not in (None, before)


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
    evidence: ScratchpadEvidence | None = None
    """For a fenced run (`Notebook.execute`): what the fence refused, whether the notebook
    changed. None for code run without the fence."""


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
    """Removes secrets from a stream even when one arrives split across chunks.

    It holds back the last ``len(longest secret) - 1`` characters until the next
    chunk (or the end) shows whether they start a secret, and an unfinished line
    that shows the start of a credential recognised by its shape (a session cookie,
    a ``Cookie`` header, a signed token) until that line ends.
    """

    def __init__(self, secrets: Collection[str]) -> None:
        self._secrets = tuple(s for s in secrets if s)
        self._keep = max((len(s) for s in self._secrets), default=1) - 1
        self._carry = ""

    def feed(self, text: str) -> str:
        text = self._carry + text
        if self._secrets:
            text = redact_known(text, self._secrets)
        cut = credential_hold(text, max(len(text) - self._keep, 0))
        self._carry = text[cut:]
        return redact_credentials(text[:cut])

    def flush(self) -> str:
        rest, self._carry = self._carry, ""
        return redact_all(rest, self._secrets)


@dataclass
class _StreamState:
    """Accumulates one execute stream."""

    stdout: BoundedText
    stderr: BoundedText
    on_chunk: ChunkCallback | None
    secrets: frozenset[str]
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

    def flush(self) -> None:
        """Emit what the redactors held back (the end of the stream)."""
        for channel, redactor in self._redactors.items():
            self._emit(channel, redactor.flush())

    def feed(self, text: str) -> None:
        for event in self.decoder.feed(text):
            if event.event == "done":
                self.flush()
                self.done = json.loads(event.data)
                continue
            if event.event not in {"stdout", "stderr"}:
                continue
            payload = json.loads(event.data)
            redactor = self._redactors.setdefault(event.event, _StreamRedactor(self.secrets))
            self._emit(event.event, redactor.feed(str(payload.get("data", ""))))

    def result(self, elapsed: float) -> ExecuteResult:
        self.flush()
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
            data = redact_all(str(output.get("data", "")), self.secrets)
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
        install_wire_log_redaction()
        url = split_page_url(base_url)
        token = token_for(url, token)  # a URL as marimo prints it carries the token
        self.base_url = ensure_allowed_url(base_url, allow_remote=allow_remote)
        if token is None:
            token = os.environ.get("MARIMO_TOKEN") or None
        if token is not None and not (token.isascii() and token.isprintable()):
            raise ConfigurationError(
                "The token holds characters an HTTP header cannot carry (non-ASCII letters or "
                "line breaks); check how it was copied."
            )
        self._token = token
        self.default_notebook = url.file
        """The notebook named by ``?file=`` in the URL; used when a call names none."""
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
        self._overhead: dict[str, float] = {}
        self._file_cells: dict[str, tuple[float, int]] = {}
        self._user_http: httpx.Client | httpx.AsyncClient | None = None
        self._sent: dict[str, None] = {}
        """Credentials seen on requests as sent (`_learn`), oldest first."""
        self._sent_lock = threading.Lock()

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

    def _secrets(self) -> frozenset[str]:
        """Every credential our requests carry: the token, the server's skew token, the
        headers and cookies of a caller's own httpx client (ours keeps none), and what
        requests were seen to carry on the wire (`_learn`)."""
        with self._sent_lock:
            found: set[str] = set(self._sent)
        if self._user_http is not None:
            found |= credential_values(self._user_http.headers, dict(self._user_http.cookies))
        if self._token:
            found.add(self._token)
        if self._server_token and found:
            # Without auth anyone who can reach the server reads it from `GET /`: it is
            # no secret there, and holding stream text back for it would cost latency.
            found.add(self._server_token)
        return frozenset(found)

    def _redact(self, text: str) -> str:
        return redact_all(text, self._secrets())

    def _learn(self, request: httpx.Request) -> None:
        """Keep the credentials a request carried as it was sent.

        A caller's httpx client may add them per request, out of sight of its
        ``headers``: an ``auth=`` flow (Basic, Digest, a custom `httpx.Auth`) or an
        event hook. The kernel sees exactly these headers. The most recent
        `_SENT_KEPT` values are kept (a Digest header changes on every request).
        """
        values = credential_values(request.headers, {})
        with self._sent_lock:
            for value in values:
                self._sent.pop(value, None)
                self._sent[value] = None
            while len(self._sent) > _SENT_KEPT:
                del self._sent[next(iter(self._sent))]

    def _notebook_or_default(self, notebook: str | None, session_id: str | None) -> str | None:
        if notebook is None and session_id is None:
            return self.default_notebook
        return notebook

    @staticmethod
    def _check_names(notebook: str | None, session_id: str | None) -> None:
        ensure_encodable(notebook, what="The notebook path")
        ensure_encodable(session_id, what="The session id")

    # -- how long to wait, for a notebook of this size ---------------------------------

    def _cells_in_file(self, path: str | None) -> int:
        """Cells in the notebook file, when this machine has it (a loopback server); else 0."""
        if not path or not is_loopback_host(httpx.URL(self.base_url).host):
            return 0
        try:
            stat = os.stat(path)
        except (OSError, ValueError):
            return 0
        cached = self._file_cells.get(path)
        if cached is not None and cached[0] == stat.st_mtime:
            return cached[1]
        try:
            with open(path, "rb") as handle:
                pattern = (
                    _MD_CELL_FENCE_RE
                    if path.lower().endswith(_MARKDOWN_SUFFIXES)
                    else _CELL_DECORATOR_RE
                )
                count = len(pattern.findall(handle.read()))
        except OSError:
            return 0
        self._file_cells[path] = (stat.st_mtime, count)
        return count

    def _attach_wait(self, target: str | None) -> float:
        """Seconds to wait for a new session: opening grows with the notebook."""
        return _ATTACH_WAIT + _ATTACH_SECONDS_PER_CELL * self._cells_in_file(target)

    def _page_wait(self, notebook: str | None) -> float:
        """Seconds for ``GET /``, where the skew token is: a single-notebook server parses
        the whole notebook to render it (16-22 s for 10,000 cells here)."""
        return self._attach_wait(notebook or self.default_notebook)

    def _note_overhead(self, session: SessionInfo, elapsed: float) -> None:
        """Keep the shortest execute seen on a session: marimo's own per-request time.

        Every execute carries it, so the shortest one (a read, the guard's setup) is
        close to it; on 10,000 cells it is 3-4 s here, on a small notebook 0.06 s.
        """
        key = self._guard_key(session)
        self._overhead[key] = min(self._overhead.get(key, elapsed), elapsed)

    def _probe_wait(self, session: SessionInfo) -> float:
        """Seconds a trivial request may take on this session before it counts as unanswered.

        marimo does work per cell on every execute, so this grows with the notebook: by
        its file (a local server) or by what a trivial execute took here last time.
        """
        cells = self._cells_in_file(session.path or session.filename)
        measured = self._overhead.get(self._guard_key(session), 0.0)
        return self.probe_timeout + max(_EXECUTE_SECONDS_PER_CELL * cells, 3 * measured)

    def _queue_wait(self, timeout: float | None) -> float | None:
        """How long a request waits for our own earlier ones on the same session.

        At least the client's default execute limit: that bounds what a request ahead of
        this one may take (a short ``timeout`` is for the caller's code, not the queue).
        """
        limit = self._execute_timeout(timeout)
        if limit is None or self.timeout is None:
            return None
        return max(limit, self.timeout) + self.probe_timeout

    def _deadline(
        self, limit: float | None, *, busy_before: bool, session: SessionInfo
    ) -> _Deadline:
        """Our code's deadline; it may wait for a run someone started just before it."""
        patience = max(limit or 0.0, self.timeout or 0.0)
        # Between their run and ours the kernel runs nothing for a moment; longer on a
        # large notebook, where each request carries marimo's own per-cell work.
        grace = _NOTHING_RUNS_GRACE + 3 * self._overhead.get(self._guard_key(session), 0.0)
        return _Deadline(limit, patience=patience, may_wait=not busy_before, grace=grace)

    @staticmethod
    def _stream_safety(limit: float | None) -> float | None:
        """A read timeout that only a broken watcher would ever reach."""
        return None if limit is None else 3 * limit + 2 * DEFAULT_EXECUTE_TIMEOUT

    def _first_look(self, session: SessionInfo) -> float:
        """Seconds after a timeout before asking what runs: a large notebook makes marimo
        slower to settle after an interrupt, and looking is costly there too."""
        return _FIRST_LOOK + 3 * self._overhead.get(self._guard_key(session), 0.0)

    def _slot(self, session: SessionInfo) -> SessionSlot:
        return slot_for(self.base_url, self._guard_key(session))

    def _kiosk_params(self, session: SessionInfo) -> dict[str, str]:
        """A read-only viewer of the session: marimo replays each cell's status to it.

        The viewer gets an id of its own and finds the session by its file. marimo
        keys a session's consumers by connection id: a viewer connecting under the
        session's own key would replace the person's tab in that table, and on
        leaving remove it, leaving their tab read-only.
        """
        params = {"session_id": f"mpt-view-{uuid.uuid4().hex[:12]}", "kiosk": "true"}
        if session.path:
            params["file"] = session.path
        return params

    @staticmethod
    def _same_session(session: SessionInfo, sessions: list[SessionInfo]) -> SessionInfo | None:
        for candidate in sessions:
            if candidate.key == session.key or (
                session.stable_id and candidate.stable_id == session.stable_id
            ):
                return candidate
        return None

    @staticmethod
    def _notebook_name(session: SessionInfo) -> str:
        return session.path or session.filename or "this notebook"

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
        """The server did not answer a request: ``server_down``, with the way out.

        Only the failure's kind is shown: its text may quote the request.
        """
        if isinstance(exc, httpx.ConnectError):
            return ServerUnavailableError(
                f"{what}: nothing answers at {self.base_url} ({type(exc).__name__}). "
                "Is the marimo server running? `marimo-pair discover` lists live servers; "
                "start it again if it is not there."
            )
        if isinstance(exc, httpx.TimeoutException):
            problem = f"no answer in time: {type(exc).__name__}"
        else:
            problem = f"the connection broke: {type(exc).__name__}"
        return _diagnosis.server_not_answering(what, self.base_url, problem)

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
            secrets=self._secrets(),
            max_output_chars=self.max_output_chars,
        )

    def _execute_timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def _setup_wait(self, session: SessionInfo, limit: float | None) -> float:
        """The one-time setup request may take what the caller's request may (at least a
        probe's wait): on a large notebook marimo's own per-request work is seconds."""
        return max(self._probe_wait(session), limit or 0.0)

    @staticmethod
    def _parse_status(response: httpx.Response) -> str:
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("state"), str):
                return str(body["state"])
        return "unknown"

    def _busy_error(
        self, session: SessionInfo, activity: KernelActivity | None, slot: SessionSlot | None
    ) -> errors.KernelBusyError:
        """The kernel was busy before we sent anything; ``activity`` says whose work it is."""
        ours = slot.wedged_since if slot is not None else None
        return _diagnosis.busy_error(self._notebook_name(session), activity, ours_since=ours)

    def _dead_error(self, session: SessionInfo, *, sent: bool) -> errors.KernelDeadError:
        return _diagnosis.dead_error(self._notebook_name(session), sent=sent)

    def _queue_error(self, session: SessionInfo, slot: SessionSlot) -> errors.KernelBusyError:
        held = time.monotonic() - slot.held_since if slot.held_since else 0.0
        return _diagnosis.queue_timeout_error(self._notebook_name(session), slot.holder, held)

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
        if isinstance(exc, (errors.ExecuteTimeoutError, errors.KernelBusyError)):
            return errors.KernelBusyError(
                f"The kernel of {name} did not answer a trivial request, so your code was not "
                "sent. It is busy with a long run or wedged: wait and retry, interrupt it, or "
                "restart it (that loses its variables).",
                cause=getattr(exc, "cause", None) or "busy_unknown",
            )
        if isinstance(exc, errors.KernelDeadError):
            return exc
        return ServerUnavailableError(
            f"The server stopped answering before your code was sent (your code did not run): {exc}"
        )

    def _internal_timeout(self, limit: float) -> errors.ExecuteTimeoutError:
        """A probe or setup request of ours timed out (its caller says what that means)."""
        return errors.ExecuteTimeoutError(
            f"An internal request passed its {limit:g} s limit.", kernel_responsive=None
        )

    def _after_timeout_error(
        self,
        limit: float,
        found: str,
        activity: KernelActivity | None,
        *,
        busy_before: bool,
        waited: float,
        session: SessionInfo,
        deadline: _Deadline | None = None,
    ) -> MarimoPairError:
        """Name what the kernel does after our code passed its limit (see `_diagnose`)."""
        if found == "down":
            return _diagnosis.server_down_after_timeout(limit, self.base_url)
        if found == "stopped":
            return self._dead_error(session, sent=True)
        cause: Cause
        if found == "answers":
            cause = "kernel_answers"
        elif found == "frozen":
            cause = "kernel_frozen"
        elif found == "wedged":
            cause = "busy_ours"
        elif activity is not None and activity.cells:
            cause = "busy_person"
        elif activity is not None and activity.scratchpad:
            cause = "busy_scratchpad"
        else:
            cause = "busy_unknown"
        return _diagnosis.timeout_error(
            limit,
            cause,
            busy_before=busy_before,
            activity=activity,
            waited=waited,
            waited_for_others=deadline.waited_for_others if deadline is not None else 0.0,
            hit=deadline.hit if deadline is not None else None,
        )

    def _stream_cut_error(self, session: SessionInfo, found: str, stderr: str) -> MarimoPairError:
        if found == "stopped":
            return self._dead_error(session, sent=True)
        cause: Cause | None = None
        if found == "down":
            cause = "server_down"
        elif found == "answers":
            cause = "kernel_answers"
        elif found == "frozen":
            cause = "kernel_frozen"
        return _diagnosis.stream_cut_error(
            cause, self.base_url, self._notebook_name(session), _tail_hint(stderr)
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
        self._user_http = http_client
        self._http = http_client or httpx.Client(
            transport=transport, timeout=self._httpx_timeout(30.0), cookies=_no_cookies()
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
        self._learn(response.request)
        if response.status_code >= 400:
            self._raise_for(response.status_code, response.text, what)
        return response

    def _fetch_server_token(self, *, refresh: bool = False, notebook: str | None = None) -> str:
        if self._server_token is None or refresh:
            html = self._get(
                "/",
                "read the server token",
                headers={"Accept": "text/html"},
                timeout=self._page_wait(notebook),
            ).text
            self._server_token = self._parse_server_token(html)
        return self._server_token

    def _post_control(
        self,
        path: str,
        what: str,
        session: SessionInfo | None,
        body: Any = None,
        *,
        notebook: str | None = None,
    ) -> httpx.Response:
        """POST to a control endpoint with the skew-protection token (re-fetched once)."""
        notebook = notebook or (session.path if session is not None else None)
        for attempt in range(2):
            token = self._fetch_server_token(refresh=attempt > 0, notebook=notebook)
            try:
                response = self._http.post(
                    self.base_url + path,
                    json=body if body is not None else {},
                    headers=self._control_headers(session, token),
                    timeout=self._httpx_timeout(_CONTROL_TIMEOUT),
                )
            except httpx.TransportError as exc:
                raise self._transport_error(exc, what) from None
            self._learn(response.request)
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
        self._check_names(notebook, session_id)
        notebook = self._notebook_or_default(notebook, session_id)
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

        Requests of this process to one session run one at a time (parallel tool
        calls queue here instead of finding each other busy). While the code runs,
        the kernel's status is watched, so a kernel process that dies is reported
        at once rather than at the timeout.

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
            UnencodableTextError: the code holds a lone surrogate; nothing was sent.
            KernelBusyError: the kernel was running other work; nothing was sent.
            KernelDeadError: marimo reports the kernel process stopped.
            ExecuteTimeoutError: the deadline passed (the code may have partly run);
                ``cause`` says what the kernel does now.
            OutcomeUnknownError: the stream ended before ``done``; never retry blindly.
            SessionNotFoundError, AmbiguousSessionError: the notebook has no single session.
        """
        ensure_encodable(code, what="The code")
        session = self._given(notebook, session_id) or self.resolve_session(
            notebook, session_id=session_id
        )
        try:
            return self._execute_queued(session, code, timeout, on_chunk, interrupt_others)
        except SessionNotFoundError:
            # The key went stale (a browser reconnected). The server rejected the request
            # before the code reached the kernel, so one retry after re-resolving is safe.
            session = self.resolve_session(notebook, session_id=session_id, refresh=True)
            return self._execute_queued(session, code, timeout, on_chunk, interrupt_others)

    def _execute_queued(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
        interrupt_others: bool,
    ) -> ExecuteResult:
        """Wait for our own earlier requests to this session, then check and send."""
        slot = self._slot(session)
        if not slot.acquire(self._queue_wait(timeout), "execute"):
            raise self._queue_error(session, slot)
        try:
            return self._execute_checked(
                session, code, timeout, on_chunk, interrupt_others, slot=slot
            )
        finally:
            slot.release()

    def _execute_checked(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
        interrupt_others: bool,
        *,
        slot: SessionSlot | None = None,
    ) -> ExecuteResult:
        busy = self._precheck(session, slot, interrupt_others=interrupt_others)
        sent = self._ensure_input_guard(session, timeout, code)
        result = self._execute_on(session, sent, timeout, on_chunk, busy_before=busy, slot=slot)
        if sent != code:
            self._guarded.add(self._guard_key(session))
        return result

    def _precheck(
        self, session: SessionInfo, slot: SessionSlot | None, *, interrupt_others: bool
    ) -> bool:
        """Refuse to send to a dead kernel or one busy with other work; True when busy."""
        state = self._kernel_state(session)
        if state == "stopped":
            raise self._dead_error(session, sent=False)
        if state != "running":
            if slot is not None:
                slot.wedged_since = None
            return False
        if interrupt_others:
            return True
        activity = self._activity(session)
        if (
            activity is not None
            and not (activity.cells or activity.scratchpad)
            and self._kernel_state(session) == "idle"
        ):
            return False  # the run ended while we looked: nothing to wait for
        raise self._busy_error(session, activity, slot)

    def _kernel_state(self, session: SessionInfo, timeout: float | None = None) -> str:
        """``running``, ``idle``, ``stopped``, or ``unknown`` (a server without the endpoint)."""
        try:
            response = self._get(
                "/api/kernel/status",
                "kernel status",
                headers={SESSION_HEADER: session.key},
                timeout=timeout if timeout is not None else self._probe_wait(session),
            )
        except ServerError as exc:
            if exc.status_code in {404, 405}:
                return "unknown"
            raise
        return self._parse_status(response)

    def _activity(self, session: SessionInfo) -> KernelActivity | None:
        """What the kernel runs, from a read-only (kiosk) replay of the session's cells.

        marimo sends the replay as one burst once it has built it (seconds for 10,000
        cells), so the first chunk may take the probe wait and a pause of `_KIOSK_GAP`
        afterwards ends it. ``None`` when marimo did not replay (an older server, a
        refused viewer).
        """
        reader = ReplayReader()
        first = self._probe_wait(session)
        try:
            with self._http.stream(
                "GET",
                self.base_url + "/sse",
                params=self._kiosk_params(session),
                headers={**self._headers(), "Accept": "text/event-stream"},
                timeout=self._httpx_timeout(first + _KIOSK_CAP),
            ) as response:
                if response.status_code >= 400:
                    return None
                chunks: queue.Queue[str | None] = queue.Queue()

                def pump() -> None:
                    try:
                        for text in response.iter_text():
                            chunks.put(text)
                    except (httpx.HTTPError, RuntimeError):
                        pass  # we shut the stream down, or it broke: what came counts
                    finally:
                        chunks.put(None)

                reader_thread = threading.Thread(target=pump, name="marimo-pair-view", daemon=True)
                reader_thread.start()
                deadline = time.monotonic() + first + _KIOSK_CAP
                wait = first
                while not reader.closed and time.monotonic() < deadline:
                    try:
                        text = chunks.get(timeout=wait)
                    except queue.Empty:
                        break  # the burst is over
                    if text is None:
                        break
                    reader.feed(text)
                    wait = _KIOSK_GAP
                _shutdown(response)
                reader_thread.join(timeout=1)
        except httpx.HTTPError as exc:
            logger.debug("kiosk view failed: %r", exc)
            return None
        return reader.activity()

    def document_fingerprint(
        self, notebook: str | None = None, *, session_id: str | None = None
    ) -> str | None:
        """The server's own copy of the notebook, as a short hash (`_server_view`).

        Read from a read-only (kiosk) view of the session: marimo answers it from the
        server's document, so nothing runs in the kernel and code there cannot change
        the answer. Ids, order, code, names and cell config count. ``None`` when the
        server sent no document (an older server, a refused viewer).
        """
        session = self.resolve_session(notebook, session_id=session_id)
        reader = DocumentReader()
        wait = self._probe_wait(session) + _KIOSK_CAP
        try:
            with self._http.stream(
                "GET",
                self.base_url + "/sse",
                params=self._kiosk_params(session),
                headers={**self._headers(), "Accept": "text/event-stream"},
                timeout=self._httpx_timeout(wait),
            ) as response:
                if response.status_code >= 400:
                    return None
                for text in response.iter_text():
                    reader.feed(text)
                    if reader.done:
                        break
        except httpx.HTTPError as exc:
            logger.debug("kiosk document view failed: %r", exc)
            return None
        return reader.fingerprint

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
        wait = self._setup_wait(session, limit)
        try:
            result = self._execute_on(session, _INPUT_GUARD_PROGRAM, wait, None, internal=True)
        except (errors.ExecuteTimeoutError, OutcomeUnknownError, errors.KernelDeadError) as exc:
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
        slot: SessionSlot | None = None,
    ) -> ExecuteResult:
        limit = self._execute_timeout(timeout)
        state = self._state(on_chunk)
        started = time.monotonic()
        timed_out = False
        deadline = self._deadline(limit, busy_before=busy_before, session=session)
        # Internal requests (probes, setup) are short and time out by the read timeout;
        # the caller's code is watched, and its deadline kept, by a thread.
        watch = None if internal else _StatusWatch(self, session, deadline)
        read_timeout = limit if watch is None else self._stream_safety(limit)
        try:
            with self._http.stream(
                "POST",
                self.base_url + "/api/kernel/execute",
                json={"code": code},
                headers=self._execute_headers(session),
                timeout=self._httpx_timeout(read_timeout),
            ) as response:
                self._learn(response.request)  # what the kernel sees, auth flow included
                state.secrets = self._secrets()
                if response.status_code >= 400:
                    self._raise_for(
                        response.status_code, response.read().decode(errors="replace"), "execute"
                    )
                if watch is not None:
                    watch.start(response)
                for text in response.iter_text():
                    state.feed(text)
                    if watch is None and deadline.passed() and state.done is None:
                        timed_out = True
                        break
        except httpx.ReadTimeout:
            timed_out = True
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the server: safe to report as unavailable.
            raise self._transport_error(exc, "execute") from None
        except httpx.TransportError as exc:
            logger.debug("execute stream broke: %s", self._redact(repr(exc)))
        finally:
            if watch is not None:
                watch.stop()
        elapsed = time.monotonic() - started
        if watch is not None and watch.dead:
            raise self._dead_error(session, sent=True)
        if watch is not None and watch.timed_out and state.done is None:
            timed_out = True
        if timed_out and limit is not None:
            if internal:
                # A probe must not probe again: that recursion never ends on a wedged kernel.
                raise self._internal_timeout(limit)
            raise self._diagnose_timeout(
                session, limit, busy_before=busy_before, slot=slot, deadline=deadline
            )
        if state.done is None and not internal:
            state.flush()
            found, _ = self._settle(session, self._probe_wait(session))
            raise self._stream_cut_error(session, found, state.stderr.getvalue())
        result = state.result(elapsed)
        self._note_overhead(session, elapsed)
        return result

    def _settle(self, session: SessionInfo, wait: float) -> tuple[str, float]:
        """Watch the status until the kernel is idle, stopped or gone, or ``wait`` passes.

        Returns ``("answers" | "stopped" | "down" | "running", seconds waited)``. Idle
        counts once seen on consecutive reads: between our interrupted code and a run
        queued behind it the status reads idle for a moment. Nothing is sent to the
        kernel to confirm it: a probe would queue behind that run, and its own timeout
        would interrupt it (this killed a person's queued cell in testing).
        """
        started = time.monotonic()
        idle_seen = 0
        while True:
            try:
                state = self._kernel_state(session, timeout=self._probe_wait(session))
            except ServerUnavailableError:
                return "down", time.monotonic() - started
            except SessionNotFoundError:
                # A browser that reconnected renamed the key; a closed session is gone.
                fresh = self._refreshed(session)
                if fresh is None:
                    return "stopped", time.monotonic() - started
                session = fresh
                continue
            if state == "stopped":
                return "stopped", time.monotonic() - started
            if state == "unknown":  # a server without the status endpoint: ask the kernel
                answers = self._kernel_answers(session, self._probe_wait(session))
                return ("answers" if answers else "running"), time.monotonic() - started
            idle_seen = idle_seen + 1 if state == "idle" else 0
            if idle_seen >= _IDLE_CONFIRMATIONS:
                return self._confirm_answers(session), time.monotonic() - started
            if not idle_seen and time.monotonic() - started >= wait:
                return "running", time.monotonic() - started
            time.sleep(_SETTLE_POLL)

    def _confirm_answers(self, session: SessionInfo) -> str:
        """The status reads idle: check, with one trivial request, that the kernel answers.

        The status is the server's view of the kernel: a process that is paused (SIGSTOP,
        a debugger, a suspended machine) reads idle too. Returns ``"answers"``, or
        ``"frozen"`` when the probe got no answer within the probe wait while the status
        still read idle (the probe is then cut: nothing runs for the disconnect to
        interrupt). If a run started meanwhile (a person's cell ahead of the probe), the
        kernel is alive: the probe is left to finish behind that run, never cut into it.
        """
        probe = _Probe(self, session)
        ended = probe.wait(self._probe_wait(session))
        if ended and probe.answered:
            return "answers"
        try:
            state = self._kernel_state(session)
        except ServerUnavailableError:
            probe.cut()
            return "down"
        except MarimoPairError:
            state = "unknown"
        return _probe_verdict(probe.cut, ended=ended, state=state)

    def _refreshed(self, session: SessionInfo) -> SessionInfo | None:
        """The same session under its current key (keys change on reconnect), or None."""
        try:
            sessions = self.sessions()
        except MarimoPairError:
            return None
        return self._same_session(session, sessions)

    def _diagnose_timeout(
        self,
        session: SessionInfo,
        limit: float,
        *,
        busy_before: bool,
        slot: SessionSlot | None,
        deadline: _Deadline | None = None,
    ) -> MarimoPairError:
        """Our code passed its limit (marimo interrupted it): find out what the kernel does.

        A person's cells that run after ours are named at once and never interrupted.
        If scratchpad code still runs, that is ours (our requests queue per session):
        once marimo's interrupt had its wait, interrupting it once more harms nobody,
        and tells a slow-to-stop run from a wedged one.
        """
        wait = self._probe_wait(session)
        found, waited = self._settle(session, min(wait, self._first_look(session)))
        activity = None
        if found == "running":
            activity = self._activity(session)
            theirs = activity is not None and activity.cells and not activity.scratchpad
            if not theirs:  # their cells are named at once and never interrupted
                # Our code, or something unidentified: marimo's interrupt gets its full wait.
                found, more = self._settle(session, max(wait - waited, 0.0))
                waited += more
                if found == "running" and activity is not None and activity.scratchpad:
                    with contextlib.suppress(MarimoPairError):
                        self._post_control("/api/kernel/interrupt", "interrupt", session)
                    # An interrupt that works, works within a moment; code that catches it
                    # and cleans up may take longer: it gets the probe's wait again.
                    found, more = self._settle(session, max(wait, _SECOND_INTERRUPT_WAIT))
                    waited += more
                    if found == "running" and activity.cells:
                        activity = self._activity(session)  # ours, or their cells now?
                    if found == "running" and (activity is None or activity.scratchpad):
                        found = "wedged"
                        if slot is not None:
                            slot.wedged_since = time.time()
        return self._after_timeout_error(
            limit,
            found,
            activity,
            busy_before=busy_before,
            waited=waited,
            session=session,
            deadline=deadline,
        )

    def _kernel_answers(self, session: SessionInfo, wait: float | None = None) -> bool:
        """Does a trivial execute complete within ``wait`` (default: the probe wait) s?"""
        try:
            return self._execute_on(
                session, "None", wait or self._probe_wait(session), None, internal=True
            ).success
        except (errors.ExecuteTimeoutError, OutcomeUnknownError, ServerUnavailableError):
            return False

    def ping(self, notebook: str | None = None, *, wait: float | None = None) -> None:
        """Raise unless the kernel answers a trivial execute within ``wait`` s.

        Raises:
            KernelBusyError: busy with other work (nothing is sent then) or not answering.
            KernelDeadError: marimo reports the kernel process stopped.
        """
        session = self.resolve_session(notebook)
        slot = self._slot(session)
        if not slot.acquire(self._queue_wait(None), "ping"):
            raise self._queue_error(session, slot)
        try:
            # A probe that times out disconnects, which would interrupt a person's running cell.
            self._precheck(session, slot, interrupt_others=False)
            limit = wait if wait is not None else self._probe_wait(session)
            if not self._kernel_answers(session, limit):
                raise errors.KernelBusyError(
                    f"The kernel did not answer within {limit:g} s: it is busy running a cell "
                    "or wedged. Interrupt it, or restart it (loses variables).",
                    cause="busy_unknown",
                )
        finally:
            slot.release()

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
        ``KeyboardInterrupt`` ignores it; only `restart` frees such a kernel. An idle
        kernel is left alone: there is nothing to stop, and marimo 0.25.2 passes the
        signal to a kernel that is still starting, which kills it.

        Raises:
            KernelDeadError: marimo reports the kernel process stopped.
        """
        session = self.resolve_session(notebook, session_id=session_id)
        state = self._kernel_state(session)
        if state == "stopped":
            raise self._dead_error(session, sent=False)
        if state == "idle":
            return
        self._control("/api/kernel/interrupt", "interrupt", notebook, session_id)

    def restart(
        self,
        notebook: str | None = None,
        *,
        session_id: str | None = None,
        wait: float | None = None,
    ) -> RestartResult:
        """Restart the notebook's kernel: a fresh process, every variable lost.

        First lists the old kernel's public variables (when it is idle and answers
        within the probe wait), so the result can say what was lost. marimo closes the
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
        self._slot(session).wedged_since = None
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
            new = self._wait_for_session(session, min(wait or 1.0, 1.0))
        after = self._list_variables(new) if new is not None else None
        return self._restart_result(session, before, after, new)

    def _list_variables(self, session: SessionInfo) -> list[str] | None:
        """The kernel's public variables, or ``None`` when it is busy, dead or silent.

        Only an idle kernel is asked: a probe into a busy one would queue, and its
        timeout would interrupt whatever runs.
        """
        try:
            if self._kernel_state(session) not in {"idle", "unknown"}:
                return None
            result = self._execute_on(
                session, _VARIABLES_PROGRAM, self._probe_wait(session), None, internal=True
            )
        except (
            errors.ExecuteTimeoutError,
            OutcomeUnknownError,
            ServerUnavailableError,
            ServerError,
        ):
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

    def _scope(self, notebook: str | None = None) -> _Scope | None:
        if self._scope_cache is None:
            try:
                response = self._post_control(
                    "/api/home/workspace_files",
                    "read the served directory",
                    None,
                    {"includeMarkdown": False},
                    notebook=notebook,
                )
            except ServerError as exc:
                logger.debug("server does not report its directory: %s", exc)
                return None
            self._scope_cache = self._parse_scope(response.json())
        return self._scope_cache

    def attach(self, notebook: str | None = None, *, wait: float | None = None) -> SessionInfo:
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
            wait: seconds to wait for the session to appear; by default 30 s plus an
                allowance per cell of the notebook file (marimo parses the whole
                notebook first: 10,000 cells took 17 s here). Time the server is too
                busy opening it to answer at all is not counted (up to 15 minutes).

        The session is released (its stream closed) when the client closes; marimo
        keeps an edit session alive after that unless started with ``--session-ttl``.

        Raises:
            ConfigurationError: ``notebook`` is outside what the server serves.
            ReadOnlyServerError: the server is a `marimo run` app server.
        """
        self._check_names(notebook, None)
        notebook = self._notebook_or_default(notebook, None)
        if notebook is not None:
            target: str | None = self._check_scope(notebook, self._scope(notebook))
        else:
            target = None
        existing = self._existing_session(notebook, target)
        if existing is not None:
            return existing
        if wait is None:
            wait = self._attach_wait(target)
        key = f"mpt-{uuid.uuid4().hex[:12]}"
        params = {"session_id": key}
        if target is not None:
            params["file"] = target  # the path that passed the check, not a re-interpretation
        attachment = _SyncAttachment(self, params, key=key, notebook=notebook)
        self._attachments.append(attachment)
        started = time.monotonic()
        deadline = started + wait
        while True:
            attachment.raise_if_failed()
            polled = time.monotonic()
            sessions = self._poll_sessions(_ATTACH_POLL)
            if sessions is None:
                # While marimo opens the notebook its event loop does not answer at all
                # (17 s for 10,000 cells here): that time is not counted against `wait`.
                deadline = min(deadline + time.monotonic() - polled, started + _ATTACH_CAP)
                sessions = []
            found = [s for s in sessions if s.key == key]
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

    def _poll_sessions(self, timeout: float) -> list[SessionInfo] | None:
        """The open sessions; ``None`` when the server is too busy to answer in ``timeout``."""
        try:
            response = self._http.get(
                self.base_url + "/api/sessions",
                headers=self._headers(),
                timeout=self._httpx_timeout(timeout),
            )
        except httpx.TimeoutException:
            return None
        except httpx.TransportError as exc:
            raise self._transport_error(exc, "list sessions") from None
        if response.status_code >= 400:
            self._raise_for(response.status_code, response.text, "list sessions")
        return self._parse_sessions(response.json())


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


class _Deadline:
    """When our code's time is up, with one exception: someone else's run ahead of it.

    A person may start a cell between our busy check and our request: marimo then
    runs their cell first and ours waits. At our deadline a disconnect would interrupt
    *their* run. So when, at the deadline, only other cells run and our scratchpad
    code has not started, the wait goes on (up to ``patience`` seconds), and once our
    code starts it gets its full limit. If their run outlasts the patience, the
    timeout goes ahead and the error says whose run it stopped.
    """

    def __init__(
        self, limit: float | None, *, patience: float, may_wait: bool, grace: float
    ) -> None:
        now = time.monotonic()
        self.limit = limit
        self._grace = grace
        self._empty_since: float | None = None
        self.ends = None if limit is None else now + limit
        self._give_up = None if limit is None else now + limit + patience
        self._may_wait = may_wait
        self._queued_since: float | None = None
        self.waited_for_others = 0.0
        self.hit: KernelActivity | None = None

    def remaining(self) -> float | None:
        return None if self.ends is None else max(self.ends - time.monotonic(), 0.0)

    def passed(self) -> bool:
        return self.ends is not None and time.monotonic() >= self.ends

    def keep_waiting(self, activity: KernelActivity | None) -> bool:
        """At the deadline, with what the kernel runs: True moves the deadline on."""
        now = time.monotonic()
        if self.limit is None or self._give_up is None or activity is None:
            return False
        if activity.scratchpad:
            if self._queued_since is None:
                return False  # our code has had its time
            # Their run is over and ours has started: it gets its full limit, once.
            self.waited_for_others += now - self._queued_since
            self._queued_since, self._may_wait = None, False
            self.ends = now + self.limit
            return True
        if not self._may_wait:
            return False
        if now >= self._give_up:
            if activity.cells:
                self.hit = activity
                self.waited_for_others += now - (self._queued_since or now)
            return False
        if not activity.cells:
            # Nothing runs, not even ours: a moment between runs, or a kernel that takes
            # no work (paused: SIGSTOP, a debugger). Waiting on would last the patience.
            self._empty_since = self._empty_since or now
            if now - self._empty_since >= self._grace:
                return False
        else:
            self._empty_since = None
        if activity.cells and self._queued_since is None:
            self._queued_since = now
        self.ends = min(now + _RELOOK, self._give_up)  # nothing yet, or their cells: look again
        return True


class _StatusWatch:
    """Reads the kernel's status while our code streams; ends the stream if it stopped.

    A kernel process that dies mid-execute leaves marimo's stream open with nothing
    more to send: without this, the caller would learn of it only at the timeout.
    """

    def __init__(self, client: MarimoClient, session: SessionInfo, deadline: _Deadline) -> None:
        self._client = client
        self._session = session
        self._deadline = deadline
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._thread: threading.Thread | None = None
        self.dead = False
        self.timed_out = False

    def start(self, response: httpx.Response) -> None:
        self._response = response
        self._thread = threading.Thread(target=self._run, name="marimo-pair-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(_wait_step(self._deadline)):
            if self._deadline.passed() and not self._keep_waiting():
                self.timed_out = True
                self._end()
                return
            try:
                state = self._client._kernel_state(self._session)
            except SessionNotFoundError:  # a reconnecting browser renamed the key
                # The refresh may fail the same way (the session is gone): keep watching;
                # an exception here would end the thread unseen.
                with contextlib.suppress(MarimoPairError, httpx.HTTPError, RuntimeError):
                    self._session = self._client._refreshed(self._session) or self._session
                continue
            except (MarimoPairError, httpx.HTTPError, RuntimeError):
                continue  # a server that stopped answering breaks the stream itself
            if state == "stopped" and not self._stop.is_set():
                self.dead = True
                self._end()
                return

    def _keep_waiting(self) -> bool:
        try:
            activity = self._client._activity(self._session)
        except (MarimoPairError, httpx.HTTPError, RuntimeError):
            activity = None
        return self._deadline.keep_waiting(activity)

    def _end(self) -> None:
        if self._response is not None and not self._stop.is_set():
            _shutdown(self._response)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # Not joined for long: a status read in flight ends by its own timeout, and
            # the caller should not wait for it.
            self._thread.join(timeout=0.05)


def _probe_verdict(cut: Callable[[], object], *, ended: bool, state: str) -> str:
    """What an unanswered probe says, given the status read after it (`_confirm_answers`)."""
    if state == "stopped":
        cut()
        return "stopped"
    if ended or state == "running":
        # Refused at once (a renamed key): the status's idle stands. Or alive, running
        # someone's work that started after ours ended: the probe waits behind it.
        return "answers"
    cut()
    return "frozen"


class _Probe:
    """One trivial execute (``None``), read by a thread, that can be cut or left to finish.

    Cutting it disconnects, and marimo answers a disconnect by interrupting whatever the
    kernel runs; so it is cut only while the kernel runs nothing (`_confirm_answers`).
    """

    def __init__(self, client: MarimoClient, session: SessionInfo) -> None:
        self._client = client
        self._session = session
        self._done = threading.Event()
        self._cut = threading.Event()
        self._response: httpx.Response | None = None
        self.answered = False
        threading.Thread(target=self._run, name="marimo-pair-probe", daemon=True).start()

    def _run(self) -> None:
        client = self._client
        state = client._state(None)
        try:
            with client._http.stream(
                "POST",
                client.base_url + "/api/kernel/execute",
                json={"code": "None"},
                headers=client._execute_headers(self._session),
                timeout=client._httpx_timeout(None),
            ) as response:
                self._response = response
                if response.status_code >= 400 or self._cut.is_set():
                    return
                for text in response.iter_text():
                    state.feed(text)
                    if state.done is not None:
                        self.answered = True
                        return
        except (httpx.HTTPError, RuntimeError):
            pass  # cut by us, or the server went away: not answered
        finally:
            self._done.set()

    def wait(self, seconds: float) -> bool:
        """True once the probe ended (answered or failed) within ``seconds``."""
        return self._done.wait(seconds)

    def cut(self) -> None:
        self._cut.set()
        if self._response is not None:
            _shutdown(self._response)


def _wait_step(deadline: _Deadline) -> float:
    """Sleep until the next status read, or the deadline if that comes first."""
    remaining = deadline.remaining()
    return _WATCH_INTERVAL if remaining is None else min(_WATCH_INTERVAL, remaining)


def _retrieve(task: asyncio.Future[None]) -> None:
    """Mark a background task's failure as seen (a cut probe, a server gone)."""
    if not task.cancelled():
        task.exception()


def _shutdown(response: httpx.Response) -> None:
    """Wake a thread blocked reading ``response``: shut its socket down."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _RefuseCookies(http.cookiejar.DefaultCookiePolicy):
    """Keep no cookie a server sets.

    marimo answers a valid token with a session cookie that authenticates on its
    own. The client sends its token on every request and needs no cookie; kept,
    the cookie would ride along on each execute, where kernel code can read it.
    """

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def _no_cookies() -> http.cookiejar.CookieJar:
    return http.cookiejar.CookieJar(policy=_RefuseCookies())


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
            _shutdown(response)
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
        self._user_http = http_client
        self._transport = transport
        self._pool = http_client or self._new_pool()
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._closer: AsyncIterator[None] | None = None
        self._attachments: list[asyncio.Task[None]] = []
        self._probes: set[asyncio.Future[None]] = set()
        self._attached: dict[str, tuple[asyncio.Task[None], str | None]] = {}
        self._runs: dict[str, _CompletedRuns] = {}
        self._stops: set[asyncio.Task[None]] = set()
        """Tasks stopping the code of cancelled calls (kept: the loop holds tasks weakly)."""

    def _new_pool(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self._transport, timeout=self._httpx_timeout(30.0), cookies=_no_cookies()
        )

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
            with contextlib.suppress(RuntimeError):  # a task of a loop that is gone
                task.cancel()
        for task in self._attachments:
            if task.done() or task.get_loop() is asyncio.get_running_loop():
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
        self._learn(response.request)
        if response.status_code >= 400:
            self._raise_for(response.status_code, response.text, what)
        return response

    async def _fetch_server_token(
        self, *, refresh: bool = False, notebook: str | None = None
    ) -> str:
        if self._server_token is None or refresh:
            response = await self._get(
                "/",
                "read the server token",
                headers={"Accept": "text/html"},
                timeout=self._page_wait(notebook),
            )
            self._server_token = self._parse_server_token(response.text)
        return self._server_token

    async def _post_control(
        self,
        path: str,
        what: str,
        session: SessionInfo | None,
        body: Any = None,
        *,
        notebook: str | None = None,
    ) -> httpx.Response:
        notebook = notebook or (session.path if session is not None else None)
        for attempt in range(2):
            token = await self._fetch_server_token(refresh=attempt > 0, notebook=notebook)
            try:
                response = await (await self._http()).post(
                    self.base_url + path,
                    json=body if body is not None else {},
                    headers=self._control_headers(session, token),
                    timeout=self._httpx_timeout(_CONTROL_TIMEOUT),
                )
            except httpx.TransportError as exc:
                raise self._transport_error(exc, what) from None
            self._learn(response.request)
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
        self._check_names(notebook, session_id)
        notebook = self._notebook_or_default(notebook, session_id)
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
        ensure_encodable(code, what="The code")
        session = self._given(notebook, session_id) or await self.resolve_session(
            notebook, session_id=session_id
        )
        try:
            return await self._execute_queued(session, code, timeout, on_chunk, interrupt_others)
        except SessionNotFoundError:
            session = await self.resolve_session(notebook, session_id=session_id, refresh=True)
            return await self._execute_queued(session, code, timeout, on_chunk, interrupt_others)

    async def _execute_queued(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
        interrupt_others: bool,
    ) -> ExecuteResult:
        slot = self._slot(session)
        if not await slot.aacquire(self._queue_wait(timeout), "execute"):
            raise self._queue_error(session, slot)
        handed_over = False
        try:
            return await self._execute_checked(
                session, code, timeout, on_chunk, interrupt_others, slot=slot
            )
        except asyncio.CancelledError:
            # The caller gave up (an MCP client's Stop, a dropped connection, a cancelled
            # task): code it sent must not run on with nobody watching its limit.
            if slot.sent:
                self._stop_abandoned(session, slot)
                handed_over = True
            raise
        finally:
            if not handed_over:
                slot.release()

    def _stop_abandoned(self, session: SessionInfo, slot: SessionSlot) -> None:
        """Stop the code of a cancelled call in a task of its own; it releases ``slot``.

        Its own task, because the cancelled one may not wait for anything any more.
        Until the kernel is free the slot stays ours, so the next call queues behind
        the stop instead of finding "another client's" code running.
        """
        slot.holder = "stopping cancelled code"
        task = asyncio.get_running_loop().create_task(self._stop_then_release(session, slot))
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    async def _stop_then_release(self, session: SessionInfo, slot: SessionSlot) -> None:
        try:
            # marimo interrupts when an execute's stream closes; give that a moment.
            found, _ = await self._settle(session, self._first_look(session))
            if found == "running":
                activity = await self._activity(session)
                # Only a scratchpad run can be ours: a person's cell is never interrupted.
                if activity is None or activity.scratchpad:
                    await self._post_control("/api/kernel/interrupt", "interrupt", session)
                    found, _ = await self._settle(session, self._probe_wait(session))
                    if found == "running":
                        slot.wedged_since = time.time()
            logger.info("cancelled call's code stopped: kernel %s", found)
        except (MarimoPairError, httpx.HTTPError) as exc:
            logger.warning("could not stop a cancelled call's code: %s", self._redact(str(exc)))
        finally:
            slot.release()

    async def _execute_checked(
        self,
        session: SessionInfo,
        code: str,
        timeout: float | None,
        on_chunk: ChunkCallback | None,
        interrupt_others: bool,
        *,
        slot: SessionSlot | None = None,
    ) -> ExecuteResult:
        busy = await self._precheck(session, slot, interrupt_others=interrupt_others)
        sent = await self._ensure_input_guard(session, timeout, code)
        result = await self._execute_on(
            session, sent, timeout, on_chunk, busy_before=busy, slot=slot
        )
        if sent != code:
            self._guarded.add(self._guard_key(session))
        return result

    async def _precheck(
        self, session: SessionInfo, slot: SessionSlot | None, *, interrupt_others: bool
    ) -> bool:
        state = await self._kernel_state(session)
        if state == "stopped":
            raise self._dead_error(session, sent=False)
        if state != "running":
            if slot is not None:
                slot.wedged_since = None
            return False
        if interrupt_others:
            return True
        activity = await self._activity(session)
        if (
            activity is not None
            and not (activity.cells or activity.scratchpad)
            and await self._kernel_state(session) == "idle"
        ):
            return False  # the run ended while we looked: nothing to wait for
        raise self._busy_error(session, activity, slot)

    async def _kernel_state(self, session: SessionInfo, timeout: float | None = None) -> str:
        try:
            response = await self._get(
                "/api/kernel/status",
                "kernel status",
                headers={SESSION_HEADER: session.key},
                timeout=timeout if timeout is not None else self._probe_wait(session),
            )
        except ServerError as exc:
            if exc.status_code in {404, 405}:
                return "unknown"
            raise
        return self._parse_status(response)

    async def _activity(self, session: SessionInfo) -> KernelActivity | None:
        """See `MarimoClient._activity`."""
        reader = ReplayReader()
        first = self._probe_wait(session)
        try:
            async with (await self._http()).stream(
                "GET",
                self.base_url + "/sse",
                params=self._kiosk_params(session),
                headers={**self._headers(), "Accept": "text/event-stream"},
                timeout=self._httpx_timeout(first + _KIOSK_CAP),
            ) as response:
                if response.status_code >= 400:
                    return None
                chunks = response.aiter_text().__aiter__()
                deadline = time.monotonic() + first + _KIOSK_CAP
                wait = first
                while not reader.closed and time.monotonic() < deadline:
                    try:
                        text = await asyncio.wait_for(chunks.__anext__(), wait)
                    except (asyncio.TimeoutError, StopAsyncIteration):
                        break  # the burst is over
                    reader.feed(text)
                    wait = _KIOSK_GAP
        except httpx.HTTPError as exc:
            logger.debug("kiosk view failed: %r", exc)
            return None
        return reader.activity()

    async def document_fingerprint(
        self, notebook: str | None = None, *, session_id: str | None = None
    ) -> str | None:
        """See `MarimoClient.document_fingerprint`."""
        session = await self.resolve_session(notebook, session_id=session_id)
        reader = DocumentReader()
        wait = self._probe_wait(session) + _KIOSK_CAP
        try:
            async with (await self._http()).stream(
                "GET",
                self.base_url + "/sse",
                params=self._kiosk_params(session),
                headers={**self._headers(), "Accept": "text/event-stream"},
                timeout=self._httpx_timeout(wait),
            ) as response:
                if response.status_code >= 400:
                    return None
                async for text in response.aiter_text():
                    reader.feed(text)
                    if reader.done:
                        break
        except httpx.HTTPError as exc:
            logger.debug("kiosk document view failed: %r", exc)
            return None
        return reader.fingerprint

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
        wait = self._setup_wait(session, limit)
        try:
            result = await self._execute_on(
                session, _INPUT_GUARD_PROGRAM, wait, None, internal=True
            )
        except (errors.ExecuteTimeoutError, OutcomeUnknownError, errors.KernelDeadError) as exc:
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
        slot: SessionSlot | None = None,
    ) -> ExecuteResult:
        limit = self._execute_timeout(timeout)
        state = self._state(on_chunk)
        started = time.monotonic()
        if slot is not None and not internal:
            slot.sent = True

        async def consume() -> None:
            async with (await self._http()).stream(
                "POST",
                self.base_url + "/api/kernel/execute",
                json={"code": code},
                headers=self._execute_headers(session),
                timeout=self._httpx_timeout(None),
            ) as response:
                self._learn(response.request)  # what the kernel sees, auth flow included
                state.secrets = self._secrets()
                if response.status_code >= 400:
                    body = (await response.aread()).decode(errors="replace")
                    self._raise_for(response.status_code, body, "execute")
                async for text in response.aiter_text():
                    state.feed(text)

        deadline = self._deadline(limit, busy_before=busy_before, session=session)
        consumer = asyncio.ensure_future(consume())
        # Internal requests (probes, setup) are short; the caller's code is watched.
        watcher = None if internal else asyncio.ensure_future(self._watch_until_stopped(session))
        tasks = [t for t in (consumer, watcher) if t is not None]
        try:
            while True:
                done, _ = await asyncio.wait(
                    tasks, timeout=deadline.remaining(), return_when=asyncio.FIRST_COMPLETED
                )
                if done or internal:
                    break
                # The deadline passed: see `_Deadline` (someone else's run ahead of ours).
                if not deadline.keep_waiting(await self._activity(session)):
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.monotonic() - started
        if consumer not in done:
            if watcher is not None and watcher in done:
                raise self._dead_error(session, sent=True)
            assert limit is not None
            if internal:
                raise self._internal_timeout(limit)
            raise await self._diagnose_timeout(
                session, limit, busy_before=busy_before, slot=slot, deadline=deadline
            )
        error = consumer.exception()
        if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            raise self._transport_error(error, "execute") from None
        if isinstance(error, httpx.TransportError):
            logger.debug("execute stream broke: %s", self._redact(repr(error)))
        elif error is not None:
            raise error
        if state.done is None and not internal:
            state.flush()
            found, _ = await self._settle(session, self._probe_wait(session))
            raise self._stream_cut_error(session, found, state.stderr.getvalue())
        result = state.result(elapsed)
        self._note_overhead(session, elapsed)
        return result

    async def _watch_until_stopped(self, session: SessionInfo) -> None:
        """Return once marimo reports the kernel process stopped (see `_StatusWatch`)."""
        while True:
            await asyncio.sleep(_WATCH_INTERVAL)
            try:
                state = await self._kernel_state(session)
            except SessionNotFoundError:  # a reconnecting browser renamed the key
                # The refresh may fail the same way (the session is gone): keep watching.
                with contextlib.suppress(MarimoPairError, httpx.HTTPError, RuntimeError):
                    session = await self._refreshed(session) or session
                continue
            except (MarimoPairError, httpx.HTTPError):
                continue
            if state == "stopped":
                return

    async def _settle(self, session: SessionInfo, wait: float) -> tuple[str, float]:
        """See `MarimoClient._settle`."""
        started = time.monotonic()
        idle_seen = 0
        while True:
            try:
                state = await self._kernel_state(session, timeout=self._probe_wait(session))
            except ServerUnavailableError:
                return "down", time.monotonic() - started
            except SessionNotFoundError:
                # A browser that reconnected renamed the key; a closed session is gone.
                fresh = await self._refreshed(session)
                if fresh is None:
                    return "stopped", time.monotonic() - started
                session = fresh
                continue
            if state == "stopped":
                return "stopped", time.monotonic() - started
            if state == "unknown":  # a server without the status endpoint: ask the kernel
                answers = await self._kernel_answers(session, self._probe_wait(session))
                return ("answers" if answers else "running"), time.monotonic() - started
            idle_seen = idle_seen + 1 if state == "idle" else 0
            if idle_seen >= _IDLE_CONFIRMATIONS:
                return await self._confirm_answers(session), time.monotonic() - started
            if not idle_seen and time.monotonic() - started >= wait:
                return "running", time.monotonic() - started
            await asyncio.sleep(_SETTLE_POLL)

    async def _confirm_answers(self, session: SessionInfo) -> str:
        """See `MarimoClient._confirm_answers`."""
        answered = False

        async def probe() -> None:
            nonlocal answered
            state = self._state(None)
            async with (await self._http()).stream(
                "POST",
                self.base_url + "/api/kernel/execute",
                json={"code": "None"},
                headers=self._execute_headers(session),
                timeout=self._httpx_timeout(None),
            ) as response:
                if response.status_code >= 400:
                    return
                async for text in response.aiter_text():
                    state.feed(text)
                    if state.done is not None:
                        answered = True
                        return

        task = asyncio.ensure_future(probe())
        task.add_done_callback(_retrieve)
        ended = bool((await asyncio.wait({task}, timeout=self._probe_wait(session)))[0])
        if ended and answered:
            return "answers"
        try:
            state = await self._kernel_state(session)
        except ServerUnavailableError:
            state = "down"
        except MarimoPairError:
            state = "unknown"
        cut: list[bool] = []

        def cut_probe() -> None:
            cut.append(task.cancel())

        if state == "down":
            cut_probe()
            verdict = "down"
        else:
            verdict = _probe_verdict(cut_probe, ended=ended, state=state)
        if cut:
            await asyncio.gather(task, return_exceptions=True)
        elif not task.done():
            self._probes.add(task)  # left to finish behind someone's run: keep it alive
            task.add_done_callback(self._probes.discard)
        return verdict

    async def _refreshed(self, session: SessionInfo) -> SessionInfo | None:
        """See `MarimoClient._refreshed`."""
        try:
            sessions = await self.sessions()
        except MarimoPairError:
            return None
        return self._same_session(session, sessions)

    async def _diagnose_timeout(
        self,
        session: SessionInfo,
        limit: float,
        *,
        busy_before: bool,
        slot: SessionSlot | None,
        deadline: _Deadline | None = None,
    ) -> MarimoPairError:
        """See `MarimoClient._diagnose_timeout`."""
        wait = self._probe_wait(session)
        found, waited = await self._settle(session, min(wait, self._first_look(session)))
        activity = None
        if found == "running":
            activity = await self._activity(session)
            theirs = activity is not None and activity.cells and not activity.scratchpad
            if not theirs:  # their cells are named at once and never interrupted
                # Our code, or something unidentified: marimo's interrupt gets its full wait.
                found, more = await self._settle(session, max(wait - waited, 0.0))
                waited += more
                if found == "running" and activity is not None and activity.scratchpad:
                    with contextlib.suppress(MarimoPairError):
                        await self._post_control("/api/kernel/interrupt", "interrupt", session)
                    # An interrupt that works, works within a moment; code that catches it
                    # and cleans up may take longer: it gets the probe's wait again.
                    found, more = await self._settle(session, max(wait, _SECOND_INTERRUPT_WAIT))
                    waited += more
                    if found == "running" and activity.cells:
                        activity = await self._activity(session)  # ours, or their cells now?
                    if found == "running" and (activity is None or activity.scratchpad):
                        found = "wedged"
                        if slot is not None:
                            slot.wedged_since = time.time()
        return self._after_timeout_error(
            limit,
            found,
            activity,
            busy_before=busy_before,
            waited=waited,
            session=session,
            deadline=deadline,
        )

    async def _kernel_answers(self, session: SessionInfo, wait: float | None = None) -> bool:
        try:
            result = await self._execute_on(
                session, "None", wait or self._probe_wait(session), None, internal=True
            )
        except (errors.ExecuteTimeoutError, OutcomeUnknownError, ServerUnavailableError):
            return False
        return result.success

    async def ping(self, notebook: str | None = None, *, wait: float | None = None) -> None:
        """See `MarimoClient.ping`."""
        session = await self.resolve_session(notebook)
        slot = self._slot(session)
        if not await slot.aacquire(self._queue_wait(None), "ping"):
            raise self._queue_error(session, slot)
        try:
            await self._precheck(session, slot, interrupt_others=False)
            limit = wait if wait is not None else self._probe_wait(session)
            if not await self._kernel_answers(session, limit):
                raise errors.KernelBusyError(
                    f"The kernel did not answer within {limit:g} s: it is busy running a cell "
                    "or wedged. Interrupt it, or restart it (loses variables).",
                    cause="busy_unknown",
                )
        finally:
            slot.release()

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
        session = await self.resolve_session(notebook, session_id=session_id)
        state = await self._kernel_state(session)
        if state == "stopped":
            raise self._dead_error(session, sent=False)
        if state == "idle":
            return
        await self._control("/api/kernel/interrupt", "interrupt", notebook, session_id)

    async def restart(
        self,
        notebook: str | None = None,
        *,
        session_id: str | None = None,
        wait: float | None = None,
    ) -> RestartResult:
        """Restart the kernel, saying what was lost; see `MarimoClient.restart`."""
        session = await self.resolve_session(notebook, session_id=session_id, refresh=True)
        before = await self._list_variables(session)
        session = await self._control(
            "/api/kernel/restart_session", "restart", notebook, session_id
        )
        self._forget(session)
        self._slot(session).wedged_since = None
        new: SessionInfo | None = None
        ours = self._attached.pop(session.key, None)
        self._runs.pop(session.key, None)
        if ours is not None:
            task, attached_notebook = ours
            with contextlib.suppress(RuntimeError):  # a task of a loop that is gone
                task.cancel()
            if task.done() or task.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError, MarimoPairError):
                    await task
            self._attachments.remove(task)
            new = await self.attach(attached_notebook, wait=wait)
        elif session.key in self._released:  # see MarimoClient.restart
            new = await self.attach(self._released.pop(session.key), wait=wait)
            await self.release(new)
        else:
            new = await self._wait_for_session(session, min(wait or 1.0, 1.0))
        after = await self._list_variables(new) if new is not None else None
        return self._restart_result(session, before, after, new)

    async def _list_variables(self, session: SessionInfo) -> list[str] | None:
        """See `MarimoClient._list_variables`."""
        try:
            if await self._kernel_state(session) not in {"idle", "unknown"}:
                return None
            result = await self._execute_on(
                session, _VARIABLES_PROGRAM, self._probe_wait(session), None, internal=True
            )
        except (
            errors.ExecuteTimeoutError,
            OutcomeUnknownError,
            ServerUnavailableError,
            ServerError,
        ):
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

    async def _scope(self, notebook: str | None = None) -> _Scope | None:
        if self._scope_cache is None:
            try:
                response = await self._post_control(
                    "/api/home/workspace_files",
                    "read the served directory",
                    None,
                    {"includeMarkdown": False},
                    notebook=notebook,
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

    async def _poll_sessions(self, timeout: float) -> list[SessionInfo] | None:
        """See `MarimoClient._poll_sessions`."""
        try:
            response = await (await self._http()).get(
                self.base_url + "/api/sessions",
                headers=self._headers(),
                timeout=self._httpx_timeout(timeout),
            )
        except httpx.TimeoutException:
            return None
        except httpx.TransportError as exc:
            raise self._transport_error(exc, "list sessions") from None
        if response.status_code >= 400:
            self._raise_for(response.status_code, response.text, "list sessions")
        return self._parse_sessions(response.json())

    async def attach(
        self, notebook: str | None = None, *, wait: float | None = None
    ) -> SessionInfo:
        """Make sure the notebook has a session; see `MarimoClient.attach`."""
        self._check_names(notebook, None)
        notebook = self._notebook_or_default(notebook, None)
        if notebook is not None:
            target: str | None = self._check_scope(notebook, await self._scope(notebook))
        else:
            target = None
        existing = await self._existing_session(notebook, target)
        if existing is not None:
            return existing
        if wait is None:
            wait = self._attach_wait(target)
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
        started = loop.time()
        deadline = started + wait
        while True:
            if failure:
                raise failure[0]
            if task.done() and not failure:
                raise SessionNotFoundError(
                    "The server closed the headless session stream at once (a wrong token on "
                    "/sse is answered this way, or the notebook could not be opened)."
                )
            polled = loop.time()
            sessions = await self._poll_sessions(_ATTACH_POLL)
            if sessions is None:  # see MarimoClient.attach
                deadline = min(deadline + loop.time() - polled, started + _ATTACH_CAP)
                sessions = []
            found = [s for s in sessions if s.key == key]
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
