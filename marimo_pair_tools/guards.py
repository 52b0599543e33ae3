"""The pairing policy: what the agent must have seen before it may change a cell.

One pure policy, no I/O, used in three places: the toolkit's tools on their own,
the prebuilt agent's guard node, and a `create_agent` middleware. All three keep
a `Ledger` of what the agent has seen and ask `check` before a call runs:

- **read before edit**: an edit of a cell the agent never read is refused, and
  so is an edit whose `expected_hash` is not the hash the agent read. The
  kernel then applies the edit only if the cell still has that code
  (compare-and-swap), so a person's concurrent change is never overwritten.
- **inspect before delete**: a delete is refused unless the agent inspected the
  cell's descendants at the notebook version it is looking at now; a cell whose
  descendants would lose names needs them acknowledged, and, if configured, a
  person's approval.

Why a ledger of hashes and versions rather than a log of tool calls: "the agent
called read_cell" says nothing about *which* code it saw. A read counts for the
code hash it returned; a descendant check counts for the notebook version it
was made at. When newer facts arrive (a listing with another hash, a new
version after any edit), the older ones stop counting without anyone having to
remember to clear them.

What counts as a read: only a result that showed the agent a cell's full code
(`read_cell`, or a stale-edit error that carries the current code, recorded
with `record_read`). The compact cell map (`read_notebook`, `record_cells`) shows
ids, names and hashes but not the code, so it does not count: editing what one
has not read is how a person's work gets overwritten. The map does teach the
ledger that a cell changed or disappeared, which invalidates an older read.

The `Ledger` is an immutable, JSON-serialisable pydantic model, so it can live
in LangGraph state and survive checkpoints; `merge_ledgers` is its reducer
(``ledger: Annotated[Ledger, merge_ledgers]``), correct also when parallel tool
calls return ledgers derived from the same state (see `merge_ledgers`).

Tool names, argument names and rule names are defined here and nowhere else;
this module imports nothing from the package, so the tools can import them.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "APPLY_CHANGES",
    "CHANGE_OPS",
    "CREATE_CELL",
    "DELETE_CELL",
    "DOCUMENT_CHANGED",
    "EDIT_CELL",
    "EXECUTE_CODE",
    "GUARDED_TOOLS",
    "INSPECT_GRAPH",
    "LIST_CELLS",
    "MOVE_CELL",
    "OP_CREATE",
    "OP_DELETE",
    "OP_EDIT",
    "OP_MOVE",
    "OP_REPLACE",
    "OP_RUN",
    "READ_CELL",
    "RULE_ACKNOWLEDGE_DESCENDANTS",
    "RULE_APPROVE_DELETE",
    "RULE_DESCENDANT_CHECK",
    "RULE_INVALID_ARGUMENTS",
    "RULE_READ_BEFORE_EDIT",
    "RULE_SCRATCHPAD_EDIT",
    "RULE_STALE_READ",
    "RUN_CELL",
    "Decision",
    "DescendantCheck",
    "GuardEvent",
    "Ledger",
    "PartialRead",
    "Policy",
    "check",
    "check_and_record",
    "merge_ledgers",
    "reaches_internals",
    "read_hash",
    "record_cells",
    "record_decision",
    "record_delete",
    "record_document",
    "record_graph",
    "record_read",
    "record_tool_error",
    "record_tool_result",
    "record_version",
    "record_write",
    "resolve_cell",
    "seen_hash",
    "with_read_hashes",
]

# Tool names: the tools module takes its names from here, so the policy and the
# tools cannot drift apart.
LIST_CELLS = "read_notebook"
READ_CELL = "read_cell"
INSPECT_GRAPH = "inspect_graph"
CREATE_CELL = "create_cell"
EDIT_CELL = "edit_cell"
DELETE_CELL = "delete_cell"
MOVE_CELL = "move_cell"
RUN_CELL = "run_cell"
APPLY_CHANGES = "apply_changes"
EXECUTE_CODE = "execute_code"
GUARDED_TOOLS = frozenset({EDIT_CELL, DELETE_CELL, APPLY_CHANGES, EXECUTE_CODE})
"""The tools `check` can refuse; every other tool is allowed."""

# `op` values of an `apply_changes` change. "edit" replaces the whole code,
# "replace" is a find/replace inside it: both change code the agent must have read.
OP_CREATE = "create"
OP_EDIT = "edit"
OP_REPLACE = "replace"
OP_DELETE = "delete"
OP_MOVE = "move"
OP_RUN = "run"
CHANGE_OPS = frozenset({OP_CREATE, OP_EDIT, OP_REPLACE, OP_DELETE, OP_MOVE, OP_RUN})

# Rules, as they appear in `Decision.rule` and `GuardEvent.rule`.
RULE_READ_BEFORE_EDIT = "read_before_edit"
RULE_STALE_READ = "stale_read"
RULE_DESCENDANT_CHECK = "descendant_check"
RULE_ACKNOWLEDGE_DESCENDANTS = "acknowledge_descendants"
RULE_APPROVE_DELETE = "approve_delete"
RULE_INVALID_ARGUMENTS = "invalid_arguments"
RULE_SCRATCHPAD_EDIT = "scratchpad_edit"

# Scratchpad code that reaches these changes the notebook past every rule above.
# A guardrail against an agent taking the shortcut, not a sandbox: the scratchpad
# runs arbitrary Python in the kernel.
_NOTEBOOK_WRITERS = re.compile(
    r"^marimo\.(_code_mode|_runtime|_messaging|_server|_session|_ast\.cell_manager)"
    r"|^_marimo_pair_kernel"
)

_EDIT_OPS = frozenset({OP_EDIT, OP_REPLACE})
SHOWN_CODE_LIMIT = 4000
LISTED_CELLS = 20
MAX_REFERENCE_CHARS = 256
"""Longest cell or variable reference a call may send: ids are 4 characters and names are
Python identifiers, so a longer one names nothing, and echoing it would flood the reply."""
_REFERENCE_KEYS = frozenset(
    {"cell", "cells", "before", "after", "acknowledge_descendants", "name", "names", "changes"}
)
"""At most this many cells are named in a refusal; the rest are counted."""
"""Characters of a cell's code an error message shows (`_kernel_calls` cuts there)."""

