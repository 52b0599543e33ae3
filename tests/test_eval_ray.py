"""The eval's Ray backend on a local Ray cluster (2 CPUs) that the fixture starts.

The same tasks with the same agents (oracle, null, adversary) run on the
local backend (the default: threads, a cold server per task) and on Ray (two
actors, each with a warm server): every outcome must be identical. The subset
covers a data file shipped to the workers, a person's edit mid-task, and an
approval-free delete refusal. A task that needs a package no worker has is
reported as not run by the workers' own check.

Ray is in the ``test`` extra; without it these tests skip locally and fail
under CI, like the browser tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marimo_pair_tools.eval import RunConfig, SuiteResult, TaskResult, load_tasks, run_suite

try:
    import ray
except ImportError:  # pragma: no cover - ray is in the test extra
    if os.environ.get("CI"):
        raise
    pytest.skip("ray is not installed (pip install -e '.[test]')", allow_module_level=True)

TASKS_DIR = Path(__file__).resolve().parents[1] / "notebooks" / "tasks"
SUBSET = (
    "fix_name_error",
    "revenue_by_region",
    "concurrent_edit_same_cell",
    "refuse_delete_with_dependents",
)
AGENTS = ["oracle", "null", "adversarial"]
TASKS = load_tasks(TASKS_DIR, names=SUBSET)
ABSENT = "mpt_absent_package"

pytestmark = pytest.mark.timeout(600)


def _config(out: Path, **changes: Any) -> RunConfig:
    # A generous time scale: CI shares two cores with the other test worker.
    return RunConfig(out_dir=out, workers=2, progress=False, time_scale=3.0, **changes)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster with 2 CPUs; yields its address for other processes."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> SuiteResult:
    return run_suite(TASKS, AGENTS, _config(tmp_path_factory.mktemp("local")))


@pytest.fixture(scope="module")
def on_ray(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> SuiteResult:
    base = TASKS[0]
    absent = dataclasses.replace(
        base,
        name="needs_absent",
        spec=dataclasses.replace(base.spec, requires=(ABSENT,)),
    )
    out = tmp_path_factory.mktemp("ray")
    return run_suite([*TASKS, absent], AGENTS, _config(out, backend="ray"))


def _outcome(r: TaskResult) -> tuple[object, ...]:
    """Everything a run decides (not its timings or ids)."""
    return (
        r.status,
        r.passed,
        r.score,
        [(g.grader, g.score, g.passed, g.detail) for g in r.grades],
        r.steps,
        r.tool_calls,
        r.tools,
        r.tool_errors,
        r.guard_refusals,
        r.guard_rules,
        r.violations_attempted,
        r.violations_executed,
        r.notebook_unchanged,
        r.injected,
        r.limit_hit,
        r.error,
        [c.code_hash for c in r.after],
    )


def test_ray_scores_equal_the_local_backend(local: SuiteResult, on_ray: SuiteResult) -> None:
    want = {(r.task, r.agent): _outcome(r) for r in local.results}
    got = {(r.task, r.agent): _outcome(r) for r in on_ray.results if r.task in SUBSET}
    assert len(want) == len(SUBSET) * len(AGENTS)
    assert got == want
    assert sum(r.passed for r in local.results) == len(SUBSET)  # the oracle's, and only those
    assert local.servers == "cold"
    assert all(not r.timings.warm for r in local.results)


def test_ray_runs_on_warm_servers_and_writes_everything_on_the_driver(on_ray: SuiteResult) -> None:
    assert (on_ray.backend, on_ray.servers, on_ray.workers) == ("ray", "warm", 2)
    ran = [r for r in on_ray.results if r.status != "not_run"]
    assert all(r.timings.warm for r in ran)
    # Two actors, one server each: only their first tasks started one.
    assert sum(r.timings.server_start > 0 for r in ran) == 2
    assert sum(r.timings.prefetched for r in ran) >= len(ran) - 4
    out = on_ray.out_dir
    assert len((out / "results.jsonl").read_text().splitlines()) == len(on_ray.results)
    runs = {
        json.loads(line)["run_id"] for line in (out / "trajectories.jsonl").read_text().splitlines()
    }
    assert runs == {r.run_id for r in ran}
    for r in ran:
        assert (out / "notebooks" / r.agent / f"{r.task}.py").is_file()
        snapshot = json.loads((out / "snapshots" / r.agent / f"{r.task}.json").read_text())
        assert snapshot["run_id"] == r.run_id
    assert "(ray, warm servers)" in (out / "summary.md").read_text()


def test_a_task_no_ray_worker_can_run_is_not_run(on_ray: SuiteResult) -> None:
    skipped = [r for r in on_ray.results if r.task == "needs_absent"]
    assert [(r.agent, r.status, r.missing) for r in skipped] == [
        (agent, "not_run", [ABSENT]) for agent in AGENTS
    ]


def test_the_cli_joins_a_running_cluster(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "marimo_pair_tools.eval.cli",
            "--tasks",
            str(TASKS_DIR),
            "--task",
            "fix_name_error",
            "--model",
            "oracle",
            "--backend",
            "ray",
            "--ray-address",
            cluster,
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
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "oracle: 1/1 passed" in proc.stdout
    assert "(ray, warm servers)" in (out / "summary.md").read_text()
