"""The pairing policy: ledger updates, every rule of `check`, and the LangGraph reducer.

Pure logic: no server is needed, so every case is spelled out here.
"""

from __future__ import annotations

import json
import operator
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from pydantic import ValidationError

from marimo_pair_tools import guards
from marimo_pair_tools.guards import (
    APPLY_CHANGES,
    DELETE_CELL,
    EDIT_CELL,
    GUARDED_TOOLS,
    INSPECT_GRAPH,
    RULE_ACKNOWLEDGE_DESCENDANTS,
    RULE_APPROVE_DELETE,
    RULE_DESCENDANT_CHECK,
    RULE_INVALID_ARGUMENTS,
    RULE_READ_BEFORE_EDIT,
    RULE_STALE_READ,
    Decision,
    Ledger,
    Policy,
    check,
    check_and_record,
    merge_ledgers,
    read_hash,
    record_cells,
    record_decision,
    record_delete,
    record_graph,
    record_read,
    record_tool_result,
    record_version,
    record_write,
    resolve_cell,
)

POLICY = Policy()


def _inspected(ledger: Ledger, cell: str = "a", *, version: str = "v1") -> Ledger:
    """`a` defines df and x; `b` uses df, `c` uses df and x."""
    return record_graph(ledger, version, cell, ["b", "c"], {"b": ["df"], "c": ["df", "x"]})


def _leaf(ledger: Ledger, cell: str = "leaf", *, version: str = "v1") -> Ledger:
    return record_graph(ledger, version, cell, [], {})


# --------------------------------------------------------------------------- constants


def test_tool_names_are_plain_strings_in_one_place() -> None:
    assert {"edit_cell", "delete_cell", "apply_changes", "execute_code"} == GUARDED_TOOLS
    assert guards.READ_CELL == "read_cell"
    assert guards.INSPECT_GRAPH == "inspect_graph"
    assert {"create", "edit", "replace", "delete", "move", "run"} == guards.CHANGE_OPS


def test_guards_imports_nothing_from_the_package() -> None:
    source = Path(guards.__file__).read_text(encoding="utf-8")
    assert "from ." not in source
    assert "marimo_pair_tools" not in source


# --------------------------------------------------------------------------- ledger updates


def test_record_read_is_pure_and_remembers_hash_and_name() -> None:
    empty = Ledger()
    ledger = record_read(empty, "c1", "h1", name="load")
    assert empty == Ledger()
    assert ledger.reads == {"c1": "h1"}
    assert ledger.hashes == {"c1": "h1"}
    assert ledger.names == {"load": "c1"}
    assert resolve_cell(ledger, "load") == "c1"
    assert read_hash(ledger, "load") == "h1"
    assert read_hash(ledger, "nope") is None


def test_unnamed_cells_do_not_pollute_names() -> None:
    ledger = record_read(Ledger(), "c1", "h1", name="_")
    ledger = record_cells(ledger, {"c1": "h1", "c2": None}, names={"c1": "_", "c2": ""})
    assert ledger.names == {}


def test_ledger_is_frozen() -> None:
    ledger = Ledger()
    with pytest.raises(ValidationError):
        ledger.notebook_version = "v9"


def test_ledger_round_trips_through_json() -> None:
    ledger = _inspected(record_read(Ledger(), "a", "h", name="load"))
    _, ledger = check_and_record(POLICY, ledger, EDIT_CELL, {"cell": "zzz", "code": "x"})
    data = json.loads(ledger.model_dump_json())
    assert Ledger.model_validate(data) == ledger
    assert Ledger.model_validate_json(ledger.model_dump_json()) == ledger


def test_listing_is_not_a_read() -> None:
    ledger = record_cells(Ledger(), {"c1": "h1"}, names={"c1": "load"})
    decision = check(POLICY, ledger, EDIT_CELL, {"cell": "c1", "code": "x = 1"})
    assert not decision.allowed
    assert decision.rule == RULE_READ_BEFORE_EDIT
    assert "read_cell(cell='c1')" in decision.reason
    assert ledger.names == {"load": "c1"}


def test_listing_with_another_hash_makes_the_read_stale() -> None:
    ledger = record_read(Ledger(), "c1", "h1")
    ledger = record_cells(ledger, {"c1": "h2"})
    decision = check(POLICY, ledger, EDIT_CELL, {"cell": "c1", "code": "x = 1"})
    assert decision.rule == RULE_STALE_READ
    assert "changed since you read it" in decision.reason
    # Reading again makes it editable.
    ledger = record_read(ledger, "c1", "h2")
    assert check(POLICY, ledger, EDIT_CELL, {"cell": "c1", "code": "x = 1"}).allowed