DOCUMENT_CHANGED = (
    "Note: the notebook behind these tools changed since your last look (its kernel "
    "restarted, another server took over, or its file was replaced on disk). Everything you "
    "read or inspected before is forgotten: read cells again before changing them."
)
_SUMMARY_VALUE_CHARS = 60
_SUMMARY_CHARS = 300


# --------------------------------------------------------------------------- ledger


class DescendantCheck(BaseModel):
    """What `inspect_graph` showed about one cell, and at which notebook version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    """Notebook version the check was made at; it counts only while that is current."""
    descendants: list[str] = Field(default_factory=list)
    """Ids of the cells that (transitively) depend on this one."""
    names_lost: dict[str, list[str]] = Field(default_factory=dict)
    """Descendant cell id -> names it uses that this cell defines (lost on delete)."""
    code_hash: str | None = None
    """The inspected cell's code hash: the delete is a compare-and-swap on it."""


class PartialRead(BaseModel):
    """Parts of a cell's code the agent has seen, when a read showed only part of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code_hash: str
    total: int
    """Length of the whole code, in characters."""
    ranges: list[tuple[int, int]] = Field(default_factory=list)
    """``[start, end)`` character ranges seen, merged and sorted."""

    def missing(self) -> tuple[int, int] | None:
        """The first range not seen yet, or None when the whole code was seen."""
        at = 0
        for start, end in self.ranges:
            if start > at:
                return at, start
            at = max(at, end)
        return (at, self.total) if at < self.total else None


class GuardEvent(BaseModel):
    """One refused call, kept for the trajectory log and the eval report."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: str
    args: str
    """A short, bounded summary of the arguments (code is cut)."""
    rule: str
    reason: str
    seq: int = 0
    """The ledger clock when the refusal was recorded; orders events across merges."""


