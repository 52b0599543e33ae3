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
from typing import Annotated, Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from . import guards
from ._text import short_repr, truncate
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
    CellsRead,
    Change,
    CreateCell,
    DeleteCell,
    EditCell,
    MoveCell,
    ReplaceInCell,
    RunCell,
    one_reference,
    untrusted,
)
from .notebook import AsyncNotebook, Notebook
from .presence import Presence, parse_presence
from .schemas import Hidden, ToolArguments

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
    batch_chars: int = 24_000
    """Characters of one `read_cell(cells=[...])` result: short cells whole, long ones in part."""


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
        """`execute_code` reads the server's own copy of the notebook and the file's digest
        before and after the code (the eval's audit wants it; see `Notebook.execute`)."""
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


ERROR_LIMIT = 16_000
"""Characters of an error message a tool returns at most (a shown code is 4,000)."""


def _bounded(exc: NotebookOperationError) -> NotebookOperationError:
    """The same error, its message cut to `ERROR_LIMIT` keeping its start and end."""
    text = str(exc)
    if len(text) > ERROR_LIMIT:
        exc.args = (
            truncate(
                text,
                ERROR_LIMIT,
                what="this error",
                hint="inspect_graph and get_errors show every cell",
            ),
            *exc.args[1:],
        )
    return exc


class NotebookTool(BaseTool):
    """Base of every tool: policy check → one notebook call → ledger → bounded text."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: PairSession = Field(exclude=True)
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool | str | Callable[..., str] | None = True
    guarded: ClassVar[bool] = False

    @property
    def tool_call_schema(self) -> Any:
        """The input model itself: its schema is the portable one (`schemas`), the same
        for every provider's converter, and it has no injected arguments to hide."""
        return self.args_schema

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
        oversized = guards.oversized_reference(self.name, args)
        if oversized is not None:
            raise GuardRefusedError(oversized, rule=guards.RULE_INVALID_ARGUMENTS)
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
                raise _bounded(GuardRefusedError(reason, rule=decision.rule))
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

    def _budget(self, args: dict[str, Any]) -> int:
        """Characters of text this call's result may have."""
        return self.session.limits.max_chars

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
                self._budget(args),
                what="this result",
                hint="the artifact has all of it; page or narrow the request",
            )
        return content, artifact

    def _failed(self, args: dict[str, Any], exc: NotebookOperationError) -> NotebookOperationError:
        """Learn from a refusal (its shown current code is a read); the message has the code.

        The message is bounded last: its sources bound what they list, and this catches
        what they miss (the ledger learned from the whole error first, but a shown code
        is at most `guards.SHOWN_CODE_LIMIT`, well inside the bound).
        """
        self.session.update_ledger(lambda ledger: learn_from_error(ledger, self.name, args, exc))
        return _bounded(exc)

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
    """Run the presence program; None when the kernel is busy (the call itself says so).

    Our own read-only program, not the agent's code: it runs outside the fence.
    """
    try:
        return execute(program, timeout=_PRESENCE_TIMEOUT, fence=False)
    except (KernelBusyError, ExecuteTimeoutError) as exc:
        logger.info("presence read skipped: %s", exc)
        return None


async def _aquietly(execute: Callable[..., Any], program: str) -> Any:
    try:
        return await execute(program, timeout=_PRESENCE_TIMEOUT, fence=False)
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
            problems.append(f"unknown argument {short_repr(where)}")
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
    visible = getattr(schema, "visible_fields", None)
    valid = ", ".join(visible()) if callable(visible) else ""
    shown = "; ".join(
        truncate(p, 300, what="this problem", hint="fix the others first")
        for p in problems[:_LISTED_PROBLEMS]
    )
    if len(problems) > _LISTED_PROBLEMS:
        shown += f"; and {len(problems) - _LISTED_PROBLEMS:,} more"
    return (
        f"{tool} was not called (nothing changed): its arguments do not fit the tool's "
        f"schema: {shown}."
        + (f" Valid arguments: {valid}." if valid else "")
        + " Fix the arguments and call it again."
    )


_LISTED_PROBLEMS = 10
"""Schema problems one refusal lists (a call may send thousands of unknown arguments)."""


# ----------------------------------------------------------------------------- inputs
# Every input model's schema is the portable one (`schemas.ToolArguments`): limits
# stated in a description are enforced here, by validation.

