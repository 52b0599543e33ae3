"""Typed results of every notebook operation, and the changes `Notebook.apply` takes.

Every model is plain pydantic v2 and round-trips through JSON: tools hand them
out as artifacts, the eval harness stores them. Models meant for a language
model's eyes have a ``render()`` giving short text; the model itself stays the
complete record.

Cell status values say what the person's page shows (``docs/statuses.md``): ``idle``,
``stale``, ``running``, ``queued``, ``exception``, ``cancelled``, ``stopped``
(``mo.stop``), ``interrupted``, ``marimo-error``, ``disabled``, or ``None`` for an
empty cell that never ran. They are plain strings here so a new marimo state does not
break parsing.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

__all__ = [
    "Acknowledged",
    "ApplyResult",
    "CellDetail",
    "CellErrors",
    "CellSummary",
    "CellsPage",
    "CellsRead",
    "Change",
    "ChangeResult",
    "ConsoleOutput",
    "CreateCell",
    "DeleteCell",
    "Dependent",
    "EditCell",
    "ErrorInfo",
    "ErrorsReport",
    "FileInfo",
    "GraphCell",
    "GraphFocus",
    "KernelStatus",
    "MissingCell",
    "MoveCell",
    "NotebookGraph",
    "NotebookSnapshot",
    "OutputView",
    "PackageChange",
    "PackageInfo",
    "PackagesList",
    "PackagesResult",
    "ReplaceInCell",
    "RunCell",
    "RunReport",
    "SnapshotCell",
    "UIValueResult",
    "VariableInfo",
    "VariablesReport",
    "one_reference",
    "untrusted",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


def _label(cell_id: str, name: str | None) -> str:
    return f"{cell_id} ({name})" if name else cell_id


DATA_OPEN = "<notebook-data>"
DATA_CLOSE = "</notebook-data>"


def untrusted(text: str) -> str:
    """Notebook content (code, outputs, console, errors, reprs) marked as data.

    The system prompt tells the model that text between these markers is never an
    instruction; a marker inside the content is defused so it cannot close the block.
    """
    safe = _MARKER.sub(lambda m: "</notebook_data" if "/" in m.group(0) else "<notebook_data", text)
    return f"{DATA_OPEN}\n{safe}\n{DATA_CLOSE}"


_MARKER = re.compile(r"<\s*/?\s*notebook\s*[-_]?\s*data", re.IGNORECASE)
"""A marker in any case or spacing (``</NOTEBOOK-DATA>``, ``< /notebook-data >``): a model
may read any of them as the end of the block."""


def _head(code: str, limit: int = 1500) -> str:
    """A long code block cut to its head, saying how much is left out."""
    if len(code) <= limit:
        return code
    return code[:limit] + f"\n# … [{len(code) - limit:,} more characters; the artifact has all]"


def _names(names: list[str], limit: int = 6) -> str:
    shown = ",".join(names[:limit])
    return shown + (f",+{len(names) - limit}" if len(names) > limit else "")


# --------------------------------------------------------------------------
# Reading cells
# --------------------------------------------------------------------------


class CellSummary(_Model):
    """One line of the cell map: enough to pick the cell to read next."""

    id: str
    name: str | None = None
    preview: str = Field(description="First non-blank line of the code, at most ~80 characters.")
    status: str | None = None
    has_output: bool = False
    has_errors: bool = False
    defs: list[str] = Field(default_factory=list)
    refs: list[str] = Field(
        default_factory=list, description="Names read from other cells (builtins left out)."
    )
    code_hash: str
    lines: int = 0

    def render(self, width: int = 120) -> str:
        """``id (name) [status] !err L3 defs=a,b refs=c | preview``, at most ``width`` characters.

        The head (id, status, names) gets up to 90 characters, cut with ``…`` when a
        cell defines many or long names; the preview fills the rest (at least 20).
        """
        flags = (" !err" if self.has_errors else "") + (" +out" if self.has_output else "")
        deps = (f" defs={_names(self.defs)}" if self.defs else "") + (
            f" refs={_names(self.refs)}" if self.refs else ""
        )
        head = f"{_label(self.id, self.name)} [{self.status or 'empty'}]{flags} L{self.lines}{deps}"
        head_room = width - 3 - 20
        if len(head) > head_room:
            head = head[: head_room - 1] + "…"
        room = width - len(head) - 3
        preview = self.preview if len(self.preview) <= room else self.preview[: room - 1] + "…"
        return f"{head} | {preview}"


class CellsPage(_Model):
    """A window over the cells in notebook order."""

    cells: list[CellSummary]
    total: int
    offset: int = 0
    notebook_version: str
    document: str | None = None
    """Which kernel and file this describes; a new one means a new document."""

    def render(self) -> str:
        """The cell map as text, one line per cell, with paging hints."""
        end = self.offset + len(self.cells)
        lines = [
            f"{self.total} cells (showing {self.offset + 1 if self.cells else 0}-{end}); "
            f"notebook_version {self.notebook_version}"
        ]
        if self.cells:
            lines.append(untrusted("\n".join(cell.render() for cell in self.cells)))
        if end < self.total:
            lines.append(f"… {self.total - end} more cells: call again with offset={end}.")
        return "\n".join(lines)


class ErrorInfo(_Model):
    """One error of a cell."""

    kind: str = Field(
        description="'runtime' (raised, a failing mo.sql included), 'graph' (multiply-defined, "
        "cycle, …) or 'syntax'; in an output's errors, 'marimo' (its own error) or 'note' (why "
        "the cell did not run: an ancestor raised or was stopped, an interrupt)."
    )
    message: str
    exception_type: str | None = None
    traceback: str | None = None

    def text(self, traceback_chars: int = 2000) -> str:
        """The exception line first, then the end of the traceback (plain text)."""
        if not self.traceback:
            return self.message
        tb = self.traceback.rstrip("\n")
        if len(tb) > traceback_chars:
            tb = f"… [{len(tb) - traceback_chars:,} characters cut] …\n" + tb[-traceback_chars:]
        return f"{self.message}\n{tb}"


class ConsoleOutput(_Model):
    """Consecutive console output of one channel (stdout, stderr, …)."""

    channel: str
    mimetype: str = "text/plain"
    text: str


class OutputView(_Model):
    """A cell's main output, made readable: text for text, base64 bytes for images."""

    mimetype: str
    text: str | None = None
    image_base64: str | None = None
    image_mimetype: str | None = None
    size: int = 0
    omitted: bool = Field(
        default=False, description="Too large to transfer; view it in the browser."
    )
    errors: list[ErrorInfo] = Field(default_factory=list)

    def image_bytes(self) -> bytes | None:
        """The decoded image (PNG for matplotlib figures), if the output is one."""
        if self.image_base64 is None:
            return None
        try:
            return base64.b64decode(self.image_base64, validate=False)
        except (binascii.Error, ValueError):
            return None