class Ledger(BaseModel):
    """What the agent has seen of one notebook. Immutable: update it with `record_*`.

    `clock` and `stamps` are bookkeeping for `merge_ledgers`: every change
    (including a removal) stamps its key with the new clock value, so a merge
    can tell the newer fact from the older one per key.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reads: dict[str, str] = Field(default_factory=dict)
    """Cell id -> code hash of the full code the agent last saw."""
    hashes: dict[str, str] = Field(default_factory=dict)
    """Cell id -> latest code hash known from any source (reads, listings, own writes)."""
    partial_reads: dict[str, PartialRead] = Field(default_factory=dict)
    """Cell id -> the parts seen of code that was shown cut (not a read of the whole cell)."""
    names: dict[str, str] = Field(default_factory=dict)
    """Cell name -> cell id, so calls may name a cell instead of giving its id."""
    descendant_checks: dict[str, DescendantCheck] = Field(default_factory=dict)
    notebook_version: str | None = None
    """The latest notebook version seen; `None` when unknown (e.g. after an edit)."""
    events: list[GuardEvent] = Field(default_factory=list)
    """Every refused call, oldest first."""
    document: str | None = None
    """The kernel and file everything above was seen in (see `record_document`)."""
    clock: int = 0
    stamps: dict[str, int] = Field(default_factory=dict)


_TABLES = ("reads", "hashes", "names", "descendant_checks", "partial_reads")
_VERSION_KEY = "notebook_version"
_DOCUMENT_KEY = "document"


class _Change:
    """A mutable working copy of a ledger that stamps every change; `done()` freezes it."""

    def __init__(self, ledger: Ledger) -> None:
        self.base = ledger
        self.clock = ledger.clock + 1
        self.reads = dict(ledger.reads)
        self.partial_reads = dict(ledger.partial_reads)
        self.hashes = dict(ledger.hashes)
        self.names = dict(ledger.names)
        self.descendant_checks = dict(ledger.descendant_checks)
        self.version = ledger.notebook_version
        self.events = list(ledger.events)
        self.document = ledger.document
        self.stamps = dict(ledger.stamps)

    def put(self, table: str, key: str, value: Any) -> None:
        getattr(self, table)[key] = value
        self.stamps[f"{table}:{key}"] = self.clock

    def drop(self, table: str, key: str) -> None:
        if key in getattr(self, table):
            del getattr(self, table)[key]
            self.stamps[f"{table}:{key}"] = self.clock

    def set_version(self, version: str | None) -> None:
        self.version = version
        self.stamps[_VERSION_KEY] = self.clock

    def forget_cell(self, cell_id: str) -> None:
        for table in ("reads", "hashes", "descendant_checks", "partial_reads"):
            self.drop(table, cell_id)
        for name, target in list(self.names.items()):
            if target == cell_id:
                self.drop("names", name)

    def name(self, cell_id: str, name: str | None) -> None:
        if name and name != "_":  # "_" is marimo's "unnamed"; it names nothing
            self.put("names", name, cell_id)

    def done(self) -> Ledger:
        return Ledger(
            reads=self.reads,
            partial_reads=self.partial_reads,
            hashes=self.hashes,
            names=self.names,
            descendant_checks=self.descendant_checks,
            notebook_version=self.version,
            events=self.events,
            document=self.document,
            clock=self.clock,
            stamps=self.stamps,
        )


def record_document(ledger: Ledger, document: str | None) -> Ledger:
    """Tie the ledger to the document a result came from; a new document forgets the rest.

    marimo's cell ids are positional and reused: after a restart, a new server on the
    same port, or the file replaced on disk, "cell Hbol, hash H, inspected at version V"
    may describe another cell. Everything but the refusal log is dropped, so the agent
    reads again before it changes anything.
    """
    if document is None or document == ledger.document:
        return ledger
    clock = ledger.clock + 1
    if ledger.document is None:
        change = _Change(ledger)
        change.document = document
        change.stamps[_DOCUMENT_KEY] = change.clock
        return change.done()
    return Ledger(
        events=ledger.events, document=document, clock=clock, stamps={_DOCUMENT_KEY: clock}
    )


def document_changed(before: Ledger, after: Ledger) -> bool:
    """Whether a result moved the ledger to another document (the agent should be told)."""
    return before.document is not None and after.document != before.document


def record_read(
    ledger: Ledger,
    cell_id: str,
    code_hash: str,
    name: str | None = None,
    *,
    seen: tuple[int, int] | None = None,
    total: int | None = None,
) -> Ledger:
    """The agent saw the code of `cell_id`, whose hash is `code_hash`.

    Record this for `read_cell` results and for any error that shows the
    current code (a lost compare-and-swap), since the agent has then seen it.
    With ``seen`` (a ``[start, end)`` range of ``total`` characters) only part was
    shown: parts add up, and only the whole code counts as a read.
    """
    change = _Change(ledger)
    change.put("hashes", cell_id, code_hash)
    change.name(cell_id, name)
    if seen is not None and total is not None and (seen[0] > 0 or seen[1] < total):
        before = ledger.partial_reads.get(cell_id)
        ranges = list(before.ranges) if before and before.code_hash == code_hash else []
        partial = PartialRead(code_hash=code_hash, total=total, ranges=_merge([*ranges, seen]))
        if partial.missing() is not None:
            change.put("partial_reads", cell_id, partial)
            if ledger.reads.get(cell_id) != code_hash:
                change.drop("reads", cell_id)
            return change.done()
    change.drop("partial_reads", cell_id)
    change.put("reads", cell_id, code_hash)
    return change.done()


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def record_cells(
    ledger: Ledger,
    cells_map: Mapping[str, str | None],
    *,
    names: Mapping[str, str] | None = None,
    version: str | None = None,
    complete: bool = True,
) -> Ledger:
    """The agent saw the compact cell map: ids, names and hashes, not code.

    This is not a read (see the module docstring), but it updates what the
    ledger knows: a listed hash that differs from the read one makes that read
    stale, and with `complete=True` a cell missing from the map is gone, so
    everything about it is forgotten.

    Args:
        ledger: the ledger to update.
        cells_map: cell id -> code hash (`None` when the listing has no hash).
        names: cell id -> cell name, to resolve calls that name cells.
        version: the notebook version of the listing, if it carries one.
        complete: the map lists every cell of the notebook.
    """
    change = _Change(ledger)
    if complete:
        known = set(ledger.reads) | set(ledger.hashes) | set(ledger.descendant_checks)
        known |= set(ledger.names.values())
        for cell_id in known - set(cells_map):
            change.forget_cell(cell_id)
    for cell_id, code_hash in cells_map.items():
        if code_hash is not None:
            change.put("hashes", cell_id, code_hash)
        change.name(cell_id, (names or {}).get(cell_id))
    if version is not None:
        change.set_version(version)
    return change.done()


def record_graph(
    ledger: Ledger,
    version: str,
    cell_id: str,
    descendants: Sequence[str],
    names_lost: Mapping[str, Sequence[str]],
    *,
    name: str | None = None,
    code_hash: str | None = None,
) -> Ledger:
    """The agent inspected `cell_id`'s descendants at notebook `version`.

    The version becomes the ledger's current one: the inspection is the newest
    look at the notebook.
    """
    change = _Change(ledger)
    check_ = DescendantCheck(
        version=version,
        descendants=list(descendants),
        names_lost={cell: list(lost) for cell, lost in names_lost.items()},
        code_hash=code_hash,
    )
    change.put("descendant_checks", cell_id, check_)
    change.name(cell_id, name)
    change.set_version(version)
    return change.done()


def record_write(
    ledger: Ledger,
    cell_id: str,
    new_hash: str,
    *,
    name: str | None = None,
    version: str | None = None,
) -> Ledger:
    """The agent's own edit or create of `cell_id` landed; its view is now the new code.

    The notebook changed, so every descendant check stops counting: the new
    version if the tool reported one, else an unknown (`None`) version that
    no check matches. The edit may have made other cells depend on a cell the
    agent was about to delete.
    """
    change = _Change(ledger)
    change.put("reads", cell_id, new_hash)
    change.put("hashes", cell_id, new_hash)
    change.name(cell_id, name)
    change.set_version(version)
    return change.done()


def record_delete(ledger: Ledger, cell_id: str, *, version: str | None = None) -> Ledger:
    """`cell_id` was deleted: forget it, and let every descendant check go stale."""
    change = _Change(ledger)
    change.forget_cell(cell_id)
    change.set_version(version)
    return change.done()


def record_version(ledger: Ledger, version: str | None) -> Ledger:
    """A tool reported the notebook's current version (a person's edit changes it too)."""
    if version == ledger.notebook_version:
        return ledger
    change = _Change(ledger)
    change.set_version(version)
    return change.done()


def record_decision(ledger: Ledger, decision: Decision) -> Ledger:
    """Append a `GuardEvent` if `decision` refused the call; otherwise return `ledger`."""
    if decision.allowed:
        return ledger
    change = _Change(ledger)
    change.events.append(
        GuardEvent(
            tool=decision.tool,
            args=decision.args_summary,
            rule=decision.rule or "",
            reason=decision.reason,
            seq=change.clock,
        )
    )
    return change.done()


def merge_ledgers(left: Ledger | None, right: Ledger | Mapping[str, Any] | None) -> Ledger:
    """LangGraph reducer: combine two ledgers, keeping the newer fact for every key.

    Parallel tool calls each return a ledger derived from the same state. A
    plain "right wins" would drop what the other call learned (or bring back a
    version an edit had made stale); instead each key keeps the side with the
    later stamp, removals included, and events are the union in recorded
    order. A ledger that is a successor of `left` (the common case) therefore
    simply replaces it. To reset the channel, write `Overwrite(Ledger())`.

    Args:
        left: the channel's current value (`None` before the first write).
        right: the update; a dict (e.g. JSON from an API client) is validated.
    """
    if right is None:
        return left if left is not None else Ledger()
    if not isinstance(right, Ledger):
        right = Ledger.model_validate(right)
    if left is None:
        return right
    if left.document != right.document and None not in (left.document, right.document):
        # Two documents: what was seen in the older one describes other cells. Keep the newer.
        newer = (
            right
            if _stamp(right, _DOCUMENT_KEY, True) >= _stamp(left, _DOCUMENT_KEY, True)
            else left
        )
        seen = set(newer.events)
        older = left if newer is right else right
        events = sorted(
            [*newer.events, *(e for e in older.events if e not in seen)], key=lambda e: e.seq
        )
        return newer.model_copy(update={"events": events, "clock": max(left.clock, right.clock)})

    tables: dict[str, dict[str, Any]] = {table: {} for table in _TABLES}
    stamps: dict[str, int] = {}
    for table in _TABLES:
        left_table: Mapping[str, Any] = getattr(left, table)
        right_table: Mapping[str, Any] = getattr(right, table)
        for key in set(left_table) | set(right_table) | _stamped(left, right, table):
            stamp_key = f"{table}:{key}"
            left_stamp = _stamp(left, stamp_key, key in left_table)
            right_stamp = _stamp(right, stamp_key, key in right_table)
            winner = right_table if right_stamp >= left_stamp else left_table
            if key in winner:
                tables[table][key] = winner[key]
            if max(left_stamp, right_stamp) > 0:
                stamps[stamp_key] = max(left_stamp, right_stamp)

    left_v = _stamp(left, _VERSION_KEY, left.notebook_version is not None)
    right_v = _stamp(right, _VERSION_KEY, right.notebook_version is not None)
    if left_v == right_v and left.notebook_version != right.notebook_version:
        version = None  # two branches saw different versions at once: newest unknown
    else:
        version = right.notebook_version if right_v > left_v else left.notebook_version
    if max(left_v, right_v) > 0:
        stamps[_VERSION_KEY] = max(left_v, right_v)

    seen = set(left.events)
    events = list(left.events) + [e for e in right.events if e not in seen]
    events.sort(key=lambda event: event.seq)  # stable: ties keep left-then-right order

    document = left.document or right.document
    for key in (_DOCUMENT_KEY,):
        stamp = max(_stamp(left, key, False), _stamp(right, key, False))
        if stamp > 0:
            stamps[key] = stamp
    return Ledger(
        reads=tables["reads"],
        partial_reads=tables["partial_reads"],
        hashes=tables["hashes"],
        names=tables["names"],
        descendant_checks=tables["descendant_checks"],
        notebook_version=version,
        events=events,
        document=document,
        clock=max(left.clock, right.clock),
        stamps=stamps,
    )


def _stamped(left: Ledger, right: Ledger, table: str) -> set[str]:
    prefix = f"{table}:"
    return {key[len(prefix) :] for key in (*left.stamps, *right.stamps) if key.startswith(prefix)}


def _stamp(ledger: Ledger, stamp_key: str, present: bool) -> int:
    # Unstamped entries (a ledger built by hand) rank above "never heard of it".
    return ledger.stamps.get(stamp_key, 0 if present else -1)


def resolve_cell(ledger: Ledger, cell: str) -> str:
    """The cell id that `cell` (an id or a cell name) refers to, as far as the ledger knows.

    An ambiguous reference (one cell's id, another cell's name) resolves to itself;
    `ambiguous_reference` says so, and the kernel refuses it by the same rule.
    """
    if is_known_id(ledger, cell):
        return cell
    return ledger.names.get(cell, cell)


def is_known_id(ledger: Ledger, cell: str) -> bool:
    """Whether the ledger has seen `cell` as a cell id."""
    return cell in ledger.reads or cell in ledger.hashes or cell in ledger.descendant_checks


def ambiguous_reference(ledger: Ledger, cell: str) -> str | None:
    """The other cell `cell` could mean, when it is one cell's id and another's name."""
    named = ledger.names.get(cell)
    return named if named is not None and named != cell and is_known_id(ledger, cell) else None


def read_hash(ledger: Ledger, cell: str) -> str | None:
    """The hash of the code the agent read for `cell`, for the kernel's compare-and-swap."""
    return ledger.reads.get(resolve_cell(ledger, cell))


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class Policy:
    """Which rules `check` enforces. The defaults are the safe pairing behaviour.

    Attributes:
        require_read_before_edit: an edit needs a read of the cell's current code.
        require_descendant_check: a delete needs `inspect_graph` at the current version.
        require_ack_of_descendants: a delete that breaks descendants must name them.
        approve_deletes: ask a person before a delete: `True` for every delete,
            `"with_descendants"` only when other cells depend on the cell.
    """

    require_read_before_edit: bool = True
    require_descendant_check: bool = True
    require_ack_of_descendants: bool = True
    approve_deletes: bool | Literal["with_descendants"] = False


