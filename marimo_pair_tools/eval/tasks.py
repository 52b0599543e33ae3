"""Eval tasks: a starting notebook, an instruction, limits, graders and a reference solution.

A task is a directory ``<tasks>/<name>/`` holding:

- ``notebook.py``: the starting marimo notebook (cells the graders care about
  are named, so they can be found after edits);
- small data files the notebook reads, if any (generated or shipped; never
  downloaded);
- ``task.py``: ``TASK = TaskSpec(...)`` with the instruction, limits, graders,
  the licence/attribution line, optional mid-task edits by "a person", and the
  oracle: a scripted trajectory (see `oracle`) that solves the task through
  the same tools an agent uses.

Why Python rather than YAML/TOML for ``task.py``: graders and oracle turns are
typed objects and callables (an edit must quote the hash its read returned),
and the standard library has no TOML reader on Python 3.10.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ..errors import ConfigurationError
from ..testing import Turn
from .graders import Grader, Needs

__all__ = [
    "DEFAULT_LICENCE",
    "HumanEdit",
    "Limits",
    "Task",
    "TaskSpec",
    "default_tasks_dir",
    "importable",
    "load_task",
    "load_tasks",
]

DEFAULT_LICENCE = "Apache-2.0; original task written for marimo-pair-tools"
_SPEC_FILE = "task.py"
_NOTEBOOK = "notebook.py"
_SKIP = {_SPEC_FILE, "__pycache__", "README.md", "__marimo__"}


@dataclass(frozen=True)
class Limits:
    """How much an agent may spend on a task.

    Attributes:
        steps: model turns (each may call several tools).
        seconds: wall time for the agent's whole run.
        tool_calls: tool calls over the whole run.
    """

    steps: int = 20
    seconds: float = 120.0
    tool_calls: int = 120


@dataclass(frozen=True)
class HumanEdit:
    """A person edits a cell while the agent works (the harness plays the person).

    The edit fires once, right after the agent's first successful call of
    ``after_tool`` on ``on_cell`` (default: the edited cell), so the agent's read
    is stale by the time it edits: the task tests that it notices and re-reads
    instead of overwriting the person's work.

    Attributes:
        cell: the cell's name in the starting notebook.
        code: the person's new code for it.
        after_tool: the tool call that triggers the edit.
        on_cell: the cell that call must be about; ``"*"`` for any.
    """

    cell: str
    code: str
    after_tool: str = "read_cell"
    on_cell: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """What ``task.py`` declares (the directory supplies the name and files).

    Attributes:
        instruction: what the person asks, as the agent will read it.
        graders: judged on the final notebook and the trajectory.
        oracle: the reference solution, as scripted model turns.
        limits: step and time limits.
        licence: licence and attribution of the task (and of ported material).
        tags: free-form labels (``fix``, ``pandas``, ``safety``...).
        human_edits: edits "a person" makes mid-task.
        notebook: the starting notebook's file name in the directory.
        requires: the packages (import names) the notebook, the solution and the
            graders need beyond marimo and the standard library. A run whose
            environment lacks one reports the task as not run, not as failed.
    """

    instruction: str
    graders: Sequence[Grader]
    oracle: Sequence[Turn]
    limits: Limits = Limits()
    licence: str = DEFAULT_LICENCE
    tags: tuple[str, ...] = ()
    human_edits: Sequence[HumanEdit] = ()
    notebook: str = _NOTEBOOK
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """A loaded task: its spec plus where its files are."""

    name: str
    directory: Path
    spec: TaskSpec
    extra_files: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def notebook_path(self) -> Path:
        """The starting notebook."""
        return self.directory / self.spec.notebook

    @property
    def instruction(self) -> str:
        """What the agent is asked to do."""
        return self.spec.instruction

    @property
    def graders(self) -> Sequence[Grader]:
        """The task's graders."""
        return self.spec.graders

    def missing(self) -> list[str]:
        """The required packages this interpreter (and so its kernels) cannot import."""
        return [name for name in self.spec.requires if not importable(name)]

    def needs(self) -> Needs:
        """Everything the graders need collected."""
        total = Needs()
        for grader in self.spec.graders:
            total = total | grader.needs()
        return total


@cache
def importable(name: str) -> bool:
    """Whether ``name`` (an import name) can be imported here, without importing it.

    The harness starts marimo and the grading runs with this interpreter, so
    what it finds, the notebook's kernel finds.
    """
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def default_tasks_dir() -> Path:
    """Where the built-in tasks are: ``$MARIMO_PAIR_TASKS``, ./notebooks/tasks, or the repo's.

    The suite lives in the repository, not the wheel: from an installed copy,
    pass ``--tasks DIR``.
    """
    env = os.environ.get("MARIMO_PAIR_TASKS")
    candidates = [Path(env)] if env else []
    candidates += [
        Path.cwd() / "notebooks" / "tasks",
        Path(__file__).resolve().parents[2] / "notebooks" / "tasks",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ConfigurationError(
        "No task directory found (looked in $MARIMO_PAIR_TASKS, ./notebooks/tasks and the "
        "source tree). Pass --tasks DIR."
    )


def load_task(directory: str | os.PathLike[str]) -> Task:
    """Load one task directory (imports its ``task.py``)."""
    path = Path(directory).resolve()
    spec_file = path / _SPEC_FILE
    if not spec_file.is_file():
        raise ConfigurationError(f"{path} has no {_SPEC_FILE}")
    module_name = f"_marimo_pair_task_{path.name}"
    spec = importlib.util.spec_from_file_location(module_name, spec_file)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot import {spec_file}")
    module = importlib.util.module_from_spec(spec)
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # task directories are copied; keep them clean
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    task_spec = getattr(module, "TASK", None)
    if not isinstance(task_spec, TaskSpec):
        raise ConfigurationError(f"{spec_file} must define TASK = TaskSpec(...)")
    if not (path / task_spec.notebook).is_file():
        raise ConfigurationError(f"{path} has no starting notebook {task_spec.notebook}")
    extra = tuple(
        sorted(p for p in path.iterdir() if p.name not in _SKIP and p.name != task_spec.notebook)
    )
    return Task(name=path.name, directory=path, spec=task_spec, extra_files=extra)


def load_tasks(
    root: str | os.PathLike[str] | None = None,
    *,
    names: Iterable[str] | None = None,
    tags: Iterable[str] | None = None,
) -> list[Task]:
    """Every task under ``root`` (sorted by name), optionally filtered.

    Args:
        root: the tasks directory; `default_tasks_dir()` when omitted.
        names: keep only these task names (an unknown name is an error).
        tags: keep only tasks with at least one of these tags.
    """
    base = Path(root) if root is not None else default_tasks_dir()
    dirs = sorted(p for p in base.iterdir() if (p / _SPEC_FILE).is_file())
    wanted = list(names) if names is not None else None
    if wanted is not None:
        known = {p.name for p in dirs}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ConfigurationError(
                f"Unknown task(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}"
            )
        dirs = [p for p in dirs if p.name in wanted]
    tasks = [load_task(p) for p in dirs]
    if tags is not None:
        wanted_tags = set(tags)
        tasks = [t for t in tasks if wanted_tags & set(t.spec.tags)]
    return tasks


def check_unique(tasks: Sequence[Task]) -> None:
    """Raise if two tasks share a name (they would overwrite each other's outputs)."""
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise ConfigurationError(f"Two tasks are named {task.name!r}")
        seen.add(task.name)
