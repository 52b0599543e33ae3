"""The errors a model can recover from: `ToolException` subclasses (see `errors`).

They live apart from the rest of the tree because `ToolException` comes from
langchain_core, whose import costs about half a second; `errors` loads this
module on first use of one of these names, so the plain HTTP paths (`marimo-pair
discover`, `exec`) never pay for it. Import them from `marimo_pair_tools.errors`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import ToolException

from .errors import Cause, MarimoPairError

__all__ = [
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
]


class ExecuteTimeoutError(ToolException, MarimoPairError):
    """The code ran past its deadline; we disconnected and the kernel was interrupted.

    A `ToolException`: the model wrote code that does not end in time, and can
    write better code. Whether the kernel answers again is in the message.
    """

    def __init__(
        self,
        message: str,
        *,
        kernel_responsive: bool | None = None,
        cause: Cause | None = None,
    ) -> None:
        super().__init__(message)
        self.kernel_responsive = kernel_responsive
        self.cause = cause


class KernelBusyError(ToolException, MarimoPairError):
    """The kernel did not answer: it is busy with other work or wedged.

    A `ToolException`: nothing was sent, so the model can wait and retry, or
    tell the person. ``cause`` says whose work it is, when the client could tell.
    """

    def __init__(self, message: str, *, cause: Cause | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class KernelDeadError(ToolException, MarimoPairError):
    """marimo reports the notebook's kernel process stopped (crashed, killed, out of memory).

    A `ToolException`: the model cannot revive it, but it can tell the person,
    who restarts the kernel (all variables are gone either way).
    """

    cause: Cause = "kernel_dead"


class NotebookOperationError(ToolException, MarimoPairError):
    """A notebook operation was refused or failed in a way the agent can recover from."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class CellNotFoundError(NotebookOperationError):
    """No cell has that id or name."""


class CodeExecutionError(NotebookOperationError):
    """Code sent to the kernel raised; the traceback is in the message."""


class ValidationFailedError(NotebookOperationError):
    """marimo rejected the change (syntax, cycle, multiply-defined name); nothing was applied."""


class StaleCellError(NotebookOperationError):
    """The cell changed since it was read; the current code is attached."""


class EditMatchError(NotebookOperationError):
    """A find/replace edit's `old` text matched zero or several times."""


class NotSavedError(NotebookOperationError):
    """The change is in the running notebook, but the notebook file does not hold it.

    ``result`` is the `ApplyResult` of what was applied (the session has it).
    """

    def __init__(self, message: str, *, result: Any = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.result = result


class GuardRefusedError(NotebookOperationError):
    """The pairing policy refused the call (read before edit, inspect before delete)."""


class UnencodableTextError(NotebookOperationError):
    """An argument holds text that cannot be sent as UTF-8 (a lone surrogate); nothing was sent."""


for _error in (
    CellNotFoundError,
    CodeExecutionError,
    EditMatchError,
    ExecuteTimeoutError,
    GuardRefusedError,
    KernelBusyError,
    KernelDeadError,
    NotSavedError,
    NotebookOperationError,
    StaleCellError,
    UnencodableTextError,
    ValidationFailedError,
):
    _error.__module__ = "marimo_pair_tools.errors"  # where users import and see them
