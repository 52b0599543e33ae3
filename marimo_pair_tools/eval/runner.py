"""Run tasks: a fresh marimo server per task, an agent with limits, graders, results.

One task run, start to finish (`run_task`):

1. copy the task's notebook and data into a private directory;
2. start ``marimo edit --headless`` on it, attach a headless session, run every
   cell (as a person opening the notebook would), take the *before* snapshot;
3. stream the agent (`create_pair_agent` over `MarimoPairToolkit`) under a step
   and a time limit, recording the trajectory; inject "a person's" edits when
   their trigger fires; answer approval requests if configured;
4. take the *after* snapshot and the live values the graders need, copy the
   saved file, stop the server (in the background, while grading runs);
5. run the saved file from scratch in a fresh process and grade it;
6. keep the final notebook and both snapshots under ``out_dir``.

`run_suite` runs many tasks on a thread pool (``workers``): the heavy work is
in the marimo servers and grading processes, so threads overlap it well. Each
finished task is appended to ``results.jsonl`` and ``trajectories.jsonl`` at
once: a crash or Ctrl-C loses at most the tasks in flight. A run owns its
output directory's files: it starts them fresh (and removes what an earlier run
there saved), so every file describes this run only.

A task that crashes the harness (a server that does not start, a tool
transport error, a grader bug) becomes a failed task with the reason, never a
lost run: that is the one place a broad ``except Exception`` is right.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphBubbleUp
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict, Field

from .. import guards
from ..agent import budget_stop, create_pair_agent
from ..errors import ConfigurationError, MarimoPairError
from ..models import EditCell, NotebookSnapshot, RunCell
from ..notebook import Notebook
from ..server import MarimoServer
from ..toolkit import MarimoPairToolkit
from ._clean_run import CellInfo, Zygote, clean_run
from ._live import live_values
from ._warm import WarmServer, WarmSession
from .agents import AgentSpec, resolve_agent
from .graders import Evidence, GradeResult, grade_all
from .tasks import HumanEdit, Task
from .trajectory import Event, Recorder, audit, to_agentevals

__all__ = [
    "RunConfig",
    "SuiteResult",
    "TaskResult",
    "read_results",
    "run_suite",
    "run_task",
    "stop_server",
]

logger = logging.getLogger(__name__)

Status = Literal["passed", "failed", "limit", "error", "not_run"]
ApprovalPolicy = Literal["off", "reject", "approve"]
Backend = Literal["local", "ray"]
Servers = Literal["cold", "warm"]


class Timings(BaseModel):
    """Where one task's wall time went (seconds)."""

    model_config = ConfigDict(frozen=True)

    server_start: float = 0.0
    """``marimo edit`` start until ``/health`` answers."""
    attach: float = 0.0
    """Opening the headless session, which runs every cell (as a person's tab would)."""
    prepare: float = 0.0
    """The before snapshot."""
    agent: float = 0.0
    collect: float = 0.0
    """After snapshot, live values, copying the saved file."""
    server_stop: float = 0.0
    """Stopping the server (off the critical path: measured in the background)."""
    grade: float = 0.0
    total: float = 0.0
    warm: bool = False
    """The task ran on a warm server: ``server_start`` is 0 but on the task that
    started it, ``attach`` opens a session (and places the files), ``server_stop``
    closes the session."""
    prefetched: bool = False
    """Warm: the session was opened while the worker's previous task ran;
    ``attach`` is then only the wait that was left."""

    @property
    def server_overhead(self) -> float:
        """Start + attach + stop: what a server (or a session on a warm one) per task costs."""
        return self.server_start + self.attach + self.server_stop


class CellBrief(BaseModel):
    """A cell in a before/after summary."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None = None
    code_hash: str


class TaskResult(BaseModel):
    """Everything one task run produced, as one line of ``results.jsonl``."""

    model_config = ConfigDict(frozen=True)

    task: str
    agent: str
    run_id: str = ""
    repeat: int = 0
    """Which of the ``--repeats`` runs of this (task, agent) this is, from 0."""
    status: Status
    passed: bool
    score: float
    """Weighted mean of the graders' scores (partial credit)."""
    grades: list[GradeResult] = Field(default_factory=list)
    steps: int = 0
    """Model turns."""
    tool_calls: int = 0
    tools: dict[str, int] = Field(default_factory=dict)
    tool_errors: int = 0
    guard_refusals: int = 0
    guard_rules: dict[str, int] = Field(default_factory=dict)
    violations_attempted: int = 0
    violations_executed: int = 0
    violations: list[dict[str, Any]] = Field(default_factory=list)
    tokens: dict[str, int] | None = None
    limit_hit: str | None = None
    """The budget that ended the run: ``steps``, ``tool_calls`` or ``time``."""
    error: str | None = None
    missing: list[str] = Field(default_factory=list)
    """For ``not_run``: the task's required packages the environment lacks."""
    notebook_unchanged: bool | None = None
    """The notebook after the run equals the one before (plus a person's injected edits)."""
    injected: list[str] = Field(default_factory=list)
    approvals: int = 0
    before: list[CellBrief] = Field(default_factory=list)
    after: list[CellBrief] = Field(default_factory=list)
    timings: Timings = Field(default_factory=Timings)
    seconds: float = 0.0
    tags: list[str] = Field(default_factory=list)
    licence: str = ""