@dataclass(frozen=True)
class Decision:
    """The answer of `check`.

    Attributes:
        allowed: the call may run (after approval, if `needs_approval`).
        rule: the rule that refused the call or asks for approval; `None` when
            nothing applied.
        reason: for the model: what is wrong and exactly what to call next.
        needs_approval: allowed by the policy, but a person must approve first.
        tool: the tool name checked.
        args_summary: bounded summary of the arguments, for logs and events.
    """

    allowed: bool
    rule: str | None
    reason: str
    needs_approval: bool = False
    tool: str = ""
    args_summary: str = ""


@dataclass(frozen=True)
class _Finding:
    rule: str
    text: str
    approval: bool = False


def check(policy: Policy, ledger: Ledger, tool_name: str, args: Mapping[str, Any]) -> Decision:
    """Decide whether the call `tool_name(**args)` may run, given what the agent has seen.

    Guarded tools: `edit_cell` (`cell`, `code` or `old`/`new`, optional
    `expected_hash`), `delete_cell` (`cell`, optional
    `acknowledge_descendants`: a list of cell ids/names, or `True` for all)
    and `apply_changes` (`changes`: a list of dicts with `op` in `CHANGE_OPS`
    and the same fields). Every other tool is allowed. A change list is checked
    against the ledger as it stands before the batch: all problems are reported
    at once, so the model can fix them in one retry.
    """
    summary = _summarize(args)
    findings: list[_Finding]
    if tool_name == EDIT_CELL:
        findings = _check_edit(policy, ledger, args, where=EDIT_CELL)
    elif tool_name == DELETE_CELL:
        findings = _check_delete(policy, ledger, args, where=DELETE_CELL, batch_deletes=set())
    elif tool_name == APPLY_CHANGES:
        findings = _check_changes(policy, ledger, args)
    elif tool_name == EXECUTE_CODE:
        findings = _check_scratchpad(args)
    else:
        findings = []

    refusals = [f for f in findings if not f.approval]
    if refusals:
        head = f"{tool_name} refused; nothing was changed."
        return Decision(
            allowed=False,
            rule=refusals[0].rule,
            reason=" ".join([head, *(f.text for f in refusals)]),
            tool=tool_name,
            args_summary=summary,
        )
    if findings:
        return Decision(
            allowed=True,
            rule=RULE_APPROVE_DELETE,
            reason=" ".join(f.text for f in findings),
            needs_approval=True,
            tool=tool_name,
            args_summary=summary,
        )
    return Decision(allowed=True, rule=None, reason="allowed", tool=tool_name, args_summary=summary)