def test_listing_with_the_same_hash_keeps_the_read() -> None:
    ledger = record_cells(record_read(Ledger(), "c1", "h1"), {"c1": "h1", "c2": "h9"})
    assert check(POLICY, ledger, EDIT_CELL, {"cell": "c1", "code": "x"}).allowed


def test_complete_listing_forgets_cells_that_are_gone() -> None:
    ledger = record_read(Ledger(), "gone", "h1", name="old")
    ledger = _leaf(record_read(ledger, "kept", "h2"), "gone")
    ledger = record_cells(ledger, {"kept": "h2"}, version="v2")
    assert ledger.reads == {"kept": "h2"}
    assert ledger.descendant_checks == {}
    assert ledger.names == {}
    assert ledger.notebook_version == "v2"


def test_partial_listing_forgets_nothing() -> None:
    ledger = record_read(Ledger(), "c1", "h1")
    assert record_cells(ledger, {"c2": "h2"}, complete=False).reads == {"c1": "h1"}


def test_record_graph_sets_the_current_version() -> None:
    ledger = _inspected(Ledger(), version="v7")
    assert ledger.notebook_version == "v7"
    assert ledger.descendant_checks["a"].descendants == ["b", "c"]
    assert ledger.descendant_checks["a"].names_lost == {"b": ["df"], "c": ["df", "x"]}


def test_own_write_is_the_new_view_and_invalidates_descendant_checks() -> None:
    ledger = _leaf(record_read(Ledger(), "c1", "old"))
    ledger = record_write(ledger, "c1", "new")
    assert read_hash(ledger, "c1") == "new"
    assert check(POLICY, ledger, EDIT_CELL, {"cell": "c1", "expected_hash": "new"}).allowed
    stale = check(POLICY, ledger, EDIT_CELL, {"cell": "c1", "expected_hash": "old"})
    assert stale.rule == RULE_STALE_READ
    assert ledger.notebook_version is None
    refused = check(POLICY, ledger, DELETE_CELL, {"cell": "leaf"})
    assert refused.rule == RULE_DESCENDANT_CHECK
    assert "changed since you inspected" in refused.reason


def test_create_is_a_write_of_a_new_cell() -> None:
    ledger = record_write(Ledger(), "new1", "h", name="plot", version="v2")
    assert ledger.notebook_version == "v2"
    assert check(POLICY, ledger, EDIT_CELL, {"cell": "plot", "code": "y"}).allowed


def test_record_delete_forgets_the_cell() -> None:
    ledger = _leaf(record_read(Ledger(), "leaf", "h", name="tmp"))
    ledger = record_delete(ledger, "leaf", version="v2")
    assert ledger.reads == {} and ledger.names == {} and ledger.descendant_checks == {}
    assert ledger.notebook_version == "v2"
    assert check(POLICY, ledger, EDIT_CELL, {"cell": "leaf"}).rule == RULE_READ_BEFORE_EDIT


def test_record_version_same_version_is_a_no_op() -> None:
    ledger = _leaf(Ledger())
    assert record_version(ledger, "v1") is ledger


# --------------------------------------------------------------------------- edit_cell


def test_edit_without_a_read_is_refused_with_next_step() -> None:
    decision = check(POLICY, Ledger(), EDIT_CELL, {"cell": "c1", "old": "a", "new": "b"})
    assert decision == Decision(
        allowed=False,
        rule=RULE_READ_BEFORE_EDIT,
        reason=decision.reason,
        tool=EDIT_CELL,
        args_summary='{"cell": "c1", "new": "b", "old": "a"}',
    )
    assert decision.reason.startswith("edit_cell refused; nothing was changed.")
    assert "Call read_cell(cell='c1')" in decision.reason


def test_edit_after_read_is_allowed_with_or_without_expected_hash() -> None:
    ledger = record_read(Ledger(), "c1", "h1")
    allowed = check(POLICY, ledger, EDIT_CELL, {"cell": "c1", "code": "x = 2"})
    assert allowed.allowed and allowed.rule is None and not allowed.needs_approval
    assert check(POLICY, ledger, EDIT_CELL, {"cell": "c1", "expected_hash": "h1"}).allowed


