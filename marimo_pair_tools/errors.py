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
    ├── KernelBusyError               (ToolException too) a person's run, or a wedged kernel
    ├── ServerError                   any other non-2xx answer
    └── NotebookOperationError        (ToolException too) the model can recover from these
        ├── CellNotFoundError
        ├── CodeExecutionError        executed code raised
        ├── ValidationFailedError     syntax error, cycle, multiply-defined name: nothing applied
        ├── StaleCellError            compare-and-swap lost: the cell changed since it was read
        ├── EditMatchError            find/replace `old` matched zero or several times
        ├── GuardRefusedError         the read-before-edit / descendant-check policy said no
        └── NotSavedError             applied in the session, but the file does not hold it

Transport errors propagate out of tools (an agent cannot fix a dead server);
`NotebookOperationError` subclasses, `ExecuteTimeoutError` (code that never
ends) and `KernelBusyError` (a person's cell is running) are `ToolException`s,
so LangChain turns them into an error `ToolMessage` the model reads and acts on:
fix the code, wait and retry, or tell the person.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._tool_errors import (
        CellNotFoundError,
        CodeExecutionError,
        EditMatchError,
        ExecuteTimeoutError,
        GuardRefusedError,
        KernelBusyError,
        NotebookOperationError,
        NotSavedError,
        StaleCellError,
        ValidationFailedError,
    )

__all__ = [
    "AmbiguousSessionError",
    "AuthenticationError",
    "CellNotFoundError",
    "CodeExecutionError",
    "ConfigurationError",
    "EditMatchError",
    "ExecuteTimeoutError",
    "GuardRefusedError",
    "KernelBusyError",
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
    "UnsupportedServerError",
    "ValidationFailedError",
    "error_for_status",
]


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


class OutcomeUnknownError(TransportError):
    """The execute stream ended before its `done` event.

    The code may have run fully, partly or not at all. Never retry it
    automatically: inspect the notebook state first.
    """


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
        "NotSavedError",
        "NotebookOperationError",
        "StaleCellError",
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
