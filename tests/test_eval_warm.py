"""Warm servers: a worker reuses its marimo servers, with a fresh notebook and kernel per task.

Real servers throughout, with two slots (the next task's session opens on the
other server while a task runs) and with one. The freshness test runs three
tasks back to back on one worker's servers: the first leaves a cell's variable
and a module attribute behind; the second (prefetched) and the third (opened
on demand) must see none of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from marimo_pair_tools.eval import AgentSpec, RunConfig, Task, TaskResult, load_tasks, run_task
from marimo_pair_tools.eval import oracle as o
from marimo_pair_tools.eval._clean_run import Zygote
from marimo_pair_tools.eval._warm import WarmServer
from marimo_pair_tools.eval.trajectory import Event
from marimo_pair_tools.testing import ScriptedChatModel, Turn

TASKS_DIR = Path(__file__).resolve().parents[1] / "notebooks" / "tasks"
(TASK,) = load_tasks(TASKS_DIR, names=["fix_name_error"])

_LEAVE = [
    o.create("leaked = 42", name="leak_cell"),
    o.execute("import sys\nsys.mpt_marker = 1"),
    o.execute("import sys\nprint('mine:', leaked, hasattr(sys, 'mpt_marker'))"),
    "Left things behind.",
]
_LOOK = [
    o.execute("import sys\nprint('seen:', 'leaked' in globals(), hasattr(sys, 'mpt_marker'))"),
    o.read_notebook(),
    "Looked.",
]


def _agent(label: str, turns: Sequence[Turn]) -> AgentSpec:
    return AgentSpec(label=label, factory=lambda task: ScriptedChatModel(list(turns)))


def _tool_texts(events: Sequence[Event]) -> str:
    return "\n".join(e.text for e in events if e.kind == "tool")


def _kernels(server_pid: int) -> list[psutil.Process]:
    """The server's kernel processes (marimo spawns one per session)."""
    found = []
    for child in psutil.Process(server_pid).children(recursive=True):
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote | None]:
    """A warm grading interpreter, as each worker of a suite has (None: fresh processes)."""
    if not Zygote.supported():
        yield None
        return
    with Zygote() as warm:
        yield warm


@pytest.fixture(params=[2, 1], ids=["2-slots", "1-slot"])
def run(request: pytest.FixtureRequest, tmp_path: Path, zygote: Zygote | None) -> Iterator[Runner]:
    """``run(agent, upcoming=None)`` runs fix_name_error on one worker's warm servers."""
    warm = WarmServer(slots=request.param)
    yield Runner(warm, zygote, tmp_path)
    warm.close()


class Runner:
    def __init__(self, warm: WarmServer, zygote: Zygote | None, out: Path) -> None:
        self.warm, self.zygote, self.out = warm, zygote, out

    def __call__(
        self, agent: AgentSpec, *, upcoming: Task | None = None
    ) -> tuple[TaskResult, list[Event]]:
        config = RunConfig(out_dir=self.out, time_scale=3.0)
        return run_task(TASK, agent, config, zygote=self.zygote, warm=self.warm, upcoming=upcoming)

    def open_sessions(self) -> list[str]:
        keys = []
        for server in self.warm.servers:
            with server.client() as client:
                keys += [s.key for s in client.sessions()]
        return keys


def test_a_task_cannot_see_what_the_previous_task_left(run: Runner) -> None:
    warm = run.warm
    # With two slots the second task's session opens while the first one's kernel,
    # holding `leaked`, still runs on the other server.
    first, first_events = run(_agent("leaver", _LEAVE), upcoming=TASK)
    assert first.status != "error", first.error
    assert "mine: 42 True" in _tool_texts(first_events)  # it really was there
    assert "leak_cell" in {c.name for c in first.after}

    for prefetched in (True, False):
        result, events = run(_agent("looker", _LOOK))
        assert result.status != "error", result.error
        assert result.timings.prefetched is prefetched
        assert result.timings.warm
        assert result.timings.server_start == 0  # no new server on the critical path
        assert "seen: False False" in _tool_texts(events)
        assert "leak_cell" not in {c.name for c in result.before}
        assert [c.code_hash for c in result.before] == [c.code_hash for c in first.before]

    servers = warm.servers
    assert (warm.starts, warm.sessions_opened, len(servers)) == (len(servers), 3, len(servers))
    assert run.open_sessions() == []  # every task's session was closed...
    deadline = time.monotonic() + 10
    pids = [s.pid for s in servers if s.pid is not None]
    while any(_kernels(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [k for pid in pids for k in _kernels(pid)] == []  # ...and its kernel ended


def test_a_dead_warm_server_is_replaced(run: Runner) -> None:
    warm = run.warm
    first, _ = run(_agent("null", ["Nothing to do."]))
    assert first.timings.server_start > 0
    for server in warm.servers:
        server.kill()
    second, _ = run(_agent("null", ["Nothing to do."]))
    assert second.status == "failed", second.error  # graded normally, not a harness error
    assert second.timings.server_start > 0
    assert warm.starts == 2


def test_a_prefetch_for_another_task_is_closed_not_used(run: Runner) -> None:
    (other,) = load_tasks(TASKS_DIR, names=["fix_type_error"])
    first, _ = run(_agent("null", ["Nothing to do."]), upcoming=other)
    second, _ = run(_agent("null", ["Nothing to do."]))
    assert first.status == second.status == "failed"
    assert not second.timings.prefetched
    assert run.warm.sessions_opened == 3  # fix_name_error, the unused prefetch, fix_name_error
    assert run.open_sessions() == []
