"""The Ray backend of `run_suite`: one actor per worker, anywhere on a Ray cluster.

Each actor owns what a local worker thread owns (a grading zygote and, warm by
default, one marimo server) on the node it lands on, and runs one job at a
time. The driver:

1. asks every actor which required packages its node lacks, and reports the
   tasks no actor can run as not run before anything starts;
2. ships each task's files as bytes, once per task (nodes need not share a
   file system), with the task and agent specs pickled by Ray;
3. hands each idle actor the next job it can run (with warm servers, also the
   one after it, reserved for that actor, so its session opens while the
   current job runs), and writes each result as it arrives (results,
   trajectories, progress, and the final notebook and snapshots the actor
   sends back).

A worker that dies loses only its running job (reported as an error); the
others go on. Ray is imported only here, on first use (extra ``ray``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .agents import AgentSpec
from .runner import (
    Emit,
    Job,
    RunConfig,
    TaskResult,
    WorkerKit,
    _Stopper,
    artifact_paths,
    lost_result,
    not_run_result,
)
from .tasks import Task, importable
from .trajectory import Event

__all__ = ["run_on_ray"]

logger = logging.getLogger(__name__)

_STARTUP_TIMEOUT = 300.0
"""Seconds for every actor to start (imports, zygote) and answer: a cluster
without room for ``workers`` actors fails here instead of waiting forever."""
_CLOSE_TIMEOUT = 60.0

Files = dict[str, bytes]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            "--backend ray needs Ray: pip install 'marimo-pair-tools[ray]'."
        ) from None
    return ray


def pack_task(task: Task) -> Files:
    """The task's notebook and data files as ``{relative path: bytes}``."""
    files: Files = {}
    for path in [task.notebook_path, *task.extra_files]:
        if path.is_dir():
            for inner in sorted(path.rglob("*")):
                if inner.is_file():
                    files[str(Path(path.name) / inner.relative_to(path))] = inner.read_bytes()
        else:
            files[path.name] = path.read_bytes()
    return files


class _Worker:
    """A Ray actor's body: a `WorkerKit` on this node and a private output directory."""

    def __init__(self, config: RunConfig) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mpt-ray-"))
        self.config = dataclasses.replace(config, out_dir=self.root / "out", progress=False)
        self.kit = WorkerKit.create(self.config)
        self.stopper = _Stopper()
        self.tasks: dict[str, Task] = {}

    def describe(self, requires: dict[str, tuple[str, ...]]) -> tuple[str, dict[str, list[str]]]:
        """This node's name and, per task, the required packages it cannot import."""
        missing = {
            name: [p for p in needed if not importable(p)] for name, needed in requires.items()
        }
        return socket.gethostname(), {name: lacks for name, lacks in missing.items() if lacks}

    def run(
        self,
        task: Task,
        files: Files,
        agent: AgentSpec,
        repeat: int,
        *,
        upcoming: Task | None = None,
        upcoming_files: Files | None = None,
    ) -> tuple[TaskResult, list[Event], Files]:
        """Run one job; return its result, trajectory and artifacts (removed here).

        ``upcoming`` is the task the driver will send this actor next (see
        `run_task`). Files travel as separate arguments: Ray resolves object
        references only at the top level of a call.
        """
        local = self._materialize(task, files)
        after = (
            self._materialize(upcoming, upcoming_files)
            if upcoming is not None and upcoming_files is not None
            else None
        )
        result, events = self.kit.run(Job(local, agent, repeat), self.config, self.stopper, after)
        artifacts: Files = {}
        for relative in artifact_paths(agent.label, task.name, repeat):
            path = self.config.out_dir / relative
            if path.is_file():
                artifacts[str(relative)] = path.read_bytes()
                path.unlink()
        return result, events, artifacts

    def abort(self) -> None:
        """Stop this worker's servers now (the driver was interrupted)."""
        self.stopper.abort()
        if self.kit.warm is not None:
            self.kit.warm.abort()

    def close(self) -> None:
        """Stop the servers and the zygote; remove the worker's files."""
        self.stopper.join()
        self.kit.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _materialize(self, task: Task, files: Files) -> Task:
        """The task with its files written on this node (once per task)."""
        if task.name not in self.tasks:
            directory = self.root / "tasks" / task.name
            for relative, data in files.items():
                target = directory / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            self.tasks[task.name] = dataclasses.replace(
                task,
                directory=directory,
                extra_files=tuple(directory / p.name for p in task.extra_files),
            )
        return self.tasks[task.name]


