"""The LangChain tools: one `BaseTool` per notebook operation, for a model to call.

Every tool shares one shape (`NotebookTool`): check the pairing policy, call one
`Notebook` / `AsyncNotebook` method, learn from the result (the ledger), and
return short text for the model plus the typed result as the artifact. `_run`
and `_arun` differ only in that one call. Plumbing (client, server, session,
token) lives in the bound `PairSession` and never appears in a schema.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import guards
from ._text import truncate
from .errors import (
    ExecuteTimeoutError,
    GuardRefusedError,
    KernelBusyError,
    NotebookOperationError,
    NotSavedError,
)
from .models import (
    ApplyResult,
    CellDetail,
    Change,
    CreateCell,
    DeleteCell,
    EditCell,
    MoveCell,
    ReplaceInCell,
    RunCell,
    untrusted,
)
from .notebook import AsyncNotebook, Notebook
from .presence import Presence, parse_presence

__all__ = [
    "ApplyChangesTool",
    "CreateCellTool",
    "DeleteCellTool",
    "EditCellTool",
    "ExecuteCodeTool",
    "GetErrorsTool",
    "GetVariablesTool",
    "InspectGraphTool",
    "InstallPackagesTool",
    "InterruptKernelTool",
    "ListNotebooksTool",
    "MoveCellTool",
    "NotebookTool",
    "OutputLimits",
    "PairSession",
    "ReadCellTool",
    "ReadNotebookTool",
    "RunCellTool",
    "SetUIValueTool",
    "explain_arguments",
    "learn_from_error",
]

logger = logging.getLogger(__name__)

_PRESENCE_TIMEOUT = 30.0
"""Seconds for the presence read: generous, since a timeout interrupts the kernel."""

ApprovalCallback = Callable[[dict[str, Any]], bool]
"""Asked before a change the policy wants a person to approve; True approves."""


@dataclass(frozen=True)
class OutputLimits:
    """Bounds on what a tool returns to the model (the artifact keeps everything)."""

    max_chars: int = 8_000
    """Characters of text per tool result."""
    max_image_bytes: int = 1_500_000
    """Images larger than this are announced, not attached."""
    cells_page: int = 60
    """Cells per `read_notebook` page: 60 lines of at most 120 characters fit ``max_chars``."""


class PairSession:
    """What the tools share: the notebook (sync and async), policy, ledger, limits.

    A plain class (not a pydantic model): the tools hold it by reference, so
    every tool of a toolkit sees one ledger. Updates take a lock, so parallel
    tool calls keep every fact.
    """

    def __init__(
        self,
        notebook: Notebook | None,
        anotebook: AsyncNotebook | None,
        *,
        policy: guards.Policy | None = None,
        limits: OutputLimits | None = None,
        approve: ApprovalCallback | None = None,
        ledger: guards.Ledger | None = None,
        presence: Presence | None = None,
        recheck_scratchpad: bool = False,
    ) -> None:
        self.notebook = notebook
        self.anotebook = anotebook
        self.policy = policy
        self.limits = limits or OutputLimits()
        self.approve = approve
        self.ledger = ledger or guards.Ledger()
        self.presence = presence
        """Digests of what the person did, and toasts of what the agent does (None: off)."""
        self.recheck_scratchpad = recheck_scratchpad
        """`execute_code` reads the notebook's version on the server after the code (the
        eval's audit wants it; see `Notebook.execute`)."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PairSession(notebook={self.notebook!r}, policy={self.policy!r})"

    def update_ledger(self, fn: Callable[[guards.Ledger], guards.Ledger]) -> None:
        """Apply one pure ledger update atomically."""
        with self._lock:
            self.ledger = fn(self.ledger)

    def sync(self) -> Notebook:
        if self.notebook is None:
            raise RuntimeError(
                "This toolkit was built for async use only; call the tool with ainvoke."
            )
        return self.notebook

    def asynchronous(self) -> AsyncNotebook:
        if self.anotebook is None:
            raise RuntimeError(
                "This toolkit was built for sync use only; call the tool with invoke."
            )
        return self.anotebook