def test_edit_with_a_hash_that_was_not_read_is_refused() -> None:
    ledger = record_read(Ledger(), "c1", "h1")
    decision = check(POLICY, ledger, EDIT_CELL, {"cell": "c1", "code": "x", "expected_hash": "hX"})
    assert decision.rule == RULE_STALE_READ
    assert "'hX'" in decision.reason and "'h1'" in decision.reason


def test_reads_are_per_cell() -> None:
    ledger = record_read(Ledger(), "c1", "h1")
    assert check(POLICY, ledger, EDIT_CELL, {"cell": "c2", "code": "x"}).rule == (
        RULE_READ_BEFORE_EDIT
    )


def test_edit_by_cell_name() -> None:
    ledger = record_read(Ledger(), "c1", "h1", name="load")
    assert check(POLICY, ledger, EDIT_CELL, {"cell": "load", "expected_hash": "h1"}).allowed


@pytest.mark.parametrize("args", [{}, {"cell": ""}, {"cell": 3}], ids=["missing", "empty", "int"])
def test_edit_without_a_cell_is_invalid(args: dict[str, Any]) -> None:
    decision = check(POLICY, record_read(Ledger(), "c1", "h"), EDIT_CELL, args)
    assert decision.rule == RULE_INVALID_ARGUMENTS
    assert "needs `cell`" in decision.reason


def test_read_rule_can_be_switched_off() -> None:
    policy = Policy(require_read_before_edit=False)
    assert check(policy, Ledger(), EDIT_CELL, {"cell": "c1", "expected_hash": "any"}).allowed


# --------------------------------------------------------------------------- delete_cell


def test_delete_without_inspection_is_refused_with_next_step() -> None:
    decision = check(POLICY, Ledger(), DELETE_CELL, {"cell": "a"})
    assert not decision.allowed
    assert decision.rule == RULE_DESCENDANT_CHECK
    assert "Call inspect_graph(cell='a') first" in decision.reason


def test_delete_of_a_leaf_after_inspection_is_allowed() -> None:
    assert check(POLICY, _leaf(Ledger()), DELETE_CELL, {"cell": "leaf"}).allowed


def test_inspection_goes_stale_when_another_edit_lands() -> None:
    ledger = _leaf(record_read(Ledger(), "other", "h"))
    ledger = record_write(ledger, "other", "h2", version="v2")
    decision = check(POLICY, ledger, DELETE_CELL, {"cell": "leaf"})
    assert decision.rule == RULE_DESCENDANT_CHECK
    assert "inspect_graph(cell='leaf') again" in decision.reason
    assert check(POLICY, _leaf(ledger, version="v2"), DELETE_CELL, {"cell": "leaf"}).allowed


def test_inspection_goes_stale_when_a_person_changes_the_notebook() -> None:
    ledger = record_version(_leaf(Ledger()), "v-after-human-edit")
    assert check(POLICY, ledger, DELETE_CELL, {"cell": "leaf"}).rule == RULE_DESCENDANT_CHECK


def test_inspection_of_one_cell_does_not_cover_another() -> None:
    ledger = _leaf(Ledger(), "leaf")
    assert check(POLICY, ledger, DELETE_CELL, {"cell": "b"}).rule == RULE_DESCENDANT_CHECK


def test_delete_with_descendants_needs_them_acknowledged() -> None:
    decision = check(POLICY, _inspected(Ledger()), DELETE_CELL, {"cell": "a"})
    assert decision.rule == RULE_ACKNOWLEDGE_DESCENDANTS
    assert "'b' (loses df), 'c' (loses df, x)" in decision.reason
    assert "acknowledge_descendants=['b', 'c']" in decision.reason


@pytest.mark.parametrize(
    "ack", [["b", "c"], ["c", "b", "extra"], True], ids=["list", "superset", "true"]
)
def test_acknowledged_descendants_allow_the_delete(ack: object) -> None:
    args = {"cell": "a", "acknowledge_descendants": ack}
    assert check(POLICY, _inspected(Ledger()), DELETE_CELL, args).allowed


@pytest.mark.parametrize("ack", [["b"], "b", False, None, 3], ids=["part", "str", "F", "None", "3"])
def test_partial_or_bogus_acknowledgement_is_refused(ack: object) -> None:
    args = {"cell": "a", "acknowledge_descendants": ack}
    decision = check(POLICY, _inspected(Ledger()), DELETE_CELL, args)
    assert decision.rule == RULE_ACKNOWLEDGE_DESCENDANTS
    assert "acknowledge_descendants=['b', 'c']" in decision.reason