_CELL = "Cell id or name."
_ACK_TEXT = "Readers of names this removes, as listed to you."
_Ack = Annotated[
    list[str] | Hidden[StrictBool],
    BeforeValidator(one_reference),
    Field(description=_ACK_TEXT),
]


class _NoArgs(ToolArguments):
    pass


class ReadNotebookInput(ToolArguments):
    """Arguments of `read_notebook`."""

    offset: int = Field(default=0, ge=0, description="First cell, for paging.")
    limit: int | None = Field(
        default=None, ge=1, le=1000, description="Cells (default 60, max 1000)."
    )


class CellInput(ToolArguments):
    """A cell reference."""

    cell: str = Field(description=_CELL)


MAX_READ_CELLS = 50
"""Cells one `read_cell(cells=[...])` reads."""


class ReadCellInput(ToolArguments):
    """Arguments of `read_cell`: one cell (paged by ``offset``), or several."""

    cell: str | None = Field(default=None, description=_CELL)
    cells: list[str] | None = Field(
        default=None,
        max_length=MAX_READ_CELLS,
        description=f"Instead of cell: up to {MAX_READ_CELLS} cells in one call.",
    )
    offset: int = Field(default=0, ge=0, description="Character offset into a long cell.")

    @model_validator(mode="after")
    def _one_kind(self) -> ReadCellInput:
        if self.cell is None and self.cells is None:
            raise ValueError("`cell` is required: a cell id or name (or `cells`, a list)")
        if self.cell is not None and self.cells is not None:
            raise ValueError("give `cell` (one cell) or `cells` (a list), not both")
        if self.cells is not None and not self.cells:
            raise ValueError("`cells` is empty: name at least one cell")
        if self.cells is not None and self.offset:
            raise ValueError("`offset` pages one cell: use it with `cell`, not `cells`")
        return self


class InspectGraphInput(ToolArguments):
    """Arguments of `inspect_graph`."""

    cell: str | None = Field(default=None, description="Focus on this cell.")


class ExecuteCodeInput(ToolArguments):
    """Arguments of `execute_code`."""

    code: str = Field(description="Python; top-level await works.")
    timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds (default 30, at most 600)."
    )


class CreateCellInput(ToolArguments):
    """Arguments of `create_cell`."""

    code: str = Field(description="Cell body (not an @app.cell function).")
    after: str | None = Field(default=None, description="Place after this cell (default: last).")
    before: str | None = None
    run: bool = Field(default=True, description="Default true.")
    acknowledge_descendants: _Ack = Field(default_factory=list)
    name: Hidden[str | None] = Field(default=None, description="Cell name (an identifier).")

    @model_validator(mode="after")
    def _one_anchor(self) -> CreateCellInput:
        if self.before is not None and self.after is not None:
            raise ValueError("give `before` or `after`, not both")
        return self