def oversized_reference(tool_name: str, args: Mapping[str, Any]) -> str | None:
    """A refusal for a cell or variable reference too long to name anything, else None.

    Checked before anything else, so that no later message repeats the reference.
    """
    for key, value in args.items():
        if key not in _REFERENCE_KEYS:
            continue
        for text in _strings(value):
            if len(text) > MAX_REFERENCE_CHARS:
                return (
                    f"{tool_name} refused; nothing was changed. `{key}` holds a reference "
                    f"{len(text):,} characters long, and no cell or variable has a name that "
                    f"long (the limit is {MAX_REFERENCE_CHARS}). Refer to a cell by its id or "
                    f"its name as {LIST_CELLS} shows them, and to a variable by its name."
                )
    return None


def _strings(value: object) -> Iterable[str]:
    """The strings in a reference argument (a list of them, or change dicts' references)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            if key in _REFERENCE_KEYS:
                yield from _strings(inner)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from _strings(inner)


def reaches_internals(code: str) -> bool:
    """Whether the code plainly imports marimo's private modules (an early, friendly no).

    Only import statements count: a dict key or a column named ``code_mode`` is data.
    Disguised routes are the kernel's fence's business (`kernel.fence`), not this check's.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        if any(_NOTEBOOK_WRITERS.search(name) for name in names):
            return True
    return False


def _check_scratchpad(args: Mapping[str, Any]) -> list[_Finding]:
    code = args.get("code")
    if isinstance(code, str) and reaches_internals(code):
        return [
            _Finding(
                RULE_SCRATCHPAD_EDIT,
                "execute_code is for reading and trying things; it must not change cells "
                "through marimo's internals (code mode, the kernel), which skips the checks "
                "that protect the person's work. Use create_cell, edit_cell, delete_cell or "
                "apply_changes instead.",
            )
        ]
    return []


def check_and_record(
    policy: Policy, ledger: Ledger, tool_name: str, args: Mapping[str, Any]
) -> tuple[Decision, Ledger]:
    """`check`, then `record_decision`: what a guard does before every call."""
    decision = check(policy, ledger, tool_name, args)
    return decision, record_decision(ledger, decision)


def _cell_arg(args: Mapping[str, Any], where: str, ledger: Ledger | None = None) -> str | _Finding:
    cell = args.get("cell")
    if isinstance(cell, str) and cell:
        other = ambiguous_reference(ledger, cell) if ledger is not None else None
        if other is not None:
            return _Finding(
                RULE_INVALID_ARGUMENTS,
                f"{where}: {cell!r} is ambiguous: it is the id of cell {cell} and the name of "
                f"cell {other}. Refer to the named cell by its id ({other!r}); do not guess "
                "which one the person meant.",
            )
        return cell
    return _Finding(
        RULE_INVALID_ARGUMENTS,
        f"{where} needs `cell`: the id (or name) of an existing cell, as read_notebook shows it.",
    )


def _check_edit(
    policy: Policy, ledger: Ledger, args: Mapping[str, Any], *, where: str
) -> list[_Finding]:
    cell = _cell_arg(args, where, ledger)
    if isinstance(cell, _Finding):
        return [cell]
    if _acknowledges(args):
        # An edit that changes what other cells read is judged as a delete of those names.
        findings = _check_delete(policy, ledger, args, where=where, batch_deletes=set())
        if any(not f.approval for f in findings):
            return findings
        approval = findings
    else:
        approval = []
    if not policy.require_read_before_edit:
        return approval
    cell_id = resolve_cell(ledger, cell)
    read = ledger.reads.get(cell_id)
    partial = ledger.partial_reads.get(cell_id)
    if read is None and partial is not None:
        whole = args.get("op") == OP_EDIT or (
            args.get("op") is None and args.get("code") is not None
        )
        gap = partial.missing()
        if whole and gap is not None:
            return [
                _Finding(
                    RULE_READ_BEFORE_EDIT,
                    f"{where}: you have seen only part of cell {cell!r} (characters "
                    f"{_spans(partial.ranges)} of {partial.total:,}); replacing all of it would "
                    f"drop code you have not read. Call {READ_CELL}(cell={cell!r}, "
                    f"offset={gap[0]}) for the rest, or change only the part you saw with "
                    "old/new.",
                )
            ]
        read = partial.code_hash
    if read is None:
        return [
            _Finding(
                RULE_READ_BEFORE_EDIT,
                f"{where}: you have not read cell {cell!r} yet. Call "
                f"{READ_CELL}(cell={cell!r}) to see its current code, then retry.",
            )
        ]
    current = ledger.hashes.get(cell_id, read)
    if current != read:
        return [
            _Finding(
                RULE_STALE_READ,
                f"{where}: cell {cell!r} changed since you read it (someone else edited "
                f"it). Call {READ_CELL}(cell={cell!r}) again and base the edit on its "
                "current code.",
            )
        ]
    expected = args.get("expected_hash")
    if expected is not None and expected != read:
        return [
            _Finding(
                RULE_STALE_READ,
                f"{where}: expected_hash {expected!r} is not the hash of the code you last "
                f"read for cell {cell!r} ({read!r}). Use {read!r} if your edit is based on "
                f"that code, or call {READ_CELL}(cell={cell!r}) again.",
            )
        ]
    return approval