class CellDetail(_Model):
    """Everything about one cell: what `read_cell` returns."""

    id: str
    name: str | None = None
    code: str
    code_hash: str
    kernel_code: str | None = None
    """The code the kernel last ran, when it differs from `code`: a person's run whose text
    is still reaching the notebook (their newest version), or an edit not yet run."""
    status: str | None = None
    hide_code: bool = False
    disabled: bool = False
    defs: list[str] = Field(default_factory=list)
    refs: list[str] = Field(default_factory=list)
    syntax_error: str | None = None
    output: OutputView | None = None
    console: list[ConsoleOutput] = Field(default_factory=list)
    errors: list[ErrorInfo] = Field(default_factory=list)
    notebook_version: str
    document: str | None = None
    """Which kernel and file this describes; a new one means a new document."""
    code_shown: list[int] | None = None
    """``[start, end)`` of `code` a rendering showed (set by `read_cell`); None: all of it."""

    def shown(self, offset: int = 0, limit: int | None = None) -> CellDetail:
        """This cell with the window of its code a rendering will show."""
        start = max(0, min(offset, len(self.code)))
        end = len(self.code) if limit is None else min(len(self.code), start + limit)
        return self.model_copy(update={"code_shown": [start, end]})

    def render(self, max_chars: int = 6000) -> str:
        """Code, status, output and errors as text (images are only announced).

        The code window (`code_shown`) is never cut here: what the ledger counts as read
        is exactly what the text shows. Everything else shares what is left of
        ``max_chars``, after the code.
        """
        start, end = self.code_shown or (0, len(self.code))
        code = self.code[start:end]
        if (start, end) != (0, len(self.code)):
            more = f"; next: read_cell(offset={end})" if end < len(self.code) else ""
            code = (
                f"# characters {start:,}–{end:,} of {len(self.code):,} (a part: only what "
                f"is shown counts as read{more})\n{code}"
            )
        label = f"cell {_label(self.id, self.name)} [{self.status or 'empty'}] code_hash {self.code_hash}"
        names = f"defs: {_names(self.defs, 30) or '-'}; refs: {_names(self.refs, 30) or '-'}"
        head = f"{label}\n{names[: max(80, max_chars // 20)]}\n" + untrusted(
            f"```python\n{code}\n```"
        )
        parts = []
        if self.kernel_code is not None:
            parts.append(
                "The kernel last ran different code (if a person just ran this cell, this is "
                "their newest version and the text above catches up within seconds: read again "
                "before editing):\n```python\n" + self.kernel_code + "\n```"
            )
        if self.syntax_error:
            parts.append(f"SyntaxError: {self.syntax_error}")
        # Errors before output and console: a long output must not push them out of the cut.
        parts += [f"error ({error.kind}): {error.text()}" for error in self.errors]
        if self.output is not None:
            # Why a cell did not run (an ancestor failed or stopped, an interrupt).
            parts += [
                f"marimo shows: {note.message.split(': ', 1)[-1]}"
                for note in self.output.errors
                if note.kind == "note"
            ]
        if self.output is not None:
            out = self.output
            if out.image_base64:
                parts.append(f"output: image ({out.image_mimetype}, {out.size:,} characters)")
            if out.text:
                parts.append(f"output ({out.mimetype}):\n{out.text}")
            if out.omitted:
                parts.append(f"output: {out.mimetype}, {out.size:,} characters, too large to show")
        for console in self.console:
            if console.mimetype != "application/vnd.marimo+traceback":
                parts.append(f"{console.channel}:\n{console.text}")
        rest = "\n".join(parts)
        room = max(0, max_chars - len(head) - 1 - len(DATA_OPEN) - len(DATA_CLOSE) - 2)
        if len(rest) > room:
            marker = f"\n… [{len(rest) - room:,} characters cut; the artifact has all]"
            rest = rest[: max(0, room - len(marker))] + marker
        return f"{head}\n{untrusted(rest)}" if rest else head


