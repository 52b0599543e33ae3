"""Declared task requirements, repeats with pass@k, and the eval CLI's new options.

The not-run cases use a package that exists nowhere (``mpt_absent_package``):
that is a real environment lacking a package, not a mock. The README's
figure for an interpreter without pandas and matplotlib comes from a run in
such a virtual environment (see ``docs/eval-at-scale.md``); building one here
would cost a minute of installing per test run.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from marimo_pair_tools.eval import (
    RunConfig,
    Task,
    TaskResult,
    aggregate,
    load_tasks,
    pass_at_k,
    read_results,
    render_summary,
    run_suite,
)
from marimo_pair_tools.eval.runner import Timings
from marimo_pair_tools.eval.tasks import importable

TASKS_DIR = Path(__file__).resolve().parents[1] / "notebooks" / "tasks"
TASKS = load_tasks(TASKS_DIR)
ABSENT = "mpt_absent_package"


def _task(name: str) -> Task:
    (task,) = [t for t in TASKS if t.name == name]
    return task


def _needing(task: Task, *packages: str, name: str | None = None) -> Task:
    spec = dataclasses.replace(task.spec, requires=tuple(packages))
    return dataclasses.replace(task, name=name or task.name, spec=spec)


# --------------------------------------------------------------------------- requirements


def _imports(source: str) -> set[str]:
    """Top-level modules imported by Python source (and by code strings inside it)."""
    found: set[str] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                found |= _imports(node.value)  # an oracle's cell code
            except SyntaxError:
                continue
    return found


@pytest.mark.parametrize("task", TASKS, ids=[t.name for t in TASKS])
def test_every_task_declares_the_packages_its_code_imports(task: Task) -> None:
    sources = [task.notebook_path.read_text(), (task.directory / "task.py").read_text()]
    imported = set().union(*(_imports(source) for source in sources))
    third_party = {
        name
        for name in imported
        if name not in sys.stdlib_module_names
        and name not in {"marimo", "marimo_pair_tools"}
        and importable(name)  # a task may import a module that does not exist: its bug
    }
    assert third_party <= set(task.spec.requires), (task.name, third_party)


def test_pandas_and_matplotlib_tasks_are_the_ones_that_need_them() -> None:
    needing = {t.name: t.spec.requires for t in TASKS if t.spec.requires}
    assert needing == {
        "bar_chart": ("pandas", "matplotlib"),
        "dseval_army_filter": ("pandas",),
        "dseval_regiment_groupby": ("pandas",),
        "fix_key_error": ("pandas",),
        "line_plot": ("matplotlib",),
        "rename_variable": ("pandas",),
        "revenue_by_region": ("pandas",),
    }
    assert len(TASKS) - len(needing) == 22  # the oracle's 22/29 in a bare environment


def test_a_task_whose_package_is_missing_is_not_run_and_said_so_up_front(tmp_path: Path) -> None:
    absent = _needing(_task("fix_name_error"), "pandas", ABSENT, name="needs_absent")
    tasks = [_task("fix_type_error"), absent]
    progress = io.StringIO()
    suite = run_suite(
        tasks,
        ["oracle"],
        RunConfig(out_dir=tmp_path, time_scale=3.0),
        progress_stream=progress,
    )
    lines = progress.getvalue().splitlines()
    assert f"needs_absent: not run, needs {ABSENT}" in lines[0]  # before anything ran
    by_task = {r.task: r for r in suite.results}
    skipped = by_task["needs_absent"]
    assert (skipped.status, skipped.missing, skipped.passed) == ("not_run", [ABSENT], False)
    assert skipped.timings.total == 0  # nothing was started for it
    (summary,) = aggregate(suite.results)
    assert (summary.tasks, summary.passed, summary.pass_rate) == (1, 1, 1.0)
    assert (summary.not_run, summary.not_run_needs) == (1, {ABSENT: ["needs_absent"]})
    text = (tmp_path / "summary.md").read_text()
    assert f"1 not run (needs {ABSENT}: needs_absent)" in text
    assert "Why runs did not pass" not in text  # not a failure
    assert read_results(tmp_path / "results.jsonl")[0].task == "needs_absent"
    exported = (tmp_path / "agentevals.jsonl").read_text().splitlines()
    assert [json.loads(row)["task"] for row in exported] == ["fix_type_error"]


class _Terminal(io.StringIO):
    """What the progress bar writes to a terminal (a pty would show the same bytes)."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_not_run_line_stays_while_the_bar_moves() -> None:
    from marimo_pair_tools.eval.runner import _Progress

    screen = _Terminal()
    progress = _Progress(3, screen, "")
    progress.update(
        _row("t1", 0, True, 1.0).model_copy(
            update={"status": "not_run", "passed": False, "missing": ["pandas"]}
        )
    )
    progress.update(_row("t2", 0, True, 1.0))
    progress.update(_row("t3", 0, False, 0.0))
    text = screen.getvalue()
    assert "SKIP  t1: not run, needs pandas pass 0/0 (1 not run)" in text
    assert text.split("\r\033[K")[1].endswith("\n")  # its own line: not overwritten
    assert "pass 1/2 (1 not run)" in text.rsplit("\r\033[K", 1)[1]