def _spans(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a:,}–{b:,}" for a, b in ranges)


def _acknowledges(args: Mapping[str, Any]) -> bool:
    ack = args.get("acknowledge_descendants")
    return ack is True or (isinstance(ack, (list, tuple, str)) and len(ack) > 0)


def _check_delete(
    policy: Policy,
    ledger: Ledger,
    args: Mapping[str, Any],
    *,
    where: str,
    batch_deletes: set[str],
) -> list[_Finding]:
    cell = _cell_arg(args, where, ledger)
    if isinstance(cell, _Finding):
        return [cell]
    cell_id = resolve_cell(ledger, cell)
    inspected = ledger.descendant_checks.get(cell_id)
    if inspected is not None and inspected.version != ledger.notebook_version:
        inspected = None
        if policy.require_descendant_check:
            return [
                _Finding(
                    RULE_DESCENDANT_CHECK,
                    f"{where}: the notebook changed since you inspected cell {cell!r}, so "
                    "its descendants may have changed too. Call "
                    f"{INSPECT_GRAPH}(cell={cell!r}) again, then retry.",
                )
            ]
    if inspected is None:
        if policy.require_descendant_check:
            return [
                _Finding(
                    RULE_DESCENDANT_CHECK,
                    f"{where}: you have not checked what depends on cell {cell!r}. Call "
                    f"{INSPECT_GRAPH}(cell={cell!r}) first, then retry.",
                )
            ]
        return _approval(policy, cell, [], None)

    read = ledger.reads.get(cell_id)
    if read is not None and inspected.code_hash and read != inspected.code_hash:
        # The agent read this cell, then it changed: it has not seen what it would delete.
        return [
            _Finding(
                RULE_STALE_READ,
                f"{where}: cell {cell!r} changed since you read it, and a delete would remove "
                f"code you have not seen. Call {READ_CELL}(cell={cell!r}) first.",
            )
        ]
    ambiguous = [
        a
        for a in _ack_list(args.get("acknowledge_descendants"))
        if ambiguous_reference(ledger, a) is not None
    ]
    if ambiguous:
        return [
            _Finding(
                RULE_INVALID_ARGUMENTS,
                f"{where}: acknowledge_descendants names {ambiguous!r}, which is ambiguous: each "
                "is one cell's id and another cell's name. List the cells by their ids.",
            )
        ]
    # Cells deleted in the same batch lose nothing that matters.
    breaking = [d for d in inspected.descendants if d not in batch_deletes]
    if breaking and policy.require_ack_of_descendants:
        missing = _unacknowledged(ledger, args.get("acknowledge_descendants"), breaking)
        if missing:
            partly = len(missing) < len(breaking)
            # Bounded: a cell read by thousands of others must not make a 100 KB refusal.
            ack = (
                repr(breaking)
                if len(breaking) <= LISTED_CELLS
                else f"true (all {len(breaking):,}; inspect_graph lists them)"
            )
            return [
                _Finding(
                    RULE_ACKNOWLEDGE_DESCENDANTS,
                    f"{where}: deleting cell {cell!r} affects {len(breaking):,} descendant "
                    f"cell(s): {_describe(inspected, breaking)}."
                    + (f" Not acknowledged: [{_some(sorted(missing))}]." if partly else "")
                    + f" If that is intended, retry with acknowledge_descendants={ack}; "
                    "otherwise change those cells first.",
                )
            ]
    return _approval(policy, cell, breaking, inspected)


def _approval(
    policy: Policy, cell: str, breaking: list[str], inspected: DescendantCheck | None
) -> list[_Finding]:
    wanted = policy.approve_deletes is True or (
        policy.approve_deletes == "with_descendants" and bool(breaking)
    )
    if not wanted:
        return []
    # The person answering sees what each dependent loses, not only its id.
    shown = _describe(inspected, breaking) if inspected is not None else _some(breaking)
    also = f" and affects {shown}" if breaking else ""
    return [
        _Finding(
            RULE_APPROVE_DELETE,
            f"Deleting cell {cell!r} removes its variables from the kernel{also}; "
            "a person must approve it.",
            approval=True,
        )
    ]


def _unacknowledged(ledger: Ledger, ack: object, breaking: list[str]) -> set[str]:
    if ack is True:
        return set()
    if isinstance(ack, str):
        ack = [ack]
    if not isinstance(ack, Iterable):
        return set(breaking)
    acknowledged = {resolve_cell(ledger, a) for a in ack if isinstance(a, str)}
    return set(breaking) - acknowledged


def _ack_list(ack: object) -> list[str]:
    if isinstance(ack, str):
        return [ack]
    if isinstance(ack, (list, tuple)):
        return [a for a in ack if isinstance(a, str)]
    return []


def _describe(inspected: DescendantCheck, cells: list[str]) -> str:
    parts = []
    for cell in cells[:LISTED_CELLS]:
        lost = inspected.names_lost.get(cell) or []
        names = ", ".join(lost[:5]) + (f", … {len(lost) - 5} more" if len(lost) > 5 else "")
        parts.append(f"{cell!r} (loses {names})" if lost else repr(cell))
    more = len(cells) - LISTED_CELLS
    return ", ".join(parts) + (f", and {more:,} more" if more > 0 else "")


def _some(cells: Sequence[str]) -> str:
    """``'a', 'b', … and N more``: at most `LISTED_CELLS` cells in a message."""
    shown = ", ".join(map(repr, cells[:LISTED_CELLS]))
    more = len(cells) - LISTED_CELLS
    return shown + (f", and {more:,} more" if more > 0 else "")