def test_partial_acknowledgement_names_what_is_missing() -> None:
    args = {"cell": "a", "acknowledge_descendants": ["b"]}
    decision = check(POLICY, _inspected(Ledger()), DELETE_CELL, args)
    assert "Not acknowledged: ['c']" in decision.reason


def test_acknowledgement_by_cell_name() -> None:
    ledger = record_cells(
        _inspected(Ledger()), {"b": None, "c": None}, names={"b": "plot"}, complete=False
    )
    args = {"cell": "a", "acknowledge_descendants": ["plot", "c"]}
    assert check(POLICY, ledger, DELETE_CELL, args).allowed


def test_delete_by_cell_name() -> None:
    ledger = _leaf(record_read(Ledger(), "leaf", "h", name="scratch"))
    assert check(POLICY, ledger, DELETE_CELL, {"cell": "scratch"}).allowed


def test_delete_rules_can_be_switched_off() -> None:
    assert check(
        Policy(require_descendant_check=False), Ledger(), DELETE_CELL, {"cell": "a"}
    ).allowed
    no_ack = Policy(require_ack_of_descendants=False)
    assert check(no_ack, _inspected(Ledger()), DELETE_CELL, {"cell": "a"}).allowed
    stale = record_version(_inspected(Ledger()), "v2")
    assert check(Policy(require_descendant_check=False), stale, DELETE_CELL, {"cell": "a"}).allowed


def test_approve_every_delete() -> None:
    decision = check(Policy(approve_deletes=True), _leaf(Ledger()), DELETE_CELL, {"cell": "leaf"})
    assert decision.allowed and decision.needs_approval
    assert decision.rule == RULE_APPROVE_DELETE
    assert "a person must approve" in decision.reason


def test_approve_only_deletes_with_descendants() -> None:
    policy = Policy(approve_deletes="with_descendants")
    leaf = check(policy, _leaf(Ledger()), DELETE_CELL, {"cell": "leaf"})
    assert leaf.allowed and not leaf.needs_approval
    args = {"cell": "a", "acknowledge_descendants": True}
    parent = check(policy, _inspected(Ledger()), DELETE_CELL, args)
    assert parent.allowed and parent.needs_approval
    assert "affects 'b' (loses df), 'c' (loses df, x)" in parent.reason


def test_refusal_wins_over_approval() -> None:
    decision = check(Policy(approve_deletes=True), Ledger(), DELETE_CELL, {"cell": "a"})
    assert not decision.allowed and not decision.needs_approval


# --------------------------------------------------------------------------- apply_changes


def test_batch_of_allowed_changes() -> None:
    ledger = _leaf(record_read(Ledger(), "c1", "h1"))
    changes = [
        {"op": "create", "code": "y = 1"},
        {"op": "edit", "cell": "c1", "code": "x = 2", "expected_hash": "h1"},
        {"op": "replace", "cell": "c1", "old": "2", "new": "3"},
        {"op": "move", "cell": "zz", "after": "c1"},
        {"op": "run", "cell": "zz"},
        {"op": "delete", "cell": "leaf"},
    ]
    assert check(POLICY, ledger, APPLY_CHANGES, {"changes": changes}).allowed


def test_batch_reports_every_problem_at_once() -> None:
    ledger = record_read(Ledger(), "c1", "h1")
    changes = [
        {"op": "edit", "cell": "c1", "code": "x", "expected_hash": "h1"},
        {"op": "replace", "cell": "c2", "old": "a", "new": "b"},
        {"op": "delete", "cell": "c3"},
        {"op": "explode", "cell": "c1"},
        "not a dict",
    ]
    decision = check(POLICY, ledger, APPLY_CHANGES, {"changes": changes})
    assert not decision.allowed
    assert decision.rule == RULE_READ_BEFORE_EDIT  # the first problem
    assert "change #2 (replace): you have not read cell 'c2'" in decision.reason
    assert "change #3 (delete): you have not checked what depends on cell 'c3'" in decision.reason
    assert "change #4 needs `op`" in decision.reason
    assert "change #5 needs `op`" in decision.reason
    assert "change #1" not in decision.reason