class MissingCell(_Model):
    """A cell a batched read could not read (unknown or ambiguous reference)."""

    cell: str
    message: str


_CELL_HEAD = 300
"""Characters of a rendered cell besides its code (label, names, fences), at most."""


class CellsRead(_Model):
    """Several cells read in one call: what `read_cell(cells=[...])` returns."""

    cells: list[CellDetail]
    missing: list[MissingCell] = Field(default_factory=list)
    notebook_version: str
    document: str | None = None

    def shown(self, budget: int) -> CellsRead:
        """These cells with the code windows that fit ``budget`` characters of text.

        Short cells are shown whole; what is left is shared among the long ones,
        each shown from its start (a part: paged with ``read_cell(cell, offset)``).
        """
        count = max(1, len(self.cells))
        room = budget - count * (_CELL_HEAD + _extra(budget, count)) - 200 * len(self.missing)
        windows = _fill([len(c.code) for c in self.cells], max(0, room))
        return self.model_copy(
            update={"cells": [c.shown(0, w) for c, w in zip(self.cells, windows, strict=True)]}
        )

    def render(self, max_chars: int = 24_000) -> str:
        """Each cell as `CellDetail.render` shows it (its code window whole), then the misses."""
        count = max(1, len(self.cells))
        parts = [f"{len(self.cells)} cell(s); notebook_version {self.notebook_version}"]
        for cell in self.cells:
            start, end = cell.code_shown or (0, len(cell.code))
            parts.append(cell.render(max_chars=end - start + _CELL_HEAD + _extra(max_chars, count)))
        parts.extend(f"not read: {m.cell!r}: {m.message}" for m in self.missing)
        return "\n\n".join(parts)