def _check_changes(policy: Policy, ledger: Ledger, args: Mapping[str, Any]) -> list[_Finding]:
    changes = args.get("changes")
    if not isinstance(changes, Sequence) or isinstance(changes, str):
        return [_Finding(RULE_INVALID_ARGUMENTS, f"{APPLY_CHANGES} needs `changes`: a list.")]
    batch_deletes = {
        resolve_cell(ledger, change["cell"])
        for change in changes
        if isinstance(change, Mapping)
        and change.get("op") == OP_DELETE
        and isinstance(change.get("cell"), str)
    }
    findings: list[_Finding] = []
    for number, change in enumerate(changes, start=1):
        where = f"change #{number}"
        if not isinstance(change, Mapping) or change.get("op") not in CHANGE_OPS:
            findings.append(
                _Finding(
                    RULE_INVALID_ARGUMENTS,
                    f"{where} needs `op`, one of {sorted(CHANGE_OPS)}.",
                )
            )
            continue
        op = change["op"]
        where = f"{where} ({op})"
        if op in _EDIT_OPS:
            cell = change.get("cell")
            if isinstance(cell, str) and resolve_cell(ledger, cell) in batch_deletes:
                findings.append(
                    _Finding(
                        RULE_INVALID_ARGUMENTS,
                        f"{where}: cell {cell!r} is also deleted in this batch; drop one.",
                    )
                )
                continue
            findings.extend(_check_edit(policy, ledger, change, where=where))
        elif op == OP_DELETE:
            findings.extend(
                _check_delete(policy, ledger, change, where=where, batch_deletes=batch_deletes)
            )
    return findings