class EditCellInput(ToolArguments):
    """Arguments of `edit_cell`: the full new code, or a find/replace."""

    cell: str = Field(description=_CELL)
    code: str | None = None
    old: str | None = Field(default=None, description="Instead of code: exact text.")
    new: str | None = None
    replace_all: bool = False
    run: bool = Field(default=True, description="Default true.")
    acknowledge_descendants: _Ack = Field(default_factory=list)
    expected_hash: Hidden[str | None] = Field(
        default=None, description="code_hash the edit is based on; filled from your read."
    )
    seen_ranges: Hidden[list[tuple[int, int]] | None] = Field(
        default=None, description="Filled from your reads of a long cell."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> EditCellInput:
        if (self.code is None) == (self.old is None):
            raise ValueError(
                "give either `code` (the complete new code) or `old` + `new` (replace a snippet)"
            )
        if self.old is not None and self.new is None:
            raise ValueError("`old` needs `new` (the replacement text)")
        return self


class DeleteCellInput(ToolArguments):
    """Arguments of `delete_cell`."""

    cell: str = Field(description=_CELL)
    acknowledge_descendants: _Ack = Field(default_factory=list)
    expected_descendants: Hidden[list[str] | None] = Field(
        default=None, description="Filled from your inspect_graph."
    )
    expected_hash: Hidden[str | None] = Field(
        default=None, description="Filled from your inspect_graph or read_cell."
    )


class MoveCellInput(ToolArguments):
    """Arguments of `move_cell`."""

    cell: str = Field(description=_CELL)
    before: str | None = Field(default=None, description="One of before/after: a cell.")
    after: str | None = None

    @model_validator(mode="after")
    def _one_anchor(self) -> MoveCellInput:
        if (self.before is None) == (self.after is None):
            raise ValueError("give exactly one of `before` or `after`")
        return self


_OPS = ("create", "edit", "replace", "delete", "move", "run")
_FIELDS_OF_OP = {
    "create": {"code", "before", "after", "name", "run", "hide_code", "acknowledge_descendants"},
    "edit": {"cell", "code", "run", "acknowledge_descendants", "expected_hash"},
    "replace": {
        "cell",
        "old",
        "new",
        "replace_all",
        "run",
        "acknowledge_descendants",
        "expected_hash",
        "seen_ranges",
    },
    "delete": {
        "cell",
        "acknowledge_descendants",
        "expected_hash",
        "expected_descendants",
        "read_hash",
    },
    "move": {"cell", "before", "after"},
    "run": {"cell"},
}
_CHANGE = TypeAdapter(Change)


class ChangeItem(ToolArguments):
    """One change of a batch; the fields that apply depend on `op`."""

    op: Literal["create", "edit", "replace", "delete", "move", "run"]
    cell: str | None = Field(default=None, description="Cell id, name, or '@N': change N's cell.")
    code: str | None = Field(default=None, description="create, edit: the code.")
    old: str | None = Field(default=None, description="replace: exact text.")
    new: str | None = Field(default=None, description="replace: new text.")
    replace_all: bool | None = None
    before: str | None = Field(default=None, description="create, move: anchor cell.")
    after: str | None = None
    run: bool | None = Field(default=None, description="Default true.")
    acknowledge_descendants: Annotated[
        list[str] | Hidden[StrictBool] | None,
        BeforeValidator(one_reference),
        Field(description=_ACK_TEXT),
    ] = None
    name: Hidden[str | None] = None
    hide_code: Hidden[bool | None] = None
    expected_hash: Hidden[str | None] = None
    expected_descendants: Hidden[list[str] | None] = None
    read_hash: Hidden[str | None] = None
    seen_ranges: Hidden[list[tuple[int, int]] | None] = None

    def given(self) -> dict[str, Any]:
        """The fields set, as the `Change` union takes them.

        An empty value ("", [], false) in a field the op does not take counts as left
        out, and so does an empty anchor: Gemini's converter drops the nullability of
        an array's item fields, so a Gemini model fills every field with something.
        """
        return _given(self.model_dump())


def _given(item: Mapping[str, Any]) -> dict[str, Any]:
    takes = _FIELDS_OF_OP.get(str(item.get("op")), set())
    out = {}
    for key, value in item.items():
        if value is None or (value in ("", [], False) and key not in takes):
            continue
        if value == "" and key in ("cell", "before", "after"):
            continue
        out[key] = value
    return out


def change_of(index: int, item: Mapping[str, Any], *, filled: bool = True) -> Change:
    """Change `index` of a batch as a typed `Change`, or an error the model can act on.

    ``filled=False`` checks a change before the toolkit filled in the hashes from the
    ledger (an edit's ``expected_hash``): only what the model itself must give.
    """
    op = item.get("op")
    if op not in _OPS:
        raise ValueError(f"change {index}: `op` must be one of {', '.join(_OPS)}, not {op!r}")
    stray = sorted(set(item) - _FIELDS_OF_OP[str(op)] - {"op"})
    if stray:
        verb = "does" if len(stray) == 1 else "do"
        takes = sorted(_FIELDS_OF_OP[str(op)] & set(ChangeItem.visible_fields()))
        raise ValueError(
            f"change {index} ({op}): {', '.join(stray)} {verb} not apply to {op}; "
            f"it takes {', '.join(takes)}"
        )
    if not filled and op == "edit" and not item.get("expected_hash"):
        item = {**item, "expected_hash": "(filled from your read)"}
    try:
        return _CHANGE.validate_python(dict(item))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = str(err["loc"][-1]) if len(err["loc"]) > 1 else ""
            message = str(err["msg"]).removeprefix("Value error, ")
            if where == "expected_hash" and err["type"] == "missing":
                problems.append(
                    f"read_cell({item.get('cell')!r}) first: an edit is based on your read"
                )
            elif err["type"] == "missing":
                problems.append(f"`{where}` is required")
            else:
                problems.append(f"{where}: {message}" if where else message)
        raise ValueError(f"change {index} ({op}): {'; '.join(problems)}") from None


MAX_CHANGES = 200
"""Changes one `apply_changes` batch may hold."""


class ApplyChangesInput(ToolArguments):
    """Arguments of `apply_changes`."""

    changes: list[ChangeItem] = Field(
        min_length=1,
        max_length=MAX_CHANGES,
        description=f"1 to {MAX_CHANGES}, applied in order.",
    )

    @model_validator(mode="after")
    def _typed(self) -> ApplyChangesInput:
        for index, item in enumerate(self.changes):
            change_of(index, item.given(), filled=False)
        return self

    def typed(self) -> list[Change]:
        """The batch as `Change` models, for `Notebook.apply`."""
        return [change_of(i, item.given()) for i, item in enumerate(self.changes)]


class PackagesInput(ToolArguments):
    """Arguments of `install_packages`."""

    add: list[str] = Field(default_factory=list, description="pip specs.")
    remove: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> PackagesInput:
        if not self.add and not self.remove:
            raise ValueError("name packages to add or remove")
        return self


UIValue = Annotated[
    str | int | float | bool | list[str | int | float | bool],
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
            ]
        }
    ),
]
"""What a `mo.ui` element takes: a scalar, or a list (multiselect, range slider)."""


