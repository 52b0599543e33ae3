"""The errors a model can recover from: `ToolException` subclasses (see `errors`).

They live apart from the rest of the tree because `ToolException` comes from
langchain_core, whose import costs about half a second; `errors` loads this
module on first use of one of these names, so the plain HTTP paths (`marimo-pair
discover`, `exec`) never pay for it. Import them from `marimo_pair_tools.errors`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import ToolException

from .errors import MarimoPairError

__all__ = [
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
]


class ExecuteTimeoutError(ToolException, MarimoPairError):
    """The code ran past its deadline; we disconnected and the kernel was interrupted.

    A `ToolException`: the model wrote code that does not end in time, and can
    write better code. Whether the kernel answers again is in the message.
    """

    def __init__(self, message: str, *, kernel_responsive: bool | None = None) -> None:
        super().__init__(message)
        self.kernel_responsive = kernel_responsive


class KernelBusyError(ToolException, MarimoPairError):
    """The kernel did not answer: it is busy with other work or wedged.

    A `ToolException`: nothing was sent, so the model can wait and retry, or
    tell the person, whose cell is probably running.
    """


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


for _error in (
    CellNotFoundError,
    CodeExecutionError,
    EditMatchError,
    ExecuteTimeoutError,
    GuardRefusedError,
    KernelBusyError,
    NotSavedError,
    NotebookOperationError,
    StaleCellError,
    ValidationFailedError,
):
    _error.__module__ = "marimo_pair_tools.errors"  # where users import and see them