@dataclass(frozen=True)
class _Op:
    """One notebook call: the method name and its arguments."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class NotebookTool(BaseTool):
    """Base of every tool: policy check → one notebook call → ledger → bounded text."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: PairSession = Field(exclude=True)
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool | str | Callable[..., str] | None = True
    guarded: ClassVar[bool] = False

    def model_post_init(self, context: Any, /) -> None:
        """Arguments that miss the schema come back as text naming the valid ones."""
        super().model_post_init(context)
        if self.handle_validation_error is False:
            schema = self.args_schema if isinstance(self.args_schema, type) else None
            self.handle_validation_error = lambda exc: explain_arguments(self.name, schema, exc)

    # -- the parts each tool defines -------------------------------------------------

    def _operation(self, args: dict[str, Any]) -> _Op:
        raise NotImplementedError

    def _content(self, args: dict[str, Any], result: Any) -> str | list[Any]:
        return str(result.render()) if hasattr(result, "render") else str(result)

    # -- shared machinery ------------------------------------------------------------

    def _prepare(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        args = {k: v for k, v in kwargs.items() if k not in {"run_manager", "callbacks"}}
        session = self.session
        if self.guarded and session.policy is not None:
            decision = guards.check(session.policy, session.ledger, self.name, args)
            if not decision.allowed or (
                decision.needs_approval and not self._approved(args, decision)
            ):
                session.update_ledger(lambda ledger: guards.record_decision(ledger, decision))
                reason = decision.reason
                if decision.allowed:  # needed approval, and nobody approved
                    reason = (
                        f"{self.name} was not approved by a person; nothing was changed. {reason}"
                    )
                raise GuardRefusedError(reason, rule=decision.rule)
        return self._fill_hashes(args)

    def _approved(self, args: dict[str, Any], decision: guards.Decision) -> bool:
        approve = self.session.approve
        return approve is not None and approve(
            {"name": self.name, "args": args, "description": decision.reason}
        )

    def _with_image(self, text: str, image: str | None, mimetype: str | None) -> str | list[Any]:
        """Text plus the image as a content block a vision model sees, within the size cap."""
        if not image:
            return text
        if len(image) * 3 // 4 > self.session.limits.max_image_bytes:
            return text + "\n(image too large to attach; it is in the artifact)"
        text = truncate(text, self.session.limits.max_chars, what="this result")
        return [
            {"type": "text", "text": text},
            {"type": "image", "base64": image, "mime_type": mimetype or "image/png"},
        ]

    def _fill_hashes(self, args: dict[str, Any]) -> dict[str, Any]:
        """Edits carry the hash the agent read, so the kernel's compare-and-swap can check it."""
        return guards.with_read_hashes(self.session.ledger, self.name, args)

    def _finish(self, args: dict[str, Any], result: Any) -> tuple[str | list[Any], Any]:
        artifact = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        before = self.session.ledger
        self.session.update_ledger(
            lambda ledger: guards.record_tool_result(
                ledger, self.name, args, artifact if isinstance(artifact, dict) else None
            )
        )
        content = self._content(args, result)
        if guards.document_changed(before, self.session.ledger):
            content = _with_notice(content, guards.DOCUMENT_CHANGED)
        if isinstance(content, str):
            content = truncate(
                content,
                self.session.limits.max_chars,
                what="this result",
                hint="the artifact has all of it; page or narrow the request",
            )
        return content, artifact

    def _failed(self, args: dict[str, Any], exc: NotebookOperationError) -> NotebookOperationError:
        """Learn from a refusal (its shown current code is a read); the message has the code."""
        self.session.update_ledger(lambda ledger: learn_from_error(ledger, self.name, args, exc))
        return exc

    # -- presence: what the person did since the agent's last call -----------------

    watched: ClassVar[bool] = True
    """Whether calls look for the person's changes first (and announce themselves)."""

    def _presence(self) -> Presence | None:
        return self.session.presence if self.watched else None

    @staticmethod
    def _news(presence: Presence, read: Any) -> str | None:
        """The digest from a presence read (None when it could not be made)."""
        now = parse_presence(read.stdout) if read is not None else None
        return presence.look(now) if now is not None else None

    @staticmethod
    def _told(content: Any, news: str | None) -> Any:
        """The result's content with the digest in front."""
        if not news:
            return content
        if isinstance(content, list):
            return [{"type": "text", "text": news}, *content]
        return f"{news}\n{content}"

    @staticmethod
    def _with_news(exc: NotebookOperationError, news: str | None) -> NotebookOperationError:
        """The same error (its details, its result), its message led by the digest."""
        if news:
            exc.args = (f"{news}\n{exc}", *exc.args[1:])
        return exc

    def _learned(self, presence: Presence, outcome: tuple[Any, Any], news: str | None) -> Any:
        content, artifact = outcome
        presence.learn(self.name, artifact if isinstance(artifact, dict) else None)
        return self._told(content, news), artifact

    def _run(self, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
        args = self._prepare(kwargs)
        op = self._operation(args)
        presence = self._presence()
        with presence.lock if presence is not None else contextlib.nullcontext():
            news = None
            if presence is not None:
                presence.begin()
                read = _quietly(self.session.sync().execute, presence.program(self.name, args))
                news = self._news(presence, read)
            try:
                result = getattr(self.session.sync(), op.method)(*op.args, **op.kwargs)
            except NotebookOperationError as exc:
                raise self._with_news(self._failed(args, exc), news) from None
            except BaseException:
                # A timeout, a busy kernel, a transport error: the digest did not reach
                # the model; tell it next time.
                if presence is not None:
                    presence.undo()
                raise
            outcome = self._finish(args, result)
            return outcome if presence is None else self._learned(presence, outcome, news)

    async def _arun(
        self, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> Any:
        args = self._prepare(kwargs)
        op = self._operation(args)
        presence = self._presence()
        lock = presence.async_lock() if presence is not None else contextlib.nullcontext()
        async with lock:
            news = None
            if presence is not None:
                presence.begin()
                program = presence.program(self.name, args)
                read = await _aquietly(self.session.asynchronous().execute, program)
                news = self._news(presence, read)
            try:
                result = await getattr(self.session.asynchronous(), op.method)(
                    *op.args, **op.kwargs
                )
            except NotebookOperationError as exc:
                raise self._with_news(self._failed(args, exc), news) from None
            except BaseException:
                # A timeout, a busy kernel, a transport error: the digest did not reach
                # the model; tell it next time.
                if presence is not None:
                    presence.undo()
                raise
            outcome = self._finish(args, result)
            return outcome if presence is None else self._learned(presence, outcome, news)


def _quietly(execute: Callable[..., Any], program: str) -> Any:
    """Run the presence program; None when the kernel is busy (the call itself says so)."""
    try:
        return execute(program, timeout=_PRESENCE_TIMEOUT)
    except (KernelBusyError, ExecuteTimeoutError) as exc:
        logger.info("presence read skipped: %s", exc)
        return None


async def _aquietly(execute: Callable[..., Any], program: str) -> Any:
    try:
        return await execute(program, timeout=_PRESENCE_TIMEOUT)
    except (KernelBusyError, ExecuteTimeoutError) as exc:
        logger.info("presence read skipped: %s", exc)
        return None


def _with_notice(content: str | list[Any], notice: str) -> str | list[Any]:
    if isinstance(content, str):
        return f"{notice}\n{content}"
    return [{"type": "text", "text": notice}, *content]


def learn_from_error(
    ledger: guards.Ledger, tool: str, args: Mapping[str, Any], exc: BaseException
) -> guards.Ledger:
    """What the ledger learns from a failed call (the tools, the agent and the middleware).

    A refusal that showed the current code is a read. A change that landed in the
    session but not on disk (`NotSavedError`) did change the cells: its result counts.
    """
    if isinstance(exc, NotSavedError) and isinstance(exc.result, BaseModel):
        return guards.record_tool_result(ledger, tool, args, exc.result.model_dump(mode="json"))
    if isinstance(exc, NotebookOperationError) and exc.details:
        return guards.record_tool_error(ledger, exc.details)
    return ledger


def explain_arguments(tool: str, schema: Any, exc: Any) -> str:
    """A schema mismatch as text the model can act on: what is wrong, and what is valid."""
    problems = []
    errors = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc.errors()
    for err in errors:
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown argument {where!r}")
        else:
            problems.append(f"{where or 'arguments'}: {err['msg']}")
    fields = getattr(schema, "model_fields", None)
    valid = ", ".join(fields) if isinstance(fields, dict) else ""
    return (
        f"{tool} was not called (nothing changed): its arguments do not fit the tool's "
        f"schema: {'; '.join(problems)}."
        + (f" Valid arguments: {valid}." if valid else "")
        + " Fix the arguments and call it again."
    )


# ----------------------------------------------------------------------------- inputs


class _Arguments(BaseModel):
    # An argument the tool does not know (`dry_run`) is refused with the valid ones
    # listed, never silently ignored while the change goes ahead.
    model_config = ConfigDict(extra="forbid")


class _NoArgs(_Arguments):
    pass


class ReadNotebookInput(_Arguments):
    """Arguments of `read_notebook`."""

    offset: int = Field(default=0, ge=0, description="First cell to list (for paging).")
    limit: int | None = Field(
        default=None, ge=1, le=1000, description="Cells to list; default 60 per page."
    )


class CellInput(_Arguments):
    """A cell reference."""

    cell: str = Field(description="The cell's id (as read_notebook shows it) or its name.")


class ReadCellInput(CellInput):
    """Arguments of `read_cell`."""

    offset: int = Field(
        default=0,
        ge=0,
        description="Character offset into the code, to page through a long cell.",
    )


class InspectGraphInput(_Arguments):
    """Arguments of `inspect_graph`."""

    cell: str | None = Field(
        default=None,
        description="Focus on this cell (id or name): its ancestors, descendants and the "
        "names each descendant reads. Omit for the whole notebook's edges and problems.",
    )


class ExecuteCodeInput(_Arguments):
    """Arguments of `execute_code`."""

    code: str = Field(description="Python to run in the scratchpad; top-level await works.")
    timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds before the kernel is interrupted."
    )


class CreateCellInput(_Arguments):
    """Arguments of `create_cell`."""

    code: str = Field(description="The cell's code (a cell body, not an @app.cell function).")
    after: str | None = Field(default=None, description="Insert after this cell (id or name).")
    before: str | None = Field(default=None, description="Insert before this cell (id or name).")
    name: str | None = Field(default=None, description="Optional cell name (an identifier).")
    run: bool = Field(
        default=True, description="Run the cell (and its dependents) after creating it."
    )
    acknowledge_descendants: list[str] | bool = Field(
        default_factory=list,
        description="Only when a refusal said so: cells that read a name this cell defines.",
    )


class EditCellInput(_Arguments):
    """Arguments of `edit_cell`: the full new code, or a find/replace."""

    cell: str = Field(description="The cell's id or name. Read it with read_cell first.")
    code: str | None = Field(default=None, description="The complete new code of the cell.")
    old: str | None = Field(
        default=None, description="Exact text to replace (instead of `code`); must match once."
    )
    new: str | None = Field(default=None, description="Replacement for `old`.")
    replace_all: bool = Field(default=False, description="Replace every match of `old`.")
    expected_hash: str | None = Field(
        default=None,
        description="code_hash from your read_cell; defaults to the hash you last read.",
    )
    run: bool = Field(default=True, description="Run the cell (and its dependents) afterwards.")
    acknowledge_descendants: list[str] | bool = Field(
        default_factory=list,
        description="Only when the edit removes or renames names other cells read: those "
        "cells, after inspect_graph(cell=...). Such an edit is judged like a delete.",
    )
    seen_ranges: list[tuple[int, int]] | None = Field(
        default=None, description="Leave empty: filled from your reads of a long cell."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> EditCellInput:
        if (self.code is None) == (self.old is None):
            raise ValueError("give either `code` (full replacement) or `old` + `new`")
        if self.old is not None and self.new is None:
            raise ValueError("`old` needs `new`")
        return self


class DeleteCellInput(_Arguments):
    """Arguments of `delete_cell`."""

    cell: str = Field(description="The cell's id or name. Call inspect_graph(cell=...) first.")
    acknowledge_descendants: list[str] | bool = Field(
        default_factory=list,
        description="The descendant cell ids inspect_graph listed, to confirm they will lose "
        "names (or true for all). Empty when the cell has no descendants.",
    )
    expected_descendants: list[str] | None = Field(
        default=None,
        description="Leave empty: filled from your inspect_graph. Nothing is deleted if other "
        "cells came to depend on this one since.",
    )
    expected_hash: str | None = Field(
        default=None,
        description="Leave empty: filled from your inspect_graph or read_cell. Nothing is "
        "deleted if the cell's code changed since.",
    )


class MoveCellInput(_Arguments):
    """Arguments of `move_cell`."""

    cell: str = Field(description="The cell to move (id or name).")
    before: str | None = Field(default=None, description="Place it before this cell.")
    after: str | None = Field(default=None, description="Place it after this cell.")

    @model_validator(mode="after")
    def _one_anchor(self) -> MoveCellInput:
        if (self.before is None) == (self.after is None):
            raise ValueError("give exactly one of `before` or `after`")
        return self


class ApplyChangesInput(_Arguments):
    """Arguments of `apply_changes`."""

    changes: list[Change] = Field(
        min_length=1,
        max_length=200,
        description="Changes applied together, in order, atomically. Edits need the "
        "expected_hash from read_cell; '@N' refers to the cell created by change N.",
    )


class PackagesInput(_Arguments):
    """Arguments of `install_packages`."""

    add: list[str] = Field(default_factory=list, description="Packages to install (pip specs).")
    remove: list[str] = Field(default_factory=list, description="Packages to remove.")

    @model_validator(mode="after")
    def _something(self) -> PackagesInput:
        if not self.add and not self.remove:
            raise ValueError("name packages to add or remove")
        return self


class SetUIValueInput(_Arguments):
    """Arguments of `set_ui_value`."""

    name: str = Field(description="The global variable holding the mo.ui element.")
    value: Any = Field(description="The new value, of the type the element expects.")


class GetVariablesInput(_Arguments):
    """Arguments of `get_variables`."""

    names: list[str] | None = Field(default=None, description="Only these names; default all.")
    limit: int = Field(default=50, ge=1, le=500, description="At most this many variables.")


# ------------------------------------------------------------------------------ tools


class ListNotebooksTool(NotebookTool):
    """`list_notebooks`."""

    name: str = "list_notebooks"
    description: str = (
        "Show which notebook you are working on and the other notebooks open on its marimo server. "
        "Use it to confirm where you are; it changes nothing."
    )
    args_schema: type[BaseModel] = _NoArgs

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("sessions_overview")

    def _content(self, args: dict[str, Any], result: Any) -> str:
        # The model sees notebooks, never the server URL (the artifact keeps it for code).
        return json.dumps({k: v for k, v in result.items() if k != "server"}, indent=1)


class ReadNotebookTool(NotebookTool):
    """`read_notebook`."""

    name: str = guards.LIST_CELLS
    description: str = (
        "Get the cell map of the notebook in order: per cell its id, name, status, whether it "
        "has output/errors, the names it defines and reads, code_hash and first line. Call this "
        "first to orient yourself. It does not show full code: call read_cell before editing."
    )
    args_schema: type[BaseModel] = ReadNotebookInput

    def _operation(self, args: dict[str, Any]) -> _Op:
        limit = args.get("limit") or self.session.limits.cells_page
        return _Op("cells", (args.get("offset", 0), limit))


class ReadCellTool(NotebookTool):
    """`read_cell`."""

    name: str = guards.READ_CELL
    description: str = (
        "Read one cell in full: its code, code_hash, status, output (text; images attached), "
        "console output and errors with traceback. Required before edit_cell: edits are based "
        "on the code_hash you read."
    )
    args_schema: type[BaseModel] = ReadCellInput

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("read_cell", (args["cell"],))

    def _finish(self, args: dict[str, Any], result: Any) -> tuple[str | list[Any], Any]:
        # The window of code the model will see is what the ledger counts as read; the
        # rendering keeps it whole, so the window must fit the text budget with its header.
        limit = max(200, self.session.limits.max_chars * 3 // 4)
        return super()._finish(args, result.shown(args.get("offset") or 0, limit))

    def _content(self, args: dict[str, Any], result: CellDetail) -> str | list[Any]:
        text = result.render(max_chars=self.session.limits.max_chars)
        output = result.output
        if output is None:
            return text
        return self._with_image(text, output.image_base64, output.image_mimetype)


class InspectGraphTool(NotebookTool):
    """`inspect_graph`."""

    name: str = guards.INSPECT_GRAPH
    description: str = (
        "Show the dataflow graph, computed from every cell's code (run or not). With `cell`: "
        "its ancestors, its descendants and which of its names each descendant reads — call "
        "this before delete_cell, then acknowledge the descendants it lists. Without `cell`: "
        "all edges, cycles and multiply-defined names."
    )
    args_schema: type[BaseModel] = InspectGraphInput

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("graph", (args.get("cell"),))


class ExecuteCodeTool(NotebookTool):
    """`execute_code`."""

    name: str = guards.EXECUTE_CODE
    description: str = (
        "Run Python in the notebook's scratchpad, with the notebook's variables in scope, and "
        "get stdout, stderr and the value of the last expression. Use it to inspect data and "
        "try code. Nothing is saved: assignments vanish after the call; use create_cell or "
        "edit_cell for lasting work."
    )
    args_schema: type[BaseModel] = ExecuteCodeInput
    guarded: ClassVar[bool] = True

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op(
            "execute",
            (args["code"],),
            {"timeout": args.get("timeout", 30.0), "recheck": self.session.recheck_scratchpad},
        )

    def _content(self, args: dict[str, Any], result: Any) -> str | list[Any]:
        parts = [("succeeded" if result.success else "FAILED") + f" in {result.elapsed:.2f} s"]
        image: tuple[str, str | None] | None = None
        if result.stdout:
            parts.append("stdout:\n" + untrusted(result.stdout))
        if result.stderr:
            parts.append("stderr:\n" + untrusted(result.stderr))
        if result.output is not None and result.output.data:
            from .notebook import output_view

            view = output_view({"mimetype": result.output.mimetype, "data": result.output.data})
            if view is not None and view.text:
                parts.append(f"value ({view.mimetype}):\n" + untrusted(view.text))
            elif view is not None and view.image_base64:
                parts.append(f"value: image ({view.image_mimetype})")
                image = (view.image_base64, view.image_mimetype)
        text = "\n".join(parts)
        return self._with_image(text, *image) if image else text


class _ChangeTool(NotebookTool):
    """Tools that change the notebook: one `apply` of one or more changes."""

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        raise NotImplementedError

    def _operation(self, args: dict[str, Any]) -> _Op:
        # Tools always judge a change by its effect on cells it does not touch.
        return _Op("apply", (self._changes(args),), {"check_effects": True})

    def _content(self, args: dict[str, Any], result: ApplyResult) -> str:
        return result.render(max_chars=self.session.limits.max_chars)


class CreateCellTool(_ChangeTool):
    """`create_cell`."""

    name: str = guards.CREATE_CELL
    description: str = (
        "Add a cell and (by default) run it. Each public name must be defined by one cell only; "
        "use _private names for intermediates. Returns the new cell id and code_hash, what ran "
        "and any errors. For several related cells prefer apply_changes."
    )
    args_schema: type[BaseModel] = CreateCellInput

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        return [
            CreateCell(
                code=args["code"],
                after=args.get("after"),
                before=args.get("before"),
                name=args.get("name"),
                run=args.get("run", True),
                acknowledge_descendants=args.get("acknowledge_descendants") or [],
            )
        ]


class EditCellTool(_ChangeTool):
    """`edit_cell`."""

    name: str = guards.EDIT_CELL
    description: str = (
        "Change a cell's code: give the complete new `code`, or `old` + `new` to replace an "
        "exact snippet (returns a diff). You must read_cell first; if the cell changed since "
        "(a person edited it), nothing is applied and you get its current code to redo the "
        "edit on. Runs the cell and its dependents by default."
    )
    args_schema: type[BaseModel] = EditCellInput
    guarded: ClassVar[bool] = True

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        run = args.get("run", True)
        ack = args.get("acknowledge_descendants") or []
        if args.get("code") is not None:
            expected = args.get("expected_hash") or self._current_hash(args["cell"])
            return [
                EditCell(
                    cell=args["cell"],
                    code=args["code"],
                    expected_hash=expected,
                    run=run,
                    acknowledge_descendants=ack,
                )
            ]
        return [
            ReplaceInCell(
                cell=args["cell"],
                old=args["old"],
                new=args["new"],
                replace_all=args.get("replace_all", False),
                expected_hash=args.get("expected_hash"),
                run=run,
                acknowledge_descendants=ack,
                seen_ranges=args.get("seen_ranges"),
            )
        ]

    def _current_hash(self, cell: str) -> str:
        """With the policy off and no read, edit whatever is there now (raw use only)."""
        notebook = self.session.notebook
        if notebook is None:
            raise GuardRefusedError(
                "edit_cell needs expected_hash (the code_hash from read_cell) in async raw mode."
            )
        return notebook.read_cell(cell).code_hash


class DeleteCellTool(_ChangeTool):
    """`delete_cell`."""

    name: str = guards.DELETE_CELL
    description: str = (
        "Delete a cell. Destructive: its names disappear and cells reading them fail. First call "
        "inspect_graph(cell=...) and pass the descendants it lists as acknowledge_descendants. "
        "Returns the deleted code and names so the deletion can be undone with create_cell."
    )
    args_schema: type[BaseModel] = DeleteCellInput
    guarded: ClassVar[bool] = True

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        return [
            DeleteCell(
                cell=args["cell"],
                expected_hash=args.get("expected_hash"),
                expected_descendants=args.get("expected_descendants"),
                acknowledge_descendants=args.get("acknowledge_descendants") or [],
            )
        ]


class MoveCellTool(_ChangeTool):
    """`move_cell`."""

    name: str = guards.MOVE_CELL
    description: str = (
        "Move a cell before or after another. Order is for readers only: it does not change "
        "what runs, and nothing re-runs."
    )
    args_schema: type[BaseModel] = MoveCellInput

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        return [MoveCell(cell=args["cell"], before=args.get("before"), after=args.get("after"))]


class RunCellTool(_ChangeTool):
    """`run_cell`."""

    name: str = guards.RUN_CELL
    description: str = (
        "Run a cell (and, reactively, the cells that depend on it). Returns each cell's status "
        "and errors, and what the cells printed."
    )
    args_schema: type[BaseModel] = CellInput

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        return [RunCell(cell=args["cell"])]


class ApplyChangesTool(_ChangeTool):
    """`apply_changes`."""

    name: str = guards.APPLY_CHANGES
    description: str = (
        "Apply several changes (create / edit / replace / delete / move / run) atomically in "
        "one step: if any is invalid (syntax error, cycle, a name defined twice, a stale edit) "
        "nothing is applied. Prefer this for related edits. The same rules hold as for the "
        "single tools: read_cell before edits, inspect_graph before deletes."
    )
    args_schema: type[BaseModel] = ApplyChangesInput
    guarded: ClassVar[bool] = True

    def _prepare(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        changes = [
            c.model_dump() if isinstance(c, BaseModel) else dict(c) for c in kwargs["changes"]
        ]
        return super()._prepare({**kwargs, "changes": changes})

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        return list(ApplyChangesInput.model_validate({"changes": args["changes"]}).changes)


class InstallPackagesTool(NotebookTool):
    """`install_packages`."""

    name: str = "install_packages"
    description: str = (
        "Install (add) or uninstall (remove) Python packages in the notebook's environment with "
        "its package manager. Reports per package success/failure and whether a kernel restart "
        "is required. Confirm unusual installs with the person first."
    )
    args_schema: type[BaseModel] = PackagesInput

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("change_packages", (list(args.get("add") or []), list(args.get("remove") or [])))

    def _content(self, args: dict[str, Any], result: Any) -> str:
        lines = [f"{r.action} {r.package}: {r.outcome}" for r in result.results]
        if result.manager_missing:
            lines.append("no package manager is available to this kernel")
        if result.restart_required:
            lines.append("restart the kernel for the change to take effect")
        return "\n".join(lines)


class SetUIValueTool(NotebookTool):
    """`set_ui_value`."""

    name: str = "set_ui_value"
    description: str = (
        "Set the value of a mo.ui element (slider, dropdown, text, …) held by a global variable, "
        "as if the person had used it; dependent cells re-run. Returns the value read back and "
        "whether it took."
    )
    args_schema: type[BaseModel] = SetUIValueInput

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("set_ui_value", (args["name"], args["value"]))

    def _content(self, args: dict[str, Any], result: Any) -> str:
        took = "took" if result.took else "DID NOT take"
        text = (
            f"{result.name} ({result.element_type}): {result.before!r} -> {result.value!r} ({took})"
        )
        for report in result.ran:
            text += f"\nre-ran {report.cell_id}: {report.status}"
            for error in report.errors:
                text += f"\n  error: {error.message}"
        return text


class GetErrorsTool(NotebookTool):
    """`get_errors`."""

    name: str = "get_errors"
    description: str = (
        "List every problem in the notebook: cells that raised (with traceback), syntax errors, "
        "names defined in more than one cell, and cycles. Use it to check your work."
    )
    args_schema: type[BaseModel] = _NoArgs

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("errors")


class GetVariablesTool(NotebookTool):
    """`get_variables`."""

    name: str = "get_variables"
    description: str = (
        "List the notebook's variables: type, short repr, and for data frames shape and columns. "
        "Cheaper than execute_code for a quick look at state."
    )
    args_schema: type[BaseModel] = GetVariablesInput

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("variables", (args.get("names"),), {"limit": args.get("limit", 50)})


class InterruptKernelTool(NotebookTool):
    """`interrupt_kernel`."""

    # It must not wait behind a running call (it exists to stop one), nor ask the busy
    # kernel for anything first.
    watched: ClassVar[bool] = False
    name: str = "interrupt_kernel"
    description: str = (
        "Interrupt whatever the kernel is running (a runaway cell). The person's running cell "
        "is interrupted too, so use it only when something hangs."
    )
    args_schema: type[BaseModel] = _NoArgs

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("interrupt")

    def _content(self, args: dict[str, Any], result: Any) -> str:
        return "interrupt sent"