def _connect(ray: Any, config: RunConfig) -> bool:
    """Join or start a cluster unless this process already has; returns whether we did."""
    if ray.is_initialized():
        if config.ray_address:
            logger.warning(
                "Ray is already initialized in this process; ignoring ray_address=%s",
                config.ray_address,
            )
        return False
    ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False)
    return True


def run_on_ray(jobs: Sequence[Job], config: RunConfig, emit: Emit) -> int:
    """Run the jobs on ``config.workers`` Ray actors; returns the actor count."""
    ray = _import_ray()
    from ray.exceptions import GetTimeoutError, RayActorError, RayError

    owned = _connect(ray, config)
    options: dict[str, Any] = {"num_cpus": 1, "max_concurrency": 2}  # 2: abort while running
    if config.ray_runtime_env:
        options["runtime_env"] = config.ray_runtime_env
    actor_class = ray.remote(_Worker).options(**options)
    count = max(1, min(config.workers, len(jobs) or 1))
    actors: list[Any] = [actor_class.remote(config) for _ in range(count)]
    alive = set(range(count))
    try:
        requires = {job.task.name: tuple(job.task.spec.requires) for job in jobs}
        try:
            infos = ray.get(
                [actor.describe.remote(requires) for actor in actors], timeout=_STARTUP_TIMEOUT
            )
        except GetTimeoutError:
            raise ConfigurationError(
                f"{count} Ray worker(s) did not start within {_STARTUP_TIMEOUT:g} s; each "
                f"needs 1 CPU (the cluster has {ray.cluster_resources().get('CPU', 0):g}). "
                "Lower --workers or add nodes."
            ) from None
        lacks: list[dict[str, list[str]]] = [missing for _, missing in infos]
        pending: list[Job] = []
        for job in jobs:
            if all(job.task.name in missing for missing in lacks):
                needed = sorted({p for missing in lacks for p in missing[job.task.name]})
                emit(not_run_result(job, needed), [])
            else:
                pending.append(job)
        files = {job.task.name: ray.put(pack_task(job.task)) for job in pending}
        idle = list(range(count))
        running: dict[Any, tuple[int, Job]] = {}
        reserved: dict[int, Job] = {}  # the job an actor prefetches, sent to it next

        def claim(index: int) -> Job | None:
            job = next((j for j in pending if j.task.name not in lacks[index]), None)
            if job is not None:
                pending.remove(job)
            return job

        def dispatch() -> None:
            for index in list(idle):
                job = reserved.pop(index, None) or claim(index)
                if job is None:
                    continue
                idle.remove(index)
                upcoming = claim(index) if config.warm else None
                if upcoming is not None:
                    reserved[index] = upcoming
                ref = actors[index].run.remote(
                    job.task,
                    files[job.task.name],
                    job.agent,
                    job.repeat,
                    upcoming=upcoming.task if upcoming else None,
                    upcoming_files=files[upcoming.task.name] if upcoming else None,
                )
                running[ref] = (index, job)

        dispatch()
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                index, job = running.pop(ref)
                host = infos[index][0]
                try:
                    result, events, artifacts = ray.get(ref)
                except RayActorError as exc:
                    alive.discard(index)
                    if index in reserved:  # another worker may still run it
                        pending.insert(0, reserved.pop(index))
                    emit(lost_result(job, f"the Ray worker on {host} died: {exc}"), [])
                    continue
                except RayError as exc:
                    emit(lost_result(job, f"the Ray worker on {host} failed: {exc}"), [])
                    idle.append(index)
                    continue
                for relative, data in artifacts.items():
                    target = config.out_dir / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                emit(result, events)
                idle.append(index)
            dispatch()
        for job in pending:  # every worker that could run these died
            emit(lost_result(job, "no live Ray worker could run it"), [])
    except KeyboardInterrupt:
        with contextlib.suppress(RayError):
            ray.get([actors[i].abort.remote() for i in alive], timeout=15)
        raise
    finally:
        with contextlib.suppress(RayError):
            ray.get([actors[i].close.remote() for i in alive], timeout=_CLOSE_TIMEOUT)
        for actor in actors:
            with contextlib.suppress(RayError):
                ray.kill(actor)
        if owned:
            ray.shutdown()
    return count