def _summarize(args: Mapping[str, Any]) -> str:
    """A bounded one-line JSON summary of tool arguments; long strings (code) are cut."""

    def shorten(value: Any) -> Any:
        if isinstance(value, str) and len(value) > _SUMMARY_VALUE_CHARS:
            return f"{value[:_SUMMARY_VALUE_CHARS]}… ({len(value)} chars)"
        if isinstance(value, Mapping):
            return {str(k): shorten(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [shorten(v) for v in value]
        return value

    text = json.dumps(shorten(args), default=repr, sort_keys=True, ensure_ascii=False)
    if len(text) > _SUMMARY_CHARS:
        text = f"{text[:_SUMMARY_CHARS]}… ({len(text)} chars)"
    return text


# ------------------------------------------------------- learning from tool results


def record_tool_result(
    ledger: Ledger, tool_name: str, args: Mapping[str, Any], artifact: Mapping[str, Any] | None
) -> Ledger:
    """Update the ledger from one tool's structured result (its artifact, as a dict).

    The toolkit's tools and the agent's tools node both call this, so the ledger
    means the same thing whether the tools run alone or inside the graph.
    """
    if not artifact:
        return ledger
    ledger = record_document(ledger, artifact.get("document"))
    version = artifact.get("notebook_version")
    if tool_name == READ_CELL:
        # One cell, or several (`read_cell(cells=[...])`): each counts as its own read.
        details = artifact.get("cells") if "cells" in artifact else [artifact]
        for detail in details if isinstance(details, list) else []:
            code = detail.get("code")
            shown = detail.get("code_shown")
            ledger = record_read(
                ledger,
                str(detail["id"]),
                str(detail["code_hash"]),
                detail.get("name"),
                seen=(int(shown[0]), int(shown[1])) if isinstance(shown, list) else None,
                total=len(code) if isinstance(code, str) else None,
            )
        return ledger
    if tool_name == LIST_CELLS:
        cells = list(artifact.get("cells") or [])
        complete = int(artifact.get("offset") or 0) == 0 and len(cells) == artifact.get("total")
        return record_cells(
            ledger,
            {str(c["id"]): c.get("code_hash") for c in cells},
            names={str(c["id"]): str(c["name"]) for c in cells if c.get("name")},
            version=version,
            complete=complete,
        )
    if tool_name == INSPECT_GRAPH and artifact.get("focus") and version:
        focus = artifact["focus"]
        names_lost = {
            str(dep["id"]): list(dep.get("uses") or []) for dep in focus.get("dependents") or []
        }
        return record_graph(
            ledger,
            str(version),
            str(focus["cell_id"]),
            list(focus["descendants"]),
            names_lost,
            name=focus.get("name"),
            code_hash=focus.get("code_hash"),
        )
    if "changes" in artifact and isinstance(artifact.get("changes"), list):
        for change in artifact["changes"]:
            cell_id = change.get("cell_id")
            if not cell_id:
                continue
            if change.get("op") == OP_DELETE:
                ledger = record_delete(ledger, str(cell_id), version=version)
            elif change.get("op") == OP_REPLACE and _partly_read(ledger, str(cell_id)):
                ledger = _record_partial_write(ledger, str(cell_id), change, version)
            elif change.get("op") in {OP_CREATE, OP_EDIT, OP_REPLACE} and change.get("code_hash"):
                ledger = record_write(
                    ledger,
                    str(cell_id),
                    str(change["code_hash"]),
                    name=change.get("name"),
                    version=version,
                )
        return record_version(ledger, version) if version else ledger
    if version:
        return record_version(ledger, str(version))
    return ledger


def _partly_read(ledger: Ledger, cell_id: str) -> bool:
    return cell_id in ledger.partial_reads and cell_id not in ledger.reads


def _record_partial_write(
    ledger: Ledger, cell_id: str, change: Mapping[str, Any], version: str | None
) -> Ledger:
    """A find/replace in a cell read only in part: what was seen stays seen, no more.

    Text after the change shifted by the length difference ``d``; shrinking every
    seen range by ``|d|`` at both ends keeps only characters that were seen, wherever
    the change fell.
    """
    partial = ledger.partial_reads[cell_id]
    length = change.get("length")
    new_hash = change.get("code_hash")
    if not isinstance(length, int) or not isinstance(new_hash, str):
        return record_delete(ledger, cell_id, version=version)  # unknown: forget, read again
    shift = abs(length - partial.total)
    ranges = [
        (0 if a == 0 else a + shift, b - shift) for a, b in partial.ranges if b - shift > a + shift
    ]
    change_ = _Change(ledger)
    change_.put("hashes", cell_id, new_hash)
    change_.put(
        "partial_reads", cell_id, PartialRead(code_hash=new_hash, total=length, ranges=ranges)
    )
    change_.set_version(version)
    return change_.done()


def record_tool_error(ledger: Ledger, details: Mapping[str, Any]) -> Ledger:
    """Update the ledger from a refused change whose error showed the current code.

    A compare-and-swap loss or a find/replace miss carries the cell's current
    code in the error the model reads: that is a fresh read of the cell.
    """
    ledger = record_document(ledger, details.get("document"))
    cell_id, current_hash = details.get("cell_id"), details.get("current_hash")
    if cell_id and current_hash and isinstance(details.get("current_code"), str):
        total = len(details["current_code"])
        shown = min(total, SHOWN_CODE_LIMIT)  # the error text shows only the head
        return record_read(ledger, str(cell_id), str(current_hash), seen=(0, shown), total=total)
    if cell_id and details.get("new_descendants"):
        # The kernel found dependents the check missed: that check no longer counts.
        change = _Change(ledger)
        change.drop("descendant_checks", str(cell_id))
        return change.done()
    return ledger


def with_read_hashes(ledger: Ledger, tool_name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """`args` with each edit's missing ``expected_hash`` set to the hash the agent read.

    The kernel then applies the edit only if the cell still has the code the agent
    saw (compare-and-swap), even when the model did not repeat the hash itself.
    Deletes likewise carry the descendants the agent inspected
    (``expected_descendants``): the kernel refuses one whose cell has gained others.
    """
    if tool_name == EDIT_CELL:
        return {**args, **_kernel_checks(ledger, OP_EDIT, args)}
    if tool_name == CREATE_CELL:
        return {**args, **_kernel_checks(ledger, OP_CREATE, args)}
    if tool_name == DELETE_CELL:
        return {**args, **_kernel_checks(ledger, OP_DELETE, args)}
    if tool_name == APPLY_CHANGES and isinstance(args.get("changes"), list):
        changes = [
            {
                **change,
                **_kernel_checks(ledger, change.get("op"), change),
                **_read_of(ledger, change),
            }
            if isinstance(change, Mapping)
            else change
            for change in args["changes"]
        ]
        return {**args, "changes": changes}
    return dict(args)


def _kernel_checks(ledger: Ledger, op: object, change: Mapping[str, Any]) -> dict[str, Any]:
    """What the kernel's compare-and-swap needs for one change, filled from the ledger.

    Hashes the call left out are filled; what only the ledger may vouch for (the
    parts of a cell that were read, the read behind a replaced cell, what "all
    descendants" means) is always taken from the ledger, whatever the call said.
    """
    cell = str(change.get("cell"))
    filled: dict[str, Any] = {}
    if change.get("acknowledge_descendants") is True:
        # "All of them" means the descendants the agent was shown, no more.
        filled["acknowledge_descendants"] = inspected_descendants(ledger, cell) or []
    if op in _EDIT_OPS:
        cell_id = resolve_cell(ledger, cell)
        partial = ledger.partial_reads.get(cell_id)
        if cell_id not in ledger.reads and partial is not None:
            # A find/replace inside a cell seen in part must match inside what was seen.
            filled["expected_hash"] = change.get("expected_hash") or partial.code_hash
            if change.get("old") is not None:
                filled["seen_ranges"] = [list(r) for r in partial.ranges]
        else:
            known = read_hash(ledger, cell)
            if known and not change.get("expected_hash"):
                filled["expected_hash"] = known
    if op == OP_DELETE:
        if change.get("expected_descendants") is None:
            checked = inspected_descendants(ledger, cell)
            if checked is not None:
                filled["expected_descendants"] = checked
        if not change.get("expected_hash"):
            seen = seen_hash(ledger, cell)
            if seen is not None:
                filled["expected_hash"] = seen
    return filled


def _read_of(ledger: Ledger, change: Mapping[str, Any]) -> dict[str, Any]:
    """A batch delete carries the hash the agent read (never the call's own): re-creating
    its names is an edit, which needs a read."""
    if change.get("op") != OP_DELETE:
        return {}
    return {"read_hash": read_hash(ledger, str(change.get("cell")))}


def seen_hash(ledger: Ledger, cell: str) -> str | None:
    """The hash of the code the agent last saw of `cell`, in a read or an inspection."""
    cell_id = resolve_cell(ledger, cell)
    candidates = []
    if cell_id in ledger.reads:
        candidates.append((ledger.stamps.get(f"reads:{cell_id}", 0), ledger.reads[cell_id]))
    check_ = ledger.descendant_checks.get(cell_id)
    if check_ is not None and check_.code_hash:
        stamp = ledger.stamps.get(f"descendant_checks:{cell_id}", 0)
        candidates.append((stamp, check_.code_hash))
    return max(candidates)[1] if candidates else None


def deleted_cells(call: Mapping[str, Any]) -> list[str]:
    """The cells a `delete_cell` or `apply_changes` call would delete (for approval requests)."""
    args = call.get("args") or {}
    if call.get("name") == DELETE_CELL and isinstance(args.get("cell"), str):
        return [args["cell"]]
    if call.get("name") == APPLY_CHANGES and isinstance(args.get("changes"), list):
        return [
            change["cell"]
            for change in args["changes"]
            if isinstance(change, Mapping)
            and change.get("op") == OP_DELETE
            and isinstance(change.get("cell"), str)
        ]
    return []


def inspected_descendants(ledger: Ledger, cell: str) -> list[str] | None:
    """The descendants `inspect_graph` showed for `cell` (None if never inspected)."""
    check = ledger.descendant_checks.get(resolve_cell(ledger, cell))
    return None if check is None else list(check.descendants)