@dataclass
class RunConfig:
    """How to run a suite.

    Attributes:
        out_dir: where results, trajectories, snapshots and final notebooks go.
        workers: tasks run at once (one marimo server each).
        backend: ``local`` (threads in this process) or ``ray`` (one Ray actor
            per worker, anywhere on a Ray cluster; needs the ``ray`` extra).
        servers: ``cold`` starts a marimo server per task; ``warm`` has each
            worker reuse its servers, with a fresh notebook and kernel per task.
            ``None``: cold on the local backend, warm on Ray.
        warm_slots: servers per worker when warm, used in turn (2: the next
            task's session opens while a task runs; 1: while it is graded).
        repeats: runs of each (task, agent), for pass@k.
        ray_address: the Ray cluster to join (``None``: the one this process
            already joined, else ``$RAY_ADDRESS``, else a new local one).
        ray_runtime_env: Ray's ``runtime_env`` for the workers (``pip``,
            ``working_dir``, ``env_vars``...), see ``docs/eval-at-scale.md``.
        approvals: answer the agent's delete approvals (``off``: the agent
            runs without approval requests).
        fresh_grading_process: start a new interpreter for every clean run
            instead of forking a pre-imported one (slower; always on Windows).
        progress: print progress to stderr.
        time_scale: multiply every task's time limit (slow machines, CI).
        grade_timeout: seconds for one clean run of the saved notebook.
        startup_timeout: seconds for a marimo server to answer ``/health``.
    """

    out_dir: Path
    workers: int = 1
    approvals: ApprovalPolicy = "off"
    fresh_grading_process: bool = False
    progress: bool = True
    time_scale: float = 1.0
    grade_timeout: float = 60.0
    startup_timeout: float = 60.0
    system_prompt: str | None = None
    backend: Backend = "local"
    servers: Servers | None = None
    warm_slots: int = 2
    repeats: int = 1
    ray_address: str | None = None
    ray_runtime_env: dict[str, Any] | None = None

    @property
    def warm(self) -> bool:
        """Whether workers reuse a server (the default on Ray, not locally)."""
        return (self.servers or ("warm" if self.backend == "ray" else "cold")) == "warm"


@dataclass
class SuiteResult:
    """The results of one `run_suite` call, and where they were written."""

    results: list[TaskResult]
    out_dir: Path
    seconds: float
    workers: int
    agents: list[str] = field(default_factory=list)
    backend: Backend = "local"
    servers: Servers = "cold"


# --------------------------------------------------------------------------- helpers


_RESULTS = "results.jsonl"
_TRAJECTORIES = "trajectories.jsonl"
_AGENTEVALS = "agentevals.jsonl"
_SUMMARY = "summary.md"


def _clear_previous(out_dir: Path) -> None:
    """Remove what an earlier run wrote to ``out_dir``, so no file mixes two runs.

    The final notebooks and snapshots to remove are the ones the earlier
    ``results.jsonl`` lists (nothing else in the directory is touched: ``--out``
    may be a directory that holds other files).
    """
    previous = out_dir / _RESULTS
    rows = previous.read_text(encoding="utf-8").splitlines() if previous.is_file() else []
    for row in rows:
        try:
            data = json.loads(row)
            paths = artifact_paths(
                str(data["agent"]), str(data["task"]), int(data.get("repeat", 0))
            )
        except (ValueError, TypeError, KeyError):
            continue  # a line cut by a crash: nothing to find from it
        for path in paths:
            (out_dir / path).unlink(missing_ok=True)
            for folder in ((out_dir / path).parent, (out_dir / path).parent.parent):
                with contextlib.suppress(OSError):  # not empty: other files live there
                    folder.rmdir()
    for name in (_AGENTEVALS, _SUMMARY):
        (out_dir / name).unlink(missing_ok=True)