@pytest.mark.parametrize("changes", [None, "edit c1", {"op": "edit"}], ids=["none", "str", "dict"])
def test_batch_needs_a_list(changes: object) -> None:
    decision = check(POLICY, Ledger(), APPLY_CHANGES, {"changes": changes})
    assert decision.rule == RULE_INVALID_ARGUMENTS


def test_descendants_deleted_in_the_same_batch_need_no_acknowledgement() -> None:
    ledger = _inspected(Ledger())
    ledger = record_graph(ledger, "v1", "b", [], {})
    ledger = record_graph(ledger, "v1", "c", [], {})
    changes = [{"op": "delete", "cell": c} for c in ("a", "b", "c")]
    assert check(POLICY, ledger, APPLY_CHANGES, {"changes": changes}).allowed
    only_two = check(POLICY, ledger, APPLY_CHANGES, {"changes": changes[:2]})
    assert only_two.rule == RULE_ACKNOWLEDGE_DESCENDANTS
    assert "affects 1 descendant cell(s): 'c' (loses df, x)" in only_two.reason


def test_batch_deleting_a_parent_still_needs_each_child_inspected() -> None:
    changes = [
        {"op": "delete", "cell": "a", "acknowledge_descendants": ["c"]},
        {"op": "delete", "cell": "b"},
    ]
    decision = check(POLICY, _inspected(Ledger()), APPLY_CHANGES, {"changes": changes})
    assert decision.rule == RULE_DESCENDANT_CHECK
    assert "cell 'b'" in decision.reason


def test_batch_cannot_edit_a_cell_it_deletes() -> None:
    ledger = _leaf(record_read(Ledger(), "leaf", "h"))
    changes = [{"op": "edit", "cell": "leaf", "code": "x"}, {"op": "delete", "cell": "leaf"}]
    decision = check(POLICY, ledger, APPLY_CHANGES, {"changes": changes})
    assert decision.rule == RULE_INVALID_ARGUMENTS
    assert "also deleted in this batch" in decision.reason


def test_batch_with_a_delete_needing_approval() -> None:
    policy = Policy(approve_deletes=True)
    changes = [{"op": "create", "code": "z = 1"}, {"op": "delete", "cell": "leaf"}]
    decision = check(policy, _leaf(Ledger()), APPLY_CHANGES, {"changes": changes})
    assert decision.allowed and decision.needs_approval and decision.rule == RULE_APPROVE_DELETE


# --------------------------------------------------------------------------- other tools, events


@pytest.mark.parametrize("tool", ["read_cell", "read_notebook", "create_cell", "run_cell", "x"])
def test_other_tools_are_allowed(tool: str) -> None:
    decision = check(POLICY, Ledger(), tool, {"cell": "anything"})
    assert decision == Decision(
        allowed=True, rule=None, reason="allowed", tool=tool, args_summary='{"cell": "anything"}'
    )


def test_refusals_become_events_and_allowed_calls_change_nothing() -> None:
    ledger = record_read(Ledger(), "c1", "h1")
    decision, after = check_and_record(POLICY, ledger, EDIT_CELL, {"cell": "c1", "code": "x"})
    assert decision.allowed and after is ledger

    long_code = "print('hello')\n" * 100
    decision, after = check_and_record(POLICY, ledger, EDIT_CELL, {"cell": "c9", "code": long_code})
    assert not decision.allowed
    (event,) = after.events
    assert event.tool == EDIT_CELL
    assert event.rule == RULE_READ_BEFORE_EDIT
    assert event.reason == decision.reason
    assert "(1500 chars)" in event.args and len(event.args) < 200
    assert event.seq == after.clock

    _, after2 = check_and_record(POLICY, after, DELETE_CELL, {"cell": "c1"})
    assert [e.rule for e in after2.events] == [RULE_READ_BEFORE_EDIT, RULE_DESCENDANT_CHECK]
    assert record_decision(after2, Decision(allowed=True, rule=None, reason="ok")) is after2


def test_args_summary_is_bounded_for_huge_batches() -> None:
    changes = [{"op": "create", "code": f"v{i} = {i}"} for i in range(200)]
    decision = check(POLICY, Ledger(), APPLY_CHANGES, {"changes": changes})
    assert len(decision.args_summary) < 360
    assert decision.args_summary.endswith("chars)")


# --------------------------------------------------------------------------- merge_ledgers

Step = Callable[[Ledger], Ledger]


