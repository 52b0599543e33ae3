"""Every error this package raises, in one tree.

    MarimoPairError
    ├── ConfigurationError            bad setup: unsupported marimo, remote URL without opt-in
    │   └── UnsupportedServerError    server version outside the supported range
    ├── TransportError                the server could not be reached or the stream broke
    │   ├── ServerUnavailableError    connection refused / server gone
    │   └── OutcomeUnknownError       the execute stream ended before `done`
    ├── ExecuteTimeoutError           (ToolException too) our deadline passed; kernel interrupted
    ├── AuthenticationError           401: token missing or wrong
    ├── SessionError                  no session, several sessions, stale session
    │   ├── SessionNotFoundError
    │   ├── AmbiguousSessionError
    │   └── ReadOnlyServerError       `marimo run` app server: nothing can be edited
    ├── KernelBusyError               (ToolException too) a person's run, our own earlier code
    │                                 still running, or a wedged kernel: nothing was sent
    ├── KernelDeadError               (ToolException too) the kernel process has stopped
    ├── ServerError                   any other non-2xx answer
    └── NotebookOperationError        (ToolException too) the model can recover from these
        ├── CellNotFoundError
        ├── CodeExecutionError        executed code raised
        ├── ValidationFailedError     syntax error, cycle, multiply-defined name: nothing applied
        ├── StaleCellError            compare-and-swap lost: the cell changed since it was read
        ├── EditMatchError            find/replace `old` matched zero or several times
        ├── GuardRefusedError         the read-before-edit / descendant-check policy said no
        ├── NotSavedError             applied in the session, but the file does not hold it
        └── UnencodableTextError      text that cannot be sent (a lone surrogate): nothing sent

Transport errors propagate out of tools (an agent cannot fix a dead server);
`NotebookOperationError` subclasses, `ExecuteTimeoutError` (code that never
ends), `KernelBusyError` (a person's cell is running) and `KernelDeadError`
(the kernel process is gone) are `ToolException`s, so LangChain turns them into
an error `ToolMessage` the model reads and acts on: fix the code, wait and
retry, or tell the person.

After a timeout or a failure, `cause` on the error names what the client found
(`Cause`); the message says the same in words, with the way out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._tool_errors import (
        CellNotFoundError,
        CodeExecutionError,
        EditMatchError,
        ExecuteTimeoutError,
        GuardRefusedError,
        KernelBusyError,
        KernelDeadError,
        NotebookOperationError,
        NotSavedError,
        StaleCellError,
        UnencodableTextError,
        ValidationFailedError,
    )

__all__ = [
    "AmbiguousSessionError",
    "AuthenticationError",
    "Cause",
    "CellNotFoundError",
    "CodeExecutionError",
    "ConfigurationError",
    "EditMatchError",
    "ExecuteTimeoutError",
    "GuardRefusedError",
    "KernelBusyError",
    "KernelDeadError",
    "MarimoPairError",
    "NotSavedError",
    "NotebookOperationError",
    "OutcomeUnknownError",
    "ReadOnlyServerError",
    "ServerError",
    "ServerUnavailableError",
    "SessionError",
    "SessionNotFoundError",
    "StaleCellError",
    "TransportError",
    "UnencodableTextError",
    "UnsupportedServerError",
    "ValidationFailedError",
    "error_for_status",
]


Cause = Literal[
    "kernel_answers",
    "busy_ours",
    "busy_scratchpad",
    "busy_person",
    "busy_unknown",
    "kernel_frozen",
    "kernel_dead",
    "server_down",
]
"""What the client found after a timeout or failure (or before sending, when busy):

- ``kernel_answers``: the kernel is idle and answers again; no restart is needed.
- ``busy_ours``: the kernel still runs code this client sent (it ignored the interrupt).
- ``busy_scratchpad``: it runs scratchpad code another client sent (another agent, a CLI).
- ``busy_person``: it runs notebook cells someone started (the person in the browser).
- ``busy_unknown``: it runs something the client could not identify.
- ``kernel_frozen``: marimo reports the kernel idle, but it does not answer a trivial
  request: its process is paused (a debugger, SIGSTOP, a suspended machine) or starved.