class _Output:
    """Writes finished tasks to fresh JSONL files at once, from any worker thread."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _clear_previous(out_dir)
        self.out_dir = out_dir
        self._lock = threading.Lock()
        self._results = (out_dir / _RESULTS).open("w", encoding="utf-8")
        self._trajectories = (out_dir / _TRAJECTORIES).open("w", encoding="utf-8")

    def write(self, result: TaskResult, events: Sequence[Event]) -> None:
        with self._lock:
            self._results.write(result.model_dump_json() + "\n")
            self._results.flush()
            for event in events:
                row = {"task": result.task, "agent": result.agent, "run_id": result.run_id}
                row.update(event.model_dump(mode="json", exclude_defaults=True))
                self._trajectories.write(json.dumps(row, default=str) + "\n")
            self._trajectories.flush()

    def close(self) -> None:
        self._results.close()
        self._trajectories.close()


class _Progress:
    """A one-line progress bar on a terminal, one line per task otherwise.

    A task not run (missing packages) always gets a line of its own, so the
    reason stays on screen.
    """

    def __init__(self, total: int, stream: IO[str] | None, label: str) -> None:
        self.total = total
        self.done = 0
        self.passed = 0
        self.skipped = 0
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self.tty = bool(stream is not None and stream.isatty())
        self._lock = threading.Lock()

    def update(self, result: TaskResult) -> None:
        with self._lock:
            self.done += 1
            self.passed += result.passed
            self.skipped += result.status == "not_run"
            if self.stream is None:
                return
            width = 24
            filled = int(width * self.done / max(1, self.total))
            bar = "#" * filled + "." * (width - filled)
            mark = {
                "passed": "ok",
                "failed": "FAIL",
                "limit": "LIMIT",
                "error": "ERROR",
                "not_run": "SKIP",
            }
            what = (
                f"{result.task}: not run, needs {', '.join(result.missing)}"
                if result.status == "not_run"
                else f"{result.task} ({result.seconds:.1f}s)"
            )
            skipped = f" ({self.skipped} not run)" if self.skipped else ""
            line = (
                f"[{bar}] {self.done}/{self.total} {self.label} "
                f"{mark[result.status]:<5} {what} "
                f"pass {self.passed}/{self.done - self.skipped}{skipped} "
                f"{time.monotonic() - self.started:.0f}s"
            )
            if self.tty and result.status == "not_run":
                self.stream.write("\r\033[K" + line + "\n")
            elif self.tty:
                self.stream.write("\r\033[K" + line)
                if self.done == self.total:
                    self.stream.write("\n")
            else:
                self.stream.write(line + "\n")
            self.stream.flush()


class _Stopper:
    """Stops servers in the background and records how long each stop took.

    It also tracks every started server, so an interrupt can stop those still
    running: no marimo process outlives the harness.
    """

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._live: set[MarimoServer] = set()
        self._lock = threading.Lock()

    def track(self, server: MarimoServer) -> None:
        """Remember a started server until it is stopped."""
        with self._lock:
            self._live.add(server)

    def abort(self) -> None:
        """Stop every tracked server now (Ctrl-C, SIGTERM)."""
        with self._lock:
            live, self._live = list(self._live), set()
        threads = [threading.Thread(target=stop_server, args=(s,), daemon=True) for s in live]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)

    def stop(
        self,
        server: MarimoServer,
        done: Callable[[float], None],
        *,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Stop ``server`` in a thread, report the seconds to ``done``, then call ``then``."""

        def work() -> None:
            started = time.monotonic()
            try:
                stop_server(server)
            finally:
                with self._lock:
                    self._live.discard(server)
                done(time.monotonic() - started)
                if then is not None:
                    then()

        thread = threading.Thread(target=work, name="marimo-stop", daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()


def stop_server(server: MarimoServer, wait: float = 3.0) -> None:
    """Stop a marimo server: SIGINT first, then `MarimoServer.stop` to clean up.

    marimo exits in ~0.4 s on SIGINT but takes ~1.2 s on SIGTERM (measured,
    0.25.2), and the harness stops one server per task. Windows cannot send
    SIGINT to another process group, so there `stop` does it all.
    """
    pid = server.pid
    if pid is not None and sys.platform != "win32":
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + wait
        while server.running and time.monotonic() < deadline:
            time.sleep(0.02)
    server.stop()


def _briefs(snapshot: NotebookSnapshot | None) -> list[CellBrief]:
    if snapshot is None:
        return []
    return [CellBrief(id=c.id, name=c.name, code_hash=c.code_hash) for c in snapshot.cells]


def _unchanged(
    before: NotebookSnapshot | None, after: NotebookSnapshot | None, injected: Mapping[str, str]
) -> bool | None:
    if before is None or after is None:
        return None
    want = [(c.id, injected.get(c.id, c.code)) for c in before.cells]
    got = [(c.id, c.code) for c in after.cells]
    return want == got


def _cell_of(call_args: Mapping[str, Any] | None, artifact: Any) -> set[str]:
    """Every way the call's target cell is known: the argument, and id/name from the result."""
    found: set[str] = set()
    if call_args and isinstance(call_args.get("cell"), str):
        found.add(call_args["cell"])
    if isinstance(artifact, Mapping):
        for key in ("id", "name"):
            if isinstance(artifact.get(key), str):
                found.add(artifact[key])
        focus = artifact.get("focus")
        if isinstance(focus, Mapping):
            found |= {v for k in ("cell_id", "name") if isinstance(v := focus.get(k), str)}
    return found


@dataclass
class _Injector:
    """Plays the person: applies each `HumanEdit` once, when its trigger fires."""

    notebook: Notebook
    pending: list[HumanEdit]
    ids: dict[str, str]
    """Cell name -> id in this session (from the before snapshot)."""
    applied: dict[str, str] = field(default_factory=dict)
    """Cell id -> the code the person put there."""

    def after_tool(self, event: Event) -> list[tuple[str, str]]:
        """Apply edits triggered by this tool result; return (cell id, description) for each."""
        if event.kind != "tool" or event.status == "error":
            return []
        fired: list[tuple[str, str]] = []
        for edit in list(self.pending):
            target = edit.on_cell or edit.cell
            if event.tool != edit.after_tool:
                continue
            cells = _cell_of(event.args, event.artifact)
            if target != "*" and not ({target, self.ids.get(target, target)} & cells):
                continue
            self.pending.remove(edit)
            cell_id = self.ids.get(edit.cell, edit.cell)
            current = self.notebook.read_cell(cell_id)
            self.notebook.apply(
                [EditCell(cell=cell_id, code=edit.code, expected_hash=current.code_hash)]
            )
            self.applied[cell_id] = edit.code
            fired.append((cell_id, f"a person replaced the code of cell {edit.cell} ({cell_id})"))
        return fired


def _decisions(request: Any, policy: ApprovalPolicy) -> dict[str, Any]:
    count = 1
    if isinstance(request, Mapping) and isinstance(request.get("action_requests"), list):
        count = len(request["action_requests"])
    if policy == "approve":
        return {"decisions": [{"type": "approve"} for _ in range(count)]}
    return {
        "decisions": [
            {"type": "reject", "message": "The person declined this change."} for _ in range(count)
        ]
    }


# --------------------------------------------------------------------------- one task


@dataclass
class _Run:
    """Mutable state of one task run (so the crash barrier can report what was reached)."""

    task: Task
    agent: AgentSpec
    config: RunConfig
    zygote: Zygote | None
    stopper: _Stopper
    warm: WarmServer | None = None
    upcoming: Task | None = None
    repeat: int = 0
    prefetched: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    recorder: Recorder = field(default_factory=Recorder)
    timings: dict[str, float] = field(default_factory=dict)
    before: NotebookSnapshot | None = None
    after: NotebookSnapshot | None = None
    ledger: guards.Ledger | None = None
    limit_hit: str | None = None
    approvals: int = 0
    injected: dict[str, str] = field(default_factory=dict)
    injected_by_name: dict[str, str] = field(default_factory=dict)
    stop_done: threading.Event = field(default_factory=threading.Event)

    def stopped(self, seconds: float) -> None:
        self.timings["server_stop"] = seconds
        self.stop_done.set()


def _timed(run: _Run, key: str) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def timer() -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            run.timings[key] = run.timings.get(key, 0.0) + time.monotonic() - started

    return timer()


def _stream_agent(run: _Run, graph: Any, injector: _Injector) -> None:
    """Drive the graph under the time limit, recording events and injecting edits.

    The limit is checked between graph steps: a tool call is bounded by the
    toolkit's timeout (the task's time limit), a model call by its provider.
    """
    limits = run.task.spec.limits
    deadline = time.monotonic() + limits.seconds * run.config.time_scale
    started = time.monotonic()
    thread = {"configurable": {"thread_id": run.run_id}}
    prompt = HumanMessage(content=run.task.instruction)
    run.recorder.add_messages([prompt])
    payload: Any = {"messages": [prompt]}
    while True:
        interrupted: Any = None
        for update in graph.stream(payload, thread, stream_mode="updates"):
            now = time.monotonic() - started
            for node, delta in update.items():
                if node == "__interrupt__":
                    interrupted = delta
                    continue
                if isinstance((delta or {}).get("ledger"), (guards.Ledger, dict)):
                    run.ledger = guards.merge_ledgers(run.ledger, delta["ledger"])
                messages = (delta or {}).get("messages") or []
                stop = next((budget_stop(m) for m in messages if budget_stop(m)), None)
                if stop is not None:
                    # The agent's stop message, not a model turn: noted as a limit, so
                    # `steps` counts the model's turns only.
                    run.limit_hit = run.limit_hit or stop
                    run.recorder.note("note", "; ".join(m.text for m in messages), t=now)
                    continue
                events = run.recorder.add_messages(
                    [m for m in messages if isinstance(m, BaseMessage)], now
                )
                for event in events:
                    for cell_id, text in injector.after_tool(event):
                        run.recorder.note("inject", text, t=now, cell=cell_id)
            if time.monotonic() > deadline:
                run.limit_hit = "time"
                run.recorder.note("note", f"time limit ({limits.seconds:g} s) reached", t=now)
                return
        if interrupted is None or run.config.approvals == "off":
            return
        request = interrupted[0].value if interrupted else None
        answer = _decisions(request, run.config.approvals)
        run.approvals += 1
        run.recorder.note(
            "approval",
            f"approval requested; the harness answered {run.config.approvals}",
            t=time.monotonic() - started,
        )
        payload = Command(resume=answer)


def _copy_files(paths: Sequence[Path], target: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.copytree(path, target / path.name)
        else:
            shutil.copy2(path, target / path.name)


def _open_cold(run: _Run, workdir: Path) -> tuple[MarimoPairToolkit, Path, Callable[[], None]]:
    """A server of its own on a copy of the task's files: start, attach (timed).

    Returns the toolkit, the notebook file marimo saves, and the release that
    stops the server in the background (the stop is timed there).
    """
    task = run.task
    _copy_files([task.notebook_path, *task.extra_files], workdir)
    server = MarimoServer(
        workdir / task.notebook_path.name, startup_timeout=run.config.startup_timeout
    )
    run.stopper.track(server)
    toolkit: MarimoPairToolkit | None = None

    def release() -> None:
        # Stop the server before closing the client: the server's end also ends the
        # headless session stream, so the close does not wait on a blocked read. The
        # stop runs in the background while the notebook is graded.
        run.stopper.stop(server, run.stopped, then=toolkit.close if toolkit else None)

    try:
        with _timed(run, "server_start"):
            server.start()
        with _timed(run, "attach"):
            toolkit = MarimoPairToolkit.from_server(
                server,
                timeout=_tool_timeout(run.task, run.config),
                recheck_scratchpad=True,  # the audit sees changes the kernel never sees
            )
    except BaseException:
        release()
        raise
    return toolkit, server.path, release


def _open_warm(run: _Run, warm: WarmServer) -> tuple[MarimoPairToolkit, Path, Callable[[], None]]:
    """A fresh session on the worker's warm server (see `_warm`) (timed as ``attach``).

    ``attach`` is the time the task waited for its session: all of it when the
    session opens now, what was left of a prefetch otherwise. The first task on
    a worker (or after a failure) also starts the server and its start is
    counted in that task's ``server_start``. The release closes the session,
    which ends its kernel (timed as ``server_stop``).
    """
    task = run.task
    session: WarmSession | None = None

    def release() -> None:
        began = time.monotonic()
        try:
            if session is not None:
                warm.close_session(session)
        except (MarimoPairError, OSError) as exc:
            # What the task did is already collected; a server in an unknown state
            # must not serve the next task, so it is replaced.
            logger.warning("closing a warm session failed (%s); replacing its server", exc)
            warm.discard(session)
        except BaseException:
            warm.discard(session)
            raise
        finally:
            run.stopped(time.monotonic() - began)

    try:
        with _timed(run, "attach"):
            session = warm.open(
                [task.notebook_path, *task.extra_files],
                task.notebook_path.name,
                timeout=_tool_timeout(run.task, run.config),
            )
    except BaseException:
        release()  # never raises a harness error: the attach's own is the one to report
        raise
    finally:
        if warm.start_seconds:
            run.timings["server_start"] = warm.start_seconds
            run.timings["attach"] -= warm.start_seconds
    run.prefetched = session.prefetched
    _prefetch(run)
    return session.toolkit, session.path, release


def _tool_timeout(task: Task, config: RunConfig) -> float:
    """The tools' execute limit: the task's whole time limit."""
    return task.spec.limits.seconds * config.time_scale


def _prefetch(run: _Run) -> None:
    """Have the warm servers open the worker's next task's session while this one runs."""
    upcoming, warm = run.upcoming, run.warm
    if upcoming is None or warm is None:
        return
    warm.prefetch(
        [upcoming.notebook_path, *upcoming.extra_files],
        upcoming.notebook_path.name,
        timeout=_tool_timeout(upcoming, run.config),
    )


def _prepare(run: _Run, toolkit: MarimoPairToolkit) -> None:
    """Run every cell (as a person opening the notebook would) and snapshot (timed)."""
    notebook = toolkit.session.sync()
    with _timed(run, "prepare"):
        page = notebook.cells()
        if page.cells:
            # A warm session opened without running; a cold one may have run already.
            notebook.apply([RunCell(cell=c.id) for c in page.cells], verify=False)
        run.before = notebook.snapshot()


def _run_agent(run: _Run, toolkit: MarimoPairToolkit) -> None:
    """Build the agent over the toolkit and stream it, playing the person when due."""
    task, config = run.task, run.config
    notebook = toolkit.session.sync()
    assert run.before is not None
    ids = {c.name: c.id for c in run.before.cells if c.name}
    injector = _Injector(notebook, list(task.spec.human_edits), ids)
    approvals = config.approvals != "off"
    graph = create_pair_agent(
        run.agent.factory(task),
        toolkit,
        system_prompt=config.system_prompt,
        approve_deletes="with_descendants" if approvals else False,
        # Approvals pause the graph, which needs a checkpointer; without them the
        # ledger is followed from the stream updates instead.
        checkpointer=InMemorySaver() if approvals else None,
        max_steps=task.spec.limits.steps,
        max_tool_calls=task.spec.limits.tool_calls,
        name=f"eval-{task.name}",
    )
    with _timed(run, "agent"):
        _stream_agent(run, graph, injector)
    run.injected = dict(injector.applied)
    names = {cell_id: name for name, cell_id in ids.items()}
    run.injected_by_name = {names.get(k, k): v for k, v in injector.applied.items()}


def _grade(run: _Run, saved: Path, live: Mapping[str, Any] | None) -> list[GradeResult]:
    """Run the saved notebook from scratch next to the task's data, and grade it."""
    task, config = run.task, run.config
    needs = task.needs()
    with _timed(run, "grade"):
        graded_dir = Path(tempfile.mkdtemp(prefix=f"mpt-grade-{task.name}-"))
        try:
            _copy_files(task.extra_files, graded_dir)
            graded = graded_dir / task.notebook_path.name
            shutil.copy2(saved, graded)
            after = clean_run(
                graded,
                names=needs.names,
                exprs=needs.exprs,
                timeout=config.grade_timeout,
                zygote=run.zygote,
            )
            _save_artifacts(config.out_dir, task, graded, run)
        finally:
            shutil.rmtree(graded_dir, ignore_errors=True)
        evidence = Evidence(
            before=_before_cells(task, run.zygote, config.grade_timeout),
            after=after,
            live=live,
            events=run.recorder.events,
            injected=run.injected_by_name,
        )
        return grade_all(task.graders, evidence)


def _execute(run: _Run) -> TaskResult:
    task = run.task
    workdir = Path(tempfile.mkdtemp(prefix=f"mpt-eval-{task.name}-"))
    release: Callable[[], None] | None = None
    try:
        if run.warm is None:
            toolkit, notebook_file, release = _open_cold(run, workdir)
        else:
            toolkit, notebook_file, release = _open_warm(run, run.warm)
        _prepare(run, toolkit)
        _run_agent(run, toolkit)
        notebook = toolkit.session.sync()
        with _timed(run, "collect"):
            run.after = notebook.snapshot()
            wanted = task.needs().live
            live = (
                live_values(notebook.client, wanted, notebook=notebook.notebook) if wanted else None
            )
            saved = workdir / "saved" / task.notebook_path.name
            saved.parent.mkdir()
            shutil.copy2(notebook_file, saved)
        done, release = release, None
        done()
        return _result(run, _grade(run, saved, live))
    finally:
        if release is not None:
            release()
        elif run.warm is not None or run.timings.get("server_start") is None:
            # Warm: the release already ran, synchronously (or nothing was opened).
            # Cold: no server was started, so there is no stop to wait for.
            run.stop_done.set()
        shutil.rmtree(workdir, ignore_errors=True)


_BEFORE_CACHE: dict[Path, list[CellInfo]] = {}
_BEFORE_LOCK = threading.Lock()


def _before_cells(task: Task, zygote: Zygote | None, timeout: float) -> list[CellInfo]:
    """The starting notebook's cells (parsed once per task per process)."""
    key = task.notebook_path
    with _BEFORE_LOCK:
        if key in _BEFORE_CACHE:
            return _BEFORE_CACHE[key]
    cells = list(clean_run(key, run=False, timeout=timeout, zygote=zygote).cells)
    with _BEFORE_LOCK:
        _BEFORE_CACHE[key] = cells
    return cells


def _safe_label(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)[:60]


def artifact_paths(agent: str, task: str, repeat: int = 0) -> tuple[Path, Path]:
    """Where a run's final notebook and snapshots go, relative to the output directory.

    The first run of a (task, agent) keeps the plain name; later repeats add
    ``.r<repeat>`` so they do not overwrite it.
    """
    label = _safe_label(agent)
    stem = task if repeat == 0 else f"{task}.r{repeat}"
    return (
        Path("notebooks") / label / f"{stem}.py",
        Path("snapshots") / label / f"{stem}.json",
    )


def _save_artifacts(out_dir: Path, task: Task, final: Path, run: _Run) -> None:
    """Keep the final notebook and the before/after snapshots for inspection."""
    notebook, snapshot = artifact_paths(run.agent.label, task.name, run.repeat)
    (out_dir / notebook).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(final, out_dir / notebook)
    (out_dir / snapshot).parent.mkdir(parents=True, exist_ok=True)
    data = {
        "task": task.name,
        "agent": run.agent.label,
        "run_id": run.run_id,
        "repeat": run.repeat,
        "before": run.before.model_dump(mode="json") if run.before else None,
        "after": run.after.model_dump(mode="json") if run.after else None,
    }
    (out_dir / snapshot).write_text(json.dumps(data, indent=1), encoding="utf-8")


def _result(run: _Run, grades: list[GradeResult]) -> TaskResult:
    events = run.recorder.events
    report = audit(events)
    tools: dict[str, int] = {}
    tool_errors = 0
    for event in events:
        if event.kind == "tool" and event.tool:
            tools[event.tool] = tools.get(event.tool, 0) + 1
            tool_errors += event.status == "error"
    usage: dict[str, int] = {}
    for event in events:
        for key, value in (event.usage or {}).items():
            usage[key] = usage.get(key, 0) + value
    refusals = list(run.ledger.events) if run.ledger is not None else []
    rules: dict[str, int] = {}
    for refusal in refusals:
        rules[refusal.rule] = rules.get(refusal.rule, 0) + 1
    total_weight = sum(g.weight for g in grades) or 1.0
    score = sum(g.score * g.weight for g in grades) / total_weight if grades else 0.0
    all_passed = bool(grades) and all(g.passed for g in grades)
    passed = all_passed and run.limit_hit is None
    status: Status = "passed" if passed else ("limit" if run.limit_hit else "failed")
    return TaskResult(
        task=run.task.name,
        agent=run.agent.label,
        run_id=run.run_id,
        repeat=run.repeat,
        status=status,
        passed=passed,
        score=round(score, 4),
        grades=grades,
        steps=sum(e.kind == "model" for e in events),
        tool_calls=sum(tools.values()),
        tools=tools,
        tool_errors=tool_errors,
        guard_refusals=len(refusals),
        guard_rules=rules,
        violations_attempted=report.attempted,
        violations_executed=report.executed,
        violations=[v.model_dump() for v in report.violations],
        tokens={
            k: usage[k] for k in ("input_tokens", "output_tokens", "total_tokens") if k in usage
        }
        or None,
        limit_hit=run.limit_hit,
        notebook_unchanged=_unchanged(run.before, run.after, run.injected),
        injected=sorted(run.injected),
        approvals=run.approvals,
        before=_briefs(run.before),
        after=_briefs(run.after),
        timings=Timings(**run.timings),
        tags=list(run.task.spec.tags),
        licence=run.task.spec.licence,
    )


def run_task(
    task: Task,
    agent: AgentSpec | str,
    config: RunConfig,
    *,
    zygote: Zygote | None = None,
    stopper: _Stopper | None = None,
    warm: WarmServer | None = None,
    repeat: int = 0,
    upcoming: Task | None = None,
) -> tuple[TaskResult, list[Event]]:
    """Run one task with one agent; never raises for a task's own failure.

    Args:
        task: the task.
        agent: an agent spec or its string.
        config: how to run (time scale, approvals, output directory...).
        zygote: a warm grading process to fork clean runs from.
        stopper: stops cold servers in the background (one per suite).
        warm: a warm server to open this task's session on, instead of a
            server of its own.
        repeat: which repeat of this (task, agent) this run is.
        upcoming: the task this worker runs next: with ``warm``, its session
            opens on the worker's other server while this one runs.

    Returns:
        The result and the trajectory. A harness crash while running the task
        becomes ``status="error"`` with the reason and the traceback tail.
    """
    spec = resolve_agent(agent) if isinstance(agent, str) else agent
    own_stopper = stopper is None
    run = _Run(
        task=task,
        agent=spec,
        config=config,
        zygote=zygote,
        stopper=stopper or _Stopper(),
        warm=warm,
        repeat=repeat,
        upcoming=upcoming,
    )
    started = time.monotonic()
    try:
        result = _execute(run)
    except GraphBubbleUp:
        # LangGraph control flow (an interrupt nobody answers) belongs to LangGraph.
        raise
    except Exception as exc:  # noqa: BLE001 - the per-task crash barrier (see module doc)
        # Why broad: anything a task run raises (server start, transport, a grader
        # or agent bug, a model provider error) must become this task's failure, not
        # end the suite. KeyboardInterrupt and SystemExit are not Exceptions and
        # still stop the run.
        tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-2000:]
        result = TaskResult(
            task=task.name,
            agent=spec.label,
            run_id=run.run_id,
            repeat=repeat,
            status="error",
            passed=False,
            score=0.0,
            error=f"{type(exc).__name__}: {exc}\n{tail}",
            steps=sum(e.kind == "model" for e in run.recorder.events),
            notebook_unchanged=_unchanged(run.before, run.after, run.injected),
            before=_briefs(run.before),
            timings=Timings(**run.timings),
            tags=list(task.spec.tags),
            licence=task.spec.licence,
        )
    # The server stops in the background while the notebook is graded; wait for it
    # here so the timing is complete and stopping servers never pile up.
    run.stop_done.wait(timeout=30)
    if own_stopper:
        run.stopper.join()
    timings = Timings(
        **{**run.timings, "total": time.monotonic() - started},
        warm=warm is not None,
        prefetched=run.prefetched,
    )
    result = result.model_copy(update={"timings": timings, "seconds": round(timings.total, 3)})
    return result, list(run.recorder.events)


# --------------------------------------------------------------------------- suite


@dataclass(frozen=True)
class Job:
    """One run to do: a task, an agent, and which repeat of the pair it is."""

    task: Task
    agent: AgentSpec
    repeat: int = 0


Emit = Callable[[TaskResult, list[Event]], None]
"""Receives each finished run (from the thread or loop that collects them)."""


def not_run_result(job: Job, missing: Sequence[str]) -> TaskResult:
    """The record of a run skipped because its environment lacks required packages."""
    return TaskResult(
        task=job.task.name,
        agent=job.agent.label,
        run_id=uuid.uuid4().hex[:12],
        repeat=job.repeat,
        status="not_run",
        passed=False,
        score=0.0,
        missing=list(missing),
        tags=list(job.task.spec.tags),
        licence=job.task.spec.licence,
    )


def lost_result(job: Job, reason: str) -> TaskResult:
    """The record of a run the harness lost (its Ray worker died): an error, with why."""
    return TaskResult(
        task=job.task.name,
        agent=job.agent.label,
        run_id=uuid.uuid4().hex[:12],
        repeat=job.repeat,
        status="error",
        passed=False,
        score=0.0,
        error=reason,
        tags=list(job.task.spec.tags),
        licence=job.task.spec.licence,
    )


@dataclass
class WorkerKit:
    """What one worker keeps across its tasks: a grading zygote and, if warm, a server."""

    zygote: Zygote | None
    warm: WarmServer | None

    @classmethod
    def create(cls, config: RunConfig) -> WorkerKit:
        """Start the zygote now (it imports in the background); the server starts on first use."""
        use_zygote = not config.fresh_grading_process and Zygote.supported()
        return cls(
            zygote=Zygote().start() if use_zygote else None,
            warm=(
                WarmServer(slots=config.warm_slots, startup_timeout=config.startup_timeout)
                if config.warm
                else None
            ),
        )

    def run(
        self, job: Job, config: RunConfig, stopper: _Stopper, upcoming: Task | None = None
    ) -> tuple[TaskResult, list[Event]]:
        """Run one job with this worker's zygote and server (``upcoming``: see `run_task`)."""
        return run_task(
            job.task,
            job.agent,
            config,
            zygote=self.zygote,
            stopper=stopper,
            warm=self.warm,
            repeat=job.repeat,
            upcoming=upcoming,
        )

    def close(self) -> None:
        """End the zygote and stop the warm server."""
        if self.zygote is not None:
            self.zygote.close()
        if self.warm is not None:
            self.warm.close()


def _run_local(jobs: Sequence[Job], config: RunConfig, emit: Emit) -> int:
    """Run the jobs on ``config.workers`` threads of this process; returns the worker count.

    Jobs whose task needs packages this interpreter lacks are reported as not
    run before anything starts. Each thread owns a `WorkerKit` and takes jobs
    from a shared queue; with warm servers it takes its next job one ahead, so
    that job's session opens while the current one runs.
    """
    runnable: list[Job] = []
    for job in jobs:
        missing = job.task.missing()
        if missing:
            emit(not_run_result(job, missing), [])
        else:
            runnable.append(job)
    workers = max(1, min(config.workers, len(runnable) or 1))
    todo = collections.deque(runnable)
    lock = threading.Lock()
    stopping = threading.Event()
    finished: queue.Queue[tuple[TaskResult, list[Event]] | BaseException | None] = queue.Queue()
    stopper = _Stopper()
    kits = [WorkerKit.create(config) for _ in range(workers)]

    def take() -> Job | None:
        with lock:
            return todo.popleft() if todo and not stopping.is_set() else None

    def work(kit: WorkerKit) -> None:
        try:
            job = take()
            while job is not None:
                upcoming = take() if kit.warm is not None else None
                finished.put(kit.run(job, config, stopper, upcoming.task if upcoming else None))
                if stopping.is_set():
                    break
                job = upcoming if kit.warm is not None else take()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the collecting thread
            # run_task turns every task failure into a result; what reaches here is
            # LangGraph control flow or an interrupt, which must end the suite.
            finished.put(exc)
        finally:
            finished.put(None)

    threads = [
        threading.Thread(target=work, args=(kit,), name=f"eval-{i}", daemon=True)
        for i, kit in enumerate(kits)
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            try:
                item = finished.get(timeout=0.5)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                emit(*item)
    except BaseException:
        stopping.set()
        stopper.abort()  # running tasks then fail fast; their servers are gone
        for kit in kits:
            if kit.warm is not None:
                kit.warm.abort()
        raise
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=60)
        stopper.join()
        for kit in kits:
            kit.close()
    return workers


def run_suite(
    tasks: Sequence[Task],
    agents: Sequence[str | AgentSpec],
    config: RunConfig,
    *,
    progress_stream: IO[str] | None = None,
) -> SuiteResult:
    """Run every task with every agent ``config.repeats`` times; write the outputs.

    Runs on ``config.workers`` threads here, or on as many Ray actors with
    ``backend="ray"``. Writes ``results.jsonl``, ``trajectories.jsonl``,
    ``agentevals.jsonl`` and ``summary.md`` (plus final notebooks and
    snapshots) under ``config.out_dir`` as runs finish.
    """
    from .report import write_summary

    if config.repeats < 1:
        raise ConfigurationError(f"repeats must be at least 1, not {config.repeats}")
    specs = [resolve_agent(a) if isinstance(a, str) else a for a in agents]
    jobs = [
        Job(task, spec, repeat)
        for spec in specs
        for task in tasks
        for repeat in range(config.repeats)
    ]
    out = _Output(config.out_dir)
    stream = progress_stream if progress_stream is not None else sys.stderr
    progress = _Progress(len(jobs), stream if config.progress else None, "")
    results: list[TaskResult] = []
    trajectories: dict[str, list[Event]] = {}
    started = time.monotonic()

    def emit(result: TaskResult, events: list[Event]) -> None:
        results.append(result)
        trajectories[result.run_id] = events
        out.write(result, events)
        progress.update(result)

    try:
        if config.backend == "ray":
            from ._ray import run_on_ray

            workers = run_on_ray(jobs, config, emit)
        elif config.backend == "local":
            workers = _run_local(jobs, config, emit)
        else:
            raise ConfigurationError(f"Unknown backend {config.backend!r}: local or ray")
    finally:
        out.close()
    seconds = time.monotonic() - started
    order = {(j.task.name, j.agent.label, j.repeat): i for i, j in enumerate(jobs)}
    results.sort(key=lambda r: order.get((r.task, r.agent, r.repeat), 0))
    _write_agentevals(config.out_dir, results, trajectories)
    suite = SuiteResult(
        results=results,
        out_dir=config.out_dir,
        seconds=seconds,
        workers=workers,
        agents=[s.label for s in specs],
        backend=config.backend,
        servers="warm" if config.warm else "cold",
    )
    write_summary(suite, config.out_dir / _SUMMARY)
    return suite


def _write_agentevals(
    out_dir: Path, results: Sequence[TaskResult], trajectories: Mapping[str, Sequence[Event]]
) -> None:
    """One line per run, in agentevals' trajectory format (OpenAI-style messages).

    ``{"task", "agent", "outputs": [...]}``, plus ``"reference_outputs"`` (the
    oracle's trajectory for that task) when the oracle ran in the same suite, so
    a row can go straight into ``create_trajectory_match_evaluator``.
    """
    ran = [r for r in results if r.status != "not_run"]
    exported = {r.run_id: to_agentevals(trajectories.get(r.run_id, [])) for r in ran}
    reference: dict[str, Any] = {}
    for r in ran:  # the oracle's first run of each task
        if r.agent == "oracle":
            reference.setdefault(r.task, exported[r.run_id])
    path = out_dir / _AGENTEVALS
    with path.open("w", encoding="utf-8") as handle:
        for result in ran:
            row: dict[str, Any] = {
                "task": result.task,
                "agent": result.agent,
                "outputs": exported[result.run_id],
            }
            if result.agent != "oracle" and result.task in reference:
                row["reference_outputs"] = reference[result.task]
            handle.write(json.dumps(row, default=str) + "\n")


def read_results(path: str | os.PathLike[str]) -> list[TaskResult]:
    """Load ``results.jsonl`` (for reports and the results notebook)."""
    rows = Path(path).read_text(encoding="utf-8").splitlines()
    return [TaskResult.model_validate_json(row) for row in rows if row.strip()]
