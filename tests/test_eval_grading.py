"""Clean runs of saved notebooks, and every task's graders on its unchanged notebook.

No marimo server is needed: these run notebook files in grading processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from marimo_pair_tools.eval import load_tasks
from marimo_pair_tools.eval._clean_run import Zygote, clean_run
from marimo_pair_tools.eval.graders import Evidence, grade_all

from .conftest import write_notebook

TASKS = load_tasks(Path(__file__).resolve().parents[1] / "notebooks" / "tasks")


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote | None]:
    """A warm grading interpreter (POSIX); None elsewhere, which means a fresh process."""
    if not Zygote.supported():
        yield None
        return
    with Zygote() as warm:
        yield warm


@pytest.mark.parametrize("task", TASKS, ids=[t.name for t in TASKS])
def test_no_task_passes_its_unchanged_notebook(task: object, zygote: Zygote | None) -> None:
    """Doing nothing must fail every task (else a null agent would score)."""
    from marimo_pair_tools.eval.tasks import Task

    assert isinstance(task, Task)
    needs = task.needs()
    after = clean_run(
        task.notebook_path, names=needs.names | needs.live, exprs=needs.exprs, zygote=zygote
    )
    before = clean_run(task.notebook_path, run=False, zygote=zygote).cells
    # Without a session the kernel state of an unchanged notebook is its clean run.
    live = {**after.values}
    grades = grade_all(task.graders, Evidence(before=before, after=after, live=live))
    assert not all(g.passed for g in grades), f"{task.name} passes unchanged: {grades}"


def test_clean_run_reports_values_errors_and_skipped_cells(
    tmp_path: Path, zygote: Zygote | None
) -> None:
    path = write_notebook(tmp_path / "nb.py", ["x = 1", "y = x / 0", "z = y + 1", "w = [x, 2]"])
    for warm in (zygote, None):  # forked and fresh process agree
        run = clean_run(path, names=["x", "w", "z"], exprs=["x + 41", "nope"], zygote=warm)
        assert not run.ok
        assert list(run.errors.values()) == ["ZeroDivisionError: division by zero"]
        assert len(run.skipped) == 1  # z's cell: its ancestor raised
        assert run.values["w"] == {"kind": "json", "value": [1, 2]}
        assert "z" not in run.values
        assert run.exprs["x + 41"]["value"] == 42
        assert run.exprs["nope"]["kind"] == "error"
        assert [c.defs for c in run.cells] == [["x"], ["y"], ["z"], ["w"]]


def test_clean_run_structural_and_load_errors(tmp_path: Path, zygote: Zygote | None) -> None:
    twice = write_notebook(tmp_path / "twice.py", ["a = 1", "a = 2"])
    run = clean_run(twice, zygote=zygote)
    assert not run.ok
    assert run.structural_error is not None
    assert "a" in run.structural_error
    assert len(run.cells) == 2

    junk = tmp_path / "junk.py"
    junk.write_text("raise SystemError('not a notebook')\n", encoding="utf-8")
    run = clean_run(junk, zygote=zygote)
    assert not run.ok
    assert run.load_error is not None
    assert "not a notebook" in run.load_error


def test_clean_run_timeout_kills_the_child(tmp_path: Path, zygote: Zygote | None) -> None:
    path = write_notebook(tmp_path / "slow.py", ["import time", "time.sleep(30)"])
    for warm in (zygote, None):
        run = clean_run(path, timeout=1, zygote=warm)
        assert run.timed_out
        assert not run.ok
        assert run.seconds < 10
    if zygote is not None:  # the zygote survives a killed child
        assert clean_run(
            write_notebook(tmp_path / "ok.py", ["v = 3"]), names=["v"], zygote=zygote
        ).ok


def test_data_files_next_to_the_notebook_are_found(tmp_path: Path, zygote: Zygote | None) -> None:
    (tmp_path / "data.txt").write_text("hello", encoding="utf-8")
    path = write_notebook(tmp_path / "nb.py", ['text = open("data.txt").read()'])
    run = clean_run(path, names=["text"], zygote=zygote)
    assert run.values["text"]["value"] == "hello"
