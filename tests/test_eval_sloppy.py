"""The sloppy scripted agent solves what the oracle solves, through the tools' errors.

Real marimo servers, one per task, as the eval harness runs them. The subset has
a whole-code edit, find/replace edits, an atomic batch, a delete with its graph
check, a dropdown set with a list, and a person editing the same cell (the full suite's numbers are in the
notes of issue 15).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marimo_pair_tools.eval import RunConfig, load_tasks, run_suite
from marimo_pair_tools.eval.agents import SloppyDriver, _careless

TASKS_DIR = Path(__file__).resolve().parents[1] / "notebooks" / "tasks"
SUBSET = (
    "rename_variable",
    "split_cell",
    "fix_key_error",
    "delete_dead_cell",
    "drive_dropdown",
    "concurrent_edit_same_cell",
)

pytestmark = pytest.mark.timeout(900)


def test_careless_arguments() -> None:
    sent = _careless(
        {
            "cell": "a",
            "expected_hash": "0123456789abcdef",
            "run": True,
            "acknowledge_descendants": [],
            "changes": [{"op": "edit", "cell": "a", "code": "x", "run": True}],
        }
    )
    assert sent["expected_hash"] != "0123456789abcdef"
    assert "run" not in sent and "acknowledge_descendants" not in sent
    assert isinstance(sent["changes"], str)
    assert json.loads(sent["changes"]) == [{"op": "edit", "cell": "a", "code": "x"}]


def test_sloppy_passes_what_the_oracle_passes(tmp_path: Path) -> None:
    tasks = [t for t in load_tasks(TASKS_DIR) if t.name in SUBSET]
    assert len(tasks) == len(SUBSET)
    config = RunConfig(out_dir=tmp_path, workers=2, progress=False, time_scale=3.0)
    suite = run_suite(tasks, ["oracle", "sloppy"], config)
    by = {(r.agent, r.task): r for r in suite.results}
    for task in SUBSET:
        oracle, sloppy = by[("oracle", task)], by[("sloppy", task)]
        assert oracle.passed, task
        assert sloppy.passed, (task, sloppy.error, [g for g in sloppy.grades if not g.passed])
        assert sloppy.violations_executed == 0
    # It was sloppy: its edits met errors (made-up hashes) and it recovered from them ...
    assert sum(by[("sloppy", t)].tool_errors for t in SUBSET) >= 3
    # ... and it sent lists as JSON strings and calls in parallel.
    lines = (tmp_path / "trajectories.jsonl").read_text(encoding="utf-8").splitlines()
    events = [e for e in map(json.loads, lines) if e["agent"] == "sloppy"]
    calls = [c for e in events if e["kind"] == "model" for c in e.get("tool_calls") or []]
    assert any(isinstance(c["args"].get("changes"), str) for c in calls)
    assert any(len(e.get("tool_calls") or []) > 1 for e in events if e["kind"] == "model")
    # It named cells by their variables; the error told it which cell that is.
    texts = [e.get("text") or "" for e in events if e["kind"] == "tool"]
    assert any("is a variable, defined by cell" in t for t in texts)


def test_driver_turn_count_covers_a_retry_of_every_step() -> None:
    driver = SloppyDriver(["Done."])
    assert len(driver.turns()) == 3