def _random_step(rng: random.Random) -> Step:
    """One random ledger update, its parameters drawn now so the step is replayable."""
    cells = ["a", "b", "c", "d"]
    cell = rng.choice(cells)
    n = rng.randrange(3)
    kind = rng.randrange(7)
    if kind == 0:
        return lambda ledger: record_read(ledger, cell, f"h{n}")
    if kind == 1:
        return lambda ledger: record_write(ledger, cell, f"w{n}")
    if kind == 2:
        return lambda ledger: record_delete(ledger, cell)
    if kind == 3:
        return lambda ledger: record_version(ledger, f"v{n}")
    if kind == 4:
        return lambda ledger: _leaf(ledger, cell, version=f"v{n}")
    if kind == 5:
        listing = {c: f"h{rng.randrange(3)}" for c in rng.sample(cells, 2)}
        return lambda ledger: record_cells(ledger, listing)
    tool = rng.choice([EDIT_CELL, DELETE_CELL])
    return lambda ledger: check_and_record(POLICY, ledger, tool, {"cell": cell})[1]


def _random_steps(rng: random.Random, n: int) -> list[Step]:
    return [_random_step(rng) for _ in range(n)]


def _run(ledger: Ledger, steps: list[Step]) -> Ledger:
    for step in steps:
        ledger = step(ledger)
    return ledger


@pytest.mark.parametrize("seed", range(40))
def test_merge_with_a_successor_is_the_successor(seed: int) -> None:
    rng = random.Random(seed)
    base = _run(Ledger(), _random_steps(rng, 8))
    successor = _run(base, _random_steps(rng, 8))
    assert merge_ledgers(base, successor) == successor
    assert merge_ledgers(successor, successor) == successor


@pytest.mark.parametrize("seed", range(40))
def test_merge_of_parallel_branches_keeps_what_each_learned(seed: int) -> None:
    rng = random.Random(seed)
    base = _run(Ledger(), _random_steps(rng, 6))
    left = record_read(base, "left-only", "hl")
    right = record_read(base, "right-only", "hr")
    left = _run(left, _random_steps(rng, 1))
    merged = merge_ledgers(merge_ledgers(base, left), right)
    assert merged.reads["right-only"] == "hr"
    assert merged.reads.get("left-only") == left.reads.get("left-only")  # a listing may drop it
    assert set(merged.events) == set(left.events) | set(right.events)
    assert len(merged.events) == len(set(merged.events))
    assert merged.clock == max(left.clock, right.clock)


def test_merge_of_branches_where_one_edited() -> None:
    base = _leaf(record_read(Ledger(), "c1", "h1"))
    edited = record_write(base, "c1", "h2", version="v2")
    inspected_again = record_read(base, "c2", "h9")  # a parallel read, still at v1
    merged = merge_ledgers(merge_ledgers(base, edited), inspected_again)
    assert merged.notebook_version == "v2"  # the parallel branch does not bring v1 back
    assert merged.reads == {"c1": "h2", "c2": "h9"}
    assert check(POLICY, merged, DELETE_CELL, {"cell": "leaf"}).rule == RULE_DESCENDANT_CHECK


def test_merge_keeps_a_delete_over_an_older_read() -> None:
    base = _leaf(record_read(Ledger(), "leaf", "h"))
    deleted = record_delete(base, "leaf", version="v2")
    other = record_read(base, "x", "hx")
    merged = merge_ledgers(merge_ledgers(base, deleted), other)
    assert "leaf" not in merged.reads and "leaf" not in merged.descendant_checks
    assert merged.reads == {"x": "hx"}


def test_merge_of_two_different_versions_at_once_is_unknown() -> None:
    base = Ledger()
    merged = merge_ledgers(record_version(base, "v1"), record_version(base, "v2"))
    assert merged.notebook_version is None


def test_merge_handles_empty_sides_and_dicts() -> None:
    ledger = record_read(Ledger(), "c1", "h1")
    assert merge_ledgers(None, ledger) is ledger
    assert merge_ledgers(ledger, None) is ledger
    assert merge_ledgers(None, None) == Ledger()
    assert merge_ledgers(Ledger(), ledger.model_dump(mode="json")) == ledger


def test_merge_of_hand_built_ledgers_unions_entries() -> None:
    merged = merge_ledgers(Ledger(reads={"a": "1"}), Ledger(reads={"b": "2", "a": "3"}))
    assert merged.reads == {"a": "3", "b": "2"}


# --------------------------------------------------------------------------- inside LangGraph