class SetUIValueInput(ToolArguments):
    """Arguments of `set_ui_value`."""

    name: str = Field(description="Global variable holding the mo.ui element.")
    value: UIValue = Field(description="New value, of the element's type (a list: an array).")


class GetVariablesInput(ToolArguments):
    """Arguments of `get_variables`."""

    names: list[str] | None = Field(default=None, description="Only these (default all).")
    limit: int = Field(
        default=50, ge=1, le=500, description="At most this many (default 50, max 500)."
    )


# ------------------------------------------------------------------------------ tools


class ListNotebooksTool(NotebookTool):
    """`list_notebooks`."""

    name: str = "list_notebooks"
    description: str = "Which notebook you work on, and the others open on its server."
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
        "The cell map, in order: id, name, status, errors, defs/refs, code_hash, first line. "
        "Start here."
    )
    args_schema: type[BaseModel] = ReadNotebookInput

    def _operation(self, args: dict[str, Any]) -> _Op:
        limit = args.get("limit") or self.session.limits.cells_page
        return _Op("cells", (args.get("offset", 0), limit))


class ReadCellTool(NotebookTool):
    """`read_cell`."""

    name: str = guards.READ_CELL
    description: str = (
        "A cell's full code, code_hash, status, output (images attached), console and errors; "
        "several at once with `cells`."
    )
    args_schema: type[BaseModel] = ReadCellInput

    def _operation(self, args: dict[str, Any]) -> _Op:
        if args.get("cells") is not None:
            return _Op("read_cells", (list(args["cells"]),))
        return _Op("read_cell", (args["cell"],))

    def _budget(self, args: dict[str, Any]) -> int:
        limits = self.session.limits
        return limits.batch_chars if args.get("cells") is not None else limits.max_chars

    def _finish(self, args: dict[str, Any], result: Any) -> tuple[str | list[Any], Any]:
        # The window of code the model will see is what the ledger counts as read; the
        # rendering keeps it whole, so the window must fit the text budget with its header.
        if isinstance(result, CellsRead):
            return super()._finish(args, _fitted(result, self._budget(args)))
        limit = max(200, self.session.limits.max_chars * 3 // 4)
        return super()._finish(args, result.shown(args.get("offset") or 0, limit))

    def _content(self, args: dict[str, Any], result: CellDetail | CellsRead) -> str | list[Any]:
        if isinstance(result, CellsRead):
            return result.render(self._budget(args))
        text = result.render(max_chars=self.session.limits.max_chars)
        output = result.output
        if output is None:
            return text
        return self._with_image(text, output.image_base64, output.image_mimetype)


def _fitted(read: CellsRead, budget: int) -> CellsRead:
    """The batch with code windows whose rendering fits ``budget`` (never cut afterwards)."""
    target = budget
    for _ in range(8):
        shown = read.shown(target)
        over = len(shown.render(budget)) - budget
        if over <= 0:
            return shown
        target -= over + 100
    return read.shown(0)


class InspectGraphTool(NotebookTool):
    """`inspect_graph`."""

    name: str = guards.INSPECT_GRAPH
    description: str = (
        "The dataflow graph. With `cell`: its ancestors, and its "
        "descendants with the names each reads (call before delete_cell). Without: all edges, "
        "cycles, names defined twice."
    )
    args_schema: type[BaseModel] = InspectGraphInput

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("graph", (args.get("cell"),))


class ExecuteCodeTool(NotebookTool):
    """`execute_code`."""

    name: str = guards.EXECUTE_CODE
    description: str = (
        "Run Python in a scratchpad that sees the notebook's variables; returns stdout, "
        "stderr, last value. Nothing is saved."
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
        # Tools always judge a change by its effect on cells it does not touch, and only
        # in the document the agent's reads came from.
        kwargs = {"check_effects": True, "document": self.session.ledger.document}
        return _Op("apply", (self._changes(args),), kwargs)

    def _content(self, args: dict[str, Any], result: ApplyResult) -> str:
        return result.render(max_chars=self.session.limits.max_chars)


class CreateCellTool(_ChangeTool):
    """`create_cell`."""

    name: str = guards.CREATE_CELL
    description: str = "Add a cell and run it; returns its id, what ran and errors."
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
        "Change a cell you read: complete new `code`, or `old` + `new` to replace a snippet. "
        "If it changed since your read, nothing is applied and you get its current code."
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
        "Delete a cell, after inspect_graph(cell=...); acknowledge the descendants it listed. "
        "Returns the deleted code."
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
    description: str = "Move a cell before or after another (order only; nothing runs)."
    args_schema: type[BaseModel] = MoveCellInput

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        return [MoveCell(cell=args["cell"], before=args.get("before"), after=args.get("after"))]


class RunCellTool(_ChangeTool):
    """`run_cell`."""

    name: str = guards.RUN_CELL
    description: str = "Run a cell and its dependents; returns statuses, errors and printed output."
    args_schema: type[BaseModel] = CellInput

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        return [RunCell(cell=args["cell"])]


class ApplyChangesTool(_ChangeTool):
    """`apply_changes`."""

    name: str = guards.APPLY_CHANGES
    description: str = (
        "Several changes at once, in order; if one fails, none apply. Rules as for the single "
        "tools."
    )
    args_schema: type[BaseModel] = ApplyChangesInput
    guarded: ClassVar[bool] = True

    def _prepare(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        changes = [c.given() if isinstance(c, ChangeItem) else _given(c) for c in kwargs["changes"]]
        return super()._prepare({**kwargs, "changes": changes})

    def _changes(self, args: dict[str, Any]) -> list[Change]:
        try:
            return ApplyChangesInput.model_validate({"changes": args["changes"]}).typed()
        except ValueError as exc:  # an edit of a cell never read (the policy is off)
            reason = str(exc)
            raise GuardRefusedError(
                f"apply_changes was not applied: {reason}", rule=guards.RULE_READ_BEFORE_EDIT
            ) from None


class InstallPackagesTool(NotebookTool):
    """`install_packages`."""

    name: str = "install_packages"
    description: str = (
        "Add or remove packages with the notebook's package manager; says if a restart is needed."
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
    description: str = "Set a mo.ui element held by a global, as a person would; dependents re-run."
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
        "Every problem: cells that raised, syntax errors, names defined twice, cycles."
    )
    args_schema: type[BaseModel] = _NoArgs

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("errors")


class GetVariablesTool(NotebookTool):
    """`get_variables`."""

    name: str = "get_variables"
    description: str = "The notebook's variables: type, short repr, data frame shape and columns."
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
        "Interrupt what the kernel runs (the person's cell too); only when something hangs."
    )
    args_schema: type[BaseModel] = _NoArgs

    def _operation(self, args: dict[str, Any]) -> _Op:
        return _Op("interrupt")

    def _finish(self, args: dict[str, Any], result: Any) -> tuple[str | list[Any], Any]:
        # The server answers nothing; the artifact still says what was done.
        return super()._finish(args, {"interrupt_sent": True})

    def _content(self, args: dict[str, Any], result: Any) -> str:
        return "interrupt sent"