# --------------------------------------------------------------------------- pass@k


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - 21 / 45)  # 1 - C(7,2)/C(10,2)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 0, 3) == 0.0
    assert pass_at_k(3, 3, 1) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def _row(task: str, repeat: int, passed: bool, score: float) -> TaskResult:
    return TaskResult(
        task=task,
        agent="model",
        repeat=repeat,
        status="passed" if passed else "failed",
        passed=passed,
        score=score,
        timings=Timings(attach=0.4, server_stop=0.01, warm=True),
    )


def test_repeats_report_pass_at_k_and_the_spread_of_scores() -> None:
    # Task a passes 1 of 3 runs, task b 3 of 3: pass@1 = (1/3 + 1)/2, pass@3 = 1.
    results = [
        _row("a", 0, True, 1.0),
        _row("a", 1, False, 0.5),
        _row("a", 2, False, 0.0),
        _row("b", 0, True, 1.0),
        _row("b", 1, True, 1.0),
        _row("b", 2, True, 1.0),
    ]
    (summary,) = aggregate(results)
    assert summary.repeats == 3
    assert summary.pass_at[1] == pytest.approx((1 / 3 + 1) / 2, abs=1e-4)
    assert summary.pass_at[2] == pytest.approx((pass_at_k(3, 1, 2) + 1) / 2, abs=1e-4)
    assert summary.pass_at[3] == 1.0
    assert summary.pass_rate == pytest.approx(4 / 6, abs=1e-4)  # pass@1 over all runs
    # Mean score per repeat: 1.0, 0.75, 0.5.
    assert summary.score_range == (0.5, 1.0)
    assert summary.score_spread == pytest.approx(0.2041, abs=1e-4)
    assert summary.task_score_stdev == pytest.approx((0.4082 + 0.0) / 2, abs=1e-4)
    assert summary.server_overhead_median == pytest.approx(0.41)  # warm rows count too
    text = render_summary(results)
    assert "## Repeats" in text
    assert "| model | 3 | 66.7% | 83.3% | 100.0% | 0.750 | 0.204 | 0.500–1.000 | 0.204 |" in text


def test_one_run_per_task_has_no_repeats_section() -> None:
    (summary,) = aggregate([_row("a", 0, True, 1.0)])
    assert (summary.repeats, summary.pass_at, summary.score_spread) == (1, {1: 1.0}, 0.0)
    assert "## Repeats" not in render_summary([_row("a", 0, True, 1.0)])


def test_repeats_run_each_pair_k_times_on_warm_servers(tmp_path: Path) -> None:
    config = RunConfig(out_dir=tmp_path, repeats=2, servers="warm", time_scale=3.0, progress=False)
    suite = run_suite([_task("fix_name_error")], ["oracle"], config)
    assert [(r.task, r.repeat, r.status) for r in suite.results] == [
        ("fix_name_error", 0, "passed"),
        ("fix_name_error", 1, "passed"),
    ]
    assert suite.servers == "warm"
    first, second = suite.results
    assert first.timings.warm and first.timings.server_start > 0
    assert second.timings.server_start == 0 and second.timings.prefetched
    assert (tmp_path / "notebooks" / "oracle" / "fix_name_error.py").is_file()
    assert (tmp_path / "notebooks" / "oracle" / "fix_name_error.r1.py").is_file()
    assert (tmp_path / "snapshots" / "oracle" / "fix_name_error.r1.json").is_file()
    (summary,) = aggregate(suite.results)
    assert summary.pass_at == {1: 1.0, 2: 1.0}
    assert "## Repeats" in (tmp_path / "summary.md").read_text()
    # A later run in the same directory removes the repeats it no longer writes.
    run_suite([], ["oracle"], dataclasses.replace(config, repeats=1))
    assert not (tmp_path / "notebooks").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_reports_not_run_tasks_and_repeats(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    shutil.copytree(TASKS_DIR / "fix_name_error", tasks / "fix_name_error")
    shutil.copytree(TASKS_DIR / "fix_type_error", tasks / "needs_absent")
    spec = tasks / "needs_absent" / "task.py"
    spec.write_text(spec.read_text().replace("TaskSpec(", f"TaskSpec(requires=({ABSENT!r},),", 1))
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "marimo_pair_tools.eval.cli",
            "--tasks",
            str(tasks),
            "--model",
            "oracle",
            "--repeats",
            "2",
            "--servers",
            "warm",
            "--time-scale",
            "3",
            "--out",
            str(out),
            "--no-progress",
            "--fail-under",
            "1.0",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "oracle: 2/2 passed (100.0%)" in proc.stdout
    assert "pass@1 100.0%, pass@2 100.0%" in proc.stdout
    assert f"2 not run (needs {ABSENT}: needs_absent)" in proc.stdout
    assert len(read_results(out / "results.jsonl")) == 4


def test_cli_refuses_zero_repeats(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "marimo_pair_tools.eval.cli",
            "--repeats",
            "0",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--repeats must be at least 1" in proc.stderr