class _State(TypedDict):
    ledger: Annotated[Ledger, merge_ledgers]
    log: Annotated[list[str], operator.add]


def _parallel_graph() -> Any:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, StateGraph

    def reader(state: _State) -> dict[str, Any]:
        return {"ledger": record_read(state["ledger"], "c1", "h1"), "log": ["read"]}

    def inspector(state: _State) -> dict[str, Any]:
        return {"ledger": _leaf(state["ledger"], "c2", version="v5"), "log": ["inspect"]}

    def guard(state: _State) -> dict[str, Any]:
        decision, ledger = check_and_record(POLICY, state["ledger"], DELETE_CELL, {"cell": "c3"})
        return {"ledger": ledger, "log": [str(decision.rule)]}

    builder = StateGraph(_State)
    builder.add_node("reader", reader)
    builder.add_node("inspector", inspector)
    builder.add_node("guard", guard)
    builder.add_edge(START, "reader")
    builder.add_edge(START, "inspector")
    builder.add_edge(["reader", "inspector"], "guard")
    return builder.compile(checkpointer=InMemorySaver())


def test_ledger_lives_in_langgraph_state_across_parallel_nodes_and_checkpoints() -> None:
    graph = _parallel_graph()
    config: Any = {"configurable": {"thread_id": "ledger"}}
    graph.invoke({"ledger": Ledger(), "log": []}, config)
    ledger = graph.get_state(config).values["ledger"]
    assert isinstance(ledger, Ledger)
    assert ledger.reads == {"c1": "h1"}
    assert ledger.notebook_version == "v5"
    assert "c2" in ledger.descendant_checks
    assert [e.rule for e in ledger.events] == [RULE_DESCENDANT_CHECK]

    # A second run on the same thread starts from the checkpointed ledger.
    graph.invoke({"log": []}, config)
    again = graph.get_state(config).values["ledger"]
    assert again.reads == {"c1": "h1"}
    assert len(again.events) == 2


def test_ledger_survives_checkpoints_with_strict_msgpack() -> None:
    # LANGGRAPH_STRICT_MSGPACK is read at import time, so this needs a fresh interpreter.
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_guards import _parallel_graph
        from marimo_pair_tools.guards import Ledger
        graph = _parallel_graph()
        config = {{"configurable": {{"thread_id": "strict"}}}}
        graph.invoke({{"ledger": Ledger(), "log": []}}, config)
        graph.invoke({{"log": []}}, config)
        ledger = graph.get_state(config).values["ledger"]
        assert type(ledger) is Ledger, type(ledger)
        assert ledger.reads == {{"c1": "h1"}}, ledger
        assert type(ledger.events[0]).__name__ == "GuardEvent"
        print("ok")
        """
    )
    env = {**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "unregistered" not in result.stderr.lower()


def test_inspect_by_name_lets_a_delete_by_name_pass() -> None:
    """Found by the CLI run test: inspect_graph(cell=NAME) must teach the ledger NAME."""
    ledger = record_tool_result(
        Ledger(),
        INSPECT_GRAPH,
        {"cell": "old_cell"},
        {
            "notebook_version": "v1",
            "focus": {"cell_id": "MJUe", "name": "old_cell", "descendants": [], "dependents": []},
        },
    )
    decision = check(Policy(), ledger, DELETE_CELL, {"cell": "old_cell"})
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(
    "code",
    [
        "import marimo._code_mode as cm",
        "from marimo import _code_mode",
        "from marimo._runtime.context import get_context",
        "import os\nif True:\n    import marimo._messaging.notification as n",
    ],
)
def test_scratchpad_may_not_edit_cells_past_the_guards(code: str) -> None:
    """The early, friendly refusal of plain imports; disguised routes meet the fence."""
    decision = check(Policy(), Ledger(), "execute_code", {"code": code})
    assert not decision.allowed
    assert decision.rule == "scratchpad_edit"
    assert "edit_cell" in decision.reason


@pytest.mark.parametrize(
    "code",
    [
        "print(df.head())",
        "settings = {'code_mode': True}\nsettings['code_mode']",
        "df['code_mode'] = 1",
        "# we do not use marimo._code_mode here\nx = 'cell_manager'",
    ],
)
def test_scratchpad_reads_and_mere_mentions_are_allowed(code: str) -> None:
    assert check(Policy(), Ledger(), "execute_code", {"code": code}).allowed