def _extra(budget: int, count: int) -> int:
    """Characters of output and errors per cell of a batched read."""
    return min(1_500, budget // 4 // count)


def _fill(lengths: list[int], room: int) -> list[int]:
    """Windows no longer than each length, summing to at most ``room``, shortest first."""
    windows = [0] * len(lengths)
    left = room
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for rank, i in enumerate(order):
        windows[i] = min(lengths[i], left // (len(order) - rank))
        left -= windows[i]
    return windows


# --------------------------------------------------------------------------
# Graph
# --------------------------------------------------------------------------


class GraphCell(_Model):
    """One cell in the dataflow graph (computed from code, run or not)."""

    id: str
    name: str | None = None
    defs: list[str] = Field(default_factory=list)
    refs: list[str] = Field(default_factory=list)
    parents: list[str] = Field(default_factory=list)
    children: list[str] = Field(default_factory=list)
    syntax_error: str | None = None


class Dependent(_Model):
    """A descendant of the focus cell and which of its names it reads directly."""

    id: str
    name: str | None = None
    uses: list[str] = Field(
        default_factory=list,
        description="Names of the focus cell it reads; empty if only indirect.",
    )
    direct: bool = False


class GraphFocus(_Model):
    """One cell's place in the graph: what a delete would break."""

    cell_id: str
    name: str | None = None
    code_hash: str | None = None
    """The inspected cell's code hash: a delete is a compare-and-swap on it."""
    defs: list[str] = Field(default_factory=list)
    ancestors: list[str] = Field(default_factory=list)
    descendants: list[str] = Field(default_factory=list)
    dependents: list[Dependent] = Field(default_factory=list)


class NotebookGraph(_Model):
    """The static dataflow graph of the whole notebook."""

    cells: list[GraphCell]
    cycles: list[list[str]] = Field(default_factory=list)
    multiply_defined: dict[str, list[str]] = Field(default_factory=dict)
    focus: GraphFocus | None = None
    notebook_version: str
    document: str | None = None
    """Which kernel and file this describes; a new one means a new document."""

    def _edges(self, attr: Literal["parents", "children"]) -> dict[str, list[str]]:
        return {cell.id: getattr(cell, attr) for cell in self.cells}

    def _closure(self, cell_id: str, attr: Literal["parents", "children"]) -> list[str]:
        edges = self._edges(attr)
        seen: set[str] = set()
        todo = list(edges.get(cell_id, []))
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, []))
        seen.discard(cell_id)
        return [cell.id for cell in self.cells if cell.id in seen]

    def ancestors(self, cell_id: str) -> list[str]:
        """Every cell ``cell_id`` depends on, in notebook order."""
        return self._closure(cell_id, "parents")

    def descendants(self, cell_id: str) -> list[str]:
        """Every cell that depends on ``cell_id``, in notebook order."""
        return self._closure(cell_id, "children")

    @property
    def syntax_errors(self) -> dict[str, str]:
        """Cell id → syntax error, for cells whose code does not parse."""
        return {cell.id: cell.syntax_error for cell in self.cells if cell.syntax_error}

    def render(self, max_lines: int = 200) -> str:
        """Edges, problems and (if set) the focus cell's dependents as text."""
        lines = [f"graph of {len(self.cells)} cells; notebook_version {self.notebook_version}"]
        if self.focus is not None:
            focus = self.focus
            lines.append(
                f"focus {_label(focus.cell_id, focus.name)} defines {', '.join(focus.defs) or '-'}; "
                f"ancestors: {', '.join(focus.ancestors) or 'none'}"
            )
            if not focus.dependents:
                lines.append("no descendants: deleting it breaks no other cell")
            for dep in focus.dependents:
                how = f"reads {', '.join(dep.uses)}" if dep.uses else "indirectly"
                lines.append(f"  descendant {_label(dep.id, dep.name)} {how}")
        else:
            shown = [c for c in self.cells if c.parents or c.children or c.syntax_error]
            for cell in shown[:max_lines]:
                lines.append(
                    f"{_label(cell.id, cell.name)} <- {','.join(cell.parents) or '-'}"
                    f" -> {','.join(cell.children) or '-'}"
                    + (f" SYNTAX {cell.syntax_error}" if cell.syntax_error else "")
                )
            if len(shown) > max_lines:
                lines.append(f"… {len(shown) - max_lines} more cells with edges")
        for name, ids in self.multiply_defined.items():
            lines.append(f"multiply defined: {name!r} in {', '.join(ids)}")
        for cycle in self.cycles:
            lines.append(f"cycle: {' <-> '.join(cycle)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------
# Changes
# --------------------------------------------------------------------------

_CELL_REF = "A cell id, a cell name, or '@N' for the cell created by change N of this batch."
_ACK = (
    "Cells this change may break or change (readers of names it deletes, empties, renames "
    "or newly defines), as inspect_graph or a refusal listed them; true for all inspected."
)


class _ChangeModel(BaseModel):
    # A field the model invents (`dry_run`) is refused, never silently ignored.
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Placed(_ChangeModel):
    before: str | None = Field(default=None, description=f"Place before this cell. {_CELL_REF}")
    after: str | None = Field(default=None, description=f"Place after this cell. {_CELL_REF}")

    @model_validator(mode="after")
    def _one_anchor(self) -> _Placed:
        if self.before is not None and self.after is not None:
            raise ValueError("give `before` or `after`, not both")
        return self


def one_reference(value: Any) -> Any:
    """A lone string is one cell reference, never a boolean: ``"y"`` (a reader named y)
    once read as ``True`` and acknowledged every descendant."""
    return [value] if isinstance(value, str) else value


Acknowledged = Annotated[list[str] | StrictBool, BeforeValidator(one_reference)]
"""``acknowledge_descendants``: the readers acknowledged, or ``true`` (JSON) for all listed."""


class CreateCell(_Placed):
    """Add a cell (appended at the end unless placed)."""

    op: Literal["create"] = "create"
    code: str
    name: str | None = Field(default=None, description="Optional unique identifier-like name.")
    hide_code: bool = Field(default=False, description="Shown by default so the person sees it.")
    run: bool = True
    acknowledge_descendants: Acknowledged = Field(default_factory=list, description=_ACK)


class EditCell(_ChangeModel):
    """Replace a cell's whole code, if it still has the code that was read."""

    op: Literal["edit"] = "edit"
    cell: str = Field(description=_CELL_REF)
    code: str
    expected_hash: str = Field(description="code_hash of the code this edit was based on.")
    run: bool = True
    acknowledge_descendants: Acknowledged = Field(default_factory=list, description=_ACK)


class ReplaceInCell(_ChangeModel):
    """Find/replace inside a cell's current code (done in the kernel)."""

    op: Literal["replace"] = "replace"
    cell: str = Field(description=_CELL_REF)
    old: str = Field(
        min_length=1, description="Exact text to find; must match once unless replace_all."
    )
    new: str
    replace_all: bool = False
    expected_hash: str | None = None
    run: bool = True
    acknowledge_descendants: Acknowledged = Field(default_factory=list, description=_ACK)
    seen_ranges: list[tuple[int, int]] | None = Field(
        default=None,
        description="Filled from your reads when you saw only parts of the cell: the match "
        "must lie inside them.",
    )


class DeleteCell(_ChangeModel):
    """Remove a cell, if no cell beyond those that were checked depends on it."""

    op: Literal["delete"] = "delete"
    cell: str = Field(description=_CELL_REF)
    expected_hash: str | None = Field(
        default=None,
        description="code_hash of the code that was read or inspected (filled from your "
        "inspect_graph when omitted); if the cell changed since, nothing is deleted.",
    )
    expected_descendants: list[str] | None = Field(
        default=None,
        description="Descendant cell ids inspect_graph showed (filled from your inspect_graph "
        "when omitted). If other cells depend on the cell by now, nothing is deleted.",
    )
    acknowledge_descendants: Acknowledged = Field(default_factory=list, description=_ACK)
    read_hash: str | None = Field(
        default=None,
        description="Filled from your read_cell: a batch that re-creates the names of a cell "
        "it deletes is an edit of that cell, so its code must have been read.",
    )


class MoveCell(_Placed):
    """Move a cell next to another (order only; nothing runs)."""

    op: Literal["move"] = "move"
    cell: str = Field(description=_CELL_REF)

    @model_validator(mode="after")
    def _needs_anchor(self) -> MoveCell:
        if self.before is None and self.after is None:
            raise ValueError("a move needs `before` or `after`")
        return self


class RunCell(_ChangeModel):
    """Run a cell (and, in autorun mode, its descendants)."""

    op: Literal["run"] = "run"
    cell: str = Field(description=_CELL_REF)


Change = Annotated[
    CreateCell | EditCell | ReplaceInCell | DeleteCell | MoveCell | RunCell,
    Field(discriminator="op"),
]
"""One change of an `apply` batch, discriminated by ``op``."""


class RunReport(_Model):
    """A cell that ran because of a change (explicitly or reactively)."""

    cell_id: str
    name: str | None = None
    status: str | None = None
    errors: list[ErrorInfo] = Field(default_factory=list)
    explicit: bool = False
    has_output: bool | None = None


class ChangeResult(_Model):
    """What happened to one change of the batch, checked against the notebook afterwards."""

    index: int
    op: str
    cell_id: str | None = None
    name: str | None = None
    action: str = Field(
        description="created / edited / replaced / unchanged / deleted / moved / ran"
    )
    code_hash: str | None = Field(
        default=None, description="Hash of the code now stored (use it for the next edit)."
    )
    formatted: bool = Field(default=False, description="marimo reformatted the code on save.")
    length: int | None = Field(default=None, description="Characters of the code now stored.")
    diff: str | None = None
    deleted_code: str | None = None
    defined_names: list[str] = Field(
        default_factory=list, description="For deletes: names the cell defined."
    )
    dependents: list[str] = Field(
        default_factory=list, description="For deletes: cells that read names now gone."
    )
    verified: bool = False
    problem: str | None = None


class ApplyResult(_Model):
    """The outcome of one atomic batch."""

    changes: list[ChangeResult]
    saved: bool | None = None
    """The notebook file holds the batch (read back and compared); None: no file to check."""
    save_problem: str | None = None
    ran: list[RunReport] = Field(default_factory=list)
    order_ok: bool = True
    order: list[str] = Field(
        default_factory=list, description="Cell ids in notebook order afterwards."
    )
    notebook_version: str
    document: str | None = None
    """Which kernel and file this describes; a new one means a new document."""
    console: str = Field(default="", description="What cells printed while they ran (bounded).")
    fresh_check: bool = Field(
        default=False, description="Re-read from the session in a second request."
    )
    timings: dict[str, float] = Field(
        default_factory=dict, description="Kernel-side milliseconds: check, apply (marimo), report."
    )

    @property
    def verified(self) -> bool:
        """Whether every change was found in the notebook as requested."""
        return self.order_ok and all(change.verified for change in self.changes)

    @property
    def failed_cells(self) -> list[RunReport]:
        """Cells that ran and now have errors."""
        return [report for report in self.ran if report.errors]

    def render(self, max_chars: int = 4000) -> str:
        """One line per change, then run results and errors."""
        lines = []
        for ch in self.changes:
            line = f"#{ch.index} {ch.action} {_label(ch.cell_id or '?', ch.name)}"
            if ch.code_hash:
                line += f" code_hash {ch.code_hash}"
            if ch.formatted:
                line += " (reformatted by marimo)"
            if ch.op == "delete" and ch.dependents:
                line += f"; cells reading its names now fail: {', '.join(ch.dependents)}"
            if not ch.verified:
                line += f"; NOT VERIFIED: {ch.problem}"
            lines.append(line)
            if ch.diff:
                lines.append(untrusted(ch.diff.rstrip("\n")))
            if ch.op == "delete" and ch.deleted_code is not None:
                # What was deleted, so the model knows what it removed and can restore it.
                lines.append(
                    f"  it defined: {', '.join(ch.defined_names) or 'nothing'}; its code "
                    "(restore with create_cell):\n"
                    + untrusted(f"```python\n{_head(ch.deleted_code)}\n```")
                )
        for report in self.ran:
            how = "ran" if report.explicit else "re-ran"
            lines.append(f"{how} {_label(report.cell_id, report.name)}: {report.status}")
            for error in report.errors:
                lines.append(f"  {error.kind} error:\n" + untrusted(error.text()))
        if self.console.strip():
            lines.append("console:\n" + untrusted(self.console.rstrip()))
        if self.saved:
            lines.append("saved: the notebook file holds this change")
        lines.append(f"notebook_version {self.notebook_version}")
        text = "\n".join(lines)
        if len(text) > max_chars:
            text = text[:max_chars] + f"\n… [{len(text) - max_chars:,} characters cut]"
        return text


# --------------------------------------------------------------------------
# Errors, variables, status
# --------------------------------------------------------------------------


class CellErrors(_Model):
    """The errors of one cell."""

    cell_id: str
    name: str | None = None
    status: str | None = None
    errors: list[ErrorInfo]


class ErrorsReport(_Model):
    """Every problem in the notebook: runtime, graph and static."""

    cells: list[CellErrors] = Field(default_factory=list)
    cycles: list[list[str]] = Field(default_factory=list)
    multiply_defined: dict[str, list[str]] = Field(default_factory=dict)
    notebook_version: str
    document: str | None = None
    """Which kernel and file this describes; a new one means a new document."""

    @property
    def clean(self) -> bool:
        """True when no cell has an error and the graph is sound."""
        return not (self.cells or self.cycles or self.multiply_defined)

    def render(self, max_chars: int = 6000) -> str:
        """Each failing cell with its error, then graph problems."""
        if self.clean:
            return f"no errors; notebook_version {self.notebook_version}"
        lines = []
        for cell in self.cells:
            for error in cell.errors:
                lines.append(
                    f"{_label(cell.cell_id, cell.name)} [{cell.status}] {error.kind}:\n"
                    + untrusted(error.text())
                )
        lines += [
            f"multiply defined: {n!r} in {', '.join(ids)}"
            for n, ids in self.multiply_defined.items()
        ]
        lines += [f"cycle: {' <-> '.join(cycle)}" for cycle in self.cycles]
        text = "\n".join(lines)
        if len(text) > max_chars:
            text = text[:max_chars] + f"\n… [{len(text) - max_chars:,} characters cut]"
        return text


class VariableInfo(_Model):
    """One kernel variable, described briefly."""

    name: str
    type: str | None = None
    repr: str | None = None
    defined_by: str | None = None
    shape: list[int] | None = None
    columns: list[str] | None = None
    length: int | None = None


class VariablesReport(_Model):
    """A bounded list of kernel variables."""

    variables: list[VariableInfo]
    total: int
    missing: list[str] = Field(default_factory=list)
    truncated: bool = False
    document: str | None = None

    def render(self) -> str:
        """One line per variable."""
        lines = []
        for var in self.variables:
            extra = f" shape={tuple(var.shape)}" if var.shape is not None else ""
            if var.columns is not None:
                extra += f" columns={_names(var.columns, 12)}"
            shown = " ⏎ ".join((var.repr or "").splitlines())
            shown = shown if len(shown) <= 160 else shown[:159] + "…"
            # The type's name and the columns come from the notebook too (any string).
            lines.append(f"{var.name}: " + untrusted(f"{var.type}{extra} = {shown}"))
        if self.truncated:
            lines.append(
                f"… {self.total - len(self.variables)} more; ask for names=[...] or a higher limit"
            )
        if self.missing:
            lines.append(f"not defined in the kernel: {', '.join(self.missing)}")
        return "\n".join(lines) or "no variables"


class KernelStatus(_Model):
    """What the kernel is doing, as seen by a request it answered."""

    state: Literal["idle", "running"]
    counts: dict[str, int] = Field(default_factory=dict)
    running: list[str] = Field(default_factory=list)
    queued: list[str] = Field(default_factory=list)
    cell_count: int = 0
    notebook_version: str
    document: str | None = None
    """Which kernel and file this describes; a new one means a new document."""


class UIValueResult(_Model):
    """The outcome of setting a UI element's value."""

    name: str
    element_type: str
    requested: Any = None
    before: Any = None
    value: Any = None
    took: bool = Field(description="The element now reports the requested value.")
    ran: list[RunReport] = Field(default_factory=list)


# --------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------


class PackageInfo(_Model):
    """An installed package."""

    name: str
    version: str


class PackagesList(_Model):
    """The kernel environment's packages."""

    manager: str | None = None
    packages: list[PackageInfo]


class PackageChange(_Model):
    """One install or removal."""

    package: str
    action: Literal["add", "remove"]
    outcome: Literal["success", "failed", "restart-required"]


class PackagesResult(_Model):
    """Outcomes of an install/remove request."""

    manager: str | None = None
    results: list[PackageChange]
    restart_required: bool = Field(
        description="The change is saved but needs a kernel restart to take effect."
    )
    manager_missing: bool = False

    @property
    def ok(self) -> bool:
        """No package failed."""
        return all(r.outcome != "failed" for r in self.results) and not self.manager_missing


# --------------------------------------------------------------------------
# Snapshot
# --------------------------------------------------------------------------


class SnapshotCell(_Model):
    """A cell with its full code."""

    id: str
    name: str | None = None
    code: str
    code_hash: str
    status: str | None = None
    hide_code: bool = False
    disabled: bool = False


class FileInfo(_Model):
    """The notebook file on disk, as the kernel read it."""

    path: str
    sha256: str
    size: int


class NotebookSnapshot(_Model):
    """The whole notebook state at one moment (eval before/after, audits)."""

    cells: list[SnapshotCell]
    graph: NotebookGraph
    errors: ErrorsReport
    file: FileInfo | None = None
    notebook_version: str
    document: str | None = None
    """Which kernel and file this describes; a new one means a new document."""
    marimo_version: str | None = None