- ``kernel_dead``: marimo reports the kernel process stopped; its variables are gone.
- ``server_down``: the marimo server does not answer (stopped, crashed or frozen).
"""


class MarimoPairError(Exception):
    """Root of every error raised by marimo-pair-tools."""


class ConfigurationError(MarimoPairError):
    """The toolkit was set up in a way that cannot work."""


class UnsupportedServerError(ConfigurationError):
    """The marimo server's version is outside the supported range."""


class TransportError(MarimoPairError):
    """The server could not be reached, or a stream broke mid-way."""


class ServerUnavailableError(TransportError):
    """Nothing answers at the server URL (refused, reset, or the server died)."""

    def __init__(self, message: str, *, cause: Cause | None = "server_down") -> None:
        super().__init__(message)
        self.cause = cause


class OutcomeUnknownError(TransportError):
    """The execute stream ended before its `done` event.

    The code may have run fully, partly or not at all. Never retry it
    automatically: inspect the notebook state first. ``cause`` says what was
    found afterwards (``server_down`` when the server no longer answers).
    """

    def __init__(self, message: str, *, cause: Cause | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class AuthenticationError(MarimoPairError):
    """The server refused our credentials (HTTP 401)."""


class SessionError(MarimoPairError):
    """The notebook session could not be resolved."""


class SessionNotFoundError(SessionError):
    """No session matches the requested notebook or id."""


class AmbiguousSessionError(SessionError):
    """Several sessions match; the caller must pick one."""


class ReadOnlyServerError(SessionError):
    """The server runs notebooks as apps (`marimo run`): the kernel is not editable."""


class ServerError(MarimoPairError):
    """The server answered with an unexpected HTTP status."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def error_for_status(status_code: int, detail: str, *, what: str) -> MarimoPairError:
    """Map one HTTP error status from marimo to the error the caller should see.

    Args:
        status_code: the HTTP status.
        detail: the server's message (already free of secrets).
        what: a short description of the request, for the message.
    """
    if status_code == 401:
        return AuthenticationError(
            f"{what}: the server requires a token (HTTP 401). Set the MARIMO_TOKEN "
            "environment variable or pass token=... to the client; never put it on a "
            "command line."
        )
    if status_code == 403:
        return ServerError(
            f"{what}: forbidden (HTTP 403): {detail}. The notebook path may be outside "
            "the server's directory.",
            status_code=status_code,
        )
    if status_code == 404 and "stable session" in detail.lower():
        return SessionNotFoundError(
            f"{what}: the session is gone ({detail}). List sessions again and retry."
        )
    if status_code == 500 and "invalid session id" in detail.lower():
        return SessionNotFoundError(
            f"{what}: the session id is stale ({detail}); it changes when a browser "
            "reconnects. Resolve the notebook's session again."
        )
    return ServerError(f"{what}: HTTP {status_code}: {detail}", status_code=status_code)


_TOOL_ERRORS = frozenset(
    {
        "CellNotFoundError",
        "CodeExecutionError",
        "EditMatchError",
        "ExecuteTimeoutError",
        "GuardRefusedError",
        "KernelBusyError",
        "KernelDeadError",
        "NotSavedError",
        "NotebookOperationError",
        "StaleCellError",
        "UnencodableTextError",
        "ValidationFailedError",
    }
)


def __getattr__(name: str) -> Any:
    # The `ToolException` subclasses live in `_tool_errors`, loaded on first use:
    # importing langchain_core costs ~0.5 s, which `marimo-pair discover` and `exec`
    # (plain HTTP) should not pay. Every name is still importable from here.
    if name in _TOOL_ERRORS:
        from . import _tool_errors

        return getattr(_tool_errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
