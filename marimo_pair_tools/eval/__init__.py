"""The eval harness: tasks, graders, a parallel runner, reference agents and reports.

Run it with ``marimo-pair eval`` (see `marimo_pair_tools.eval.cli`) or from
Python::

    from marimo_pair_tools.eval import RunConfig, load_tasks, run_suite

    suite = run_suite(load_tasks(), ["oracle"], RunConfig(out_dir=Path("eval-out")))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .compare import Comparison, Frame, compare
from .report import AgentSummary, aggregate, pass_at_k, render_summary

if TYPE_CHECKING:
    from . import graders, oracle
    from .agents import BUILTIN_AGENTS, AgentSpec, resolve_agent
    from .runner import RunConfig, SuiteResult, TaskResult, read_results, run_suite, run_task
    from .tasks import HumanEdit, Limits, Task, TaskSpec, default_tasks_dir, load_task, load_tasks

# These load on first use: the runner pulls in LangGraph, the agent and the tools,
# the tasks, graders and oracle LangChain's messages, while `marimo-pair` only needs
# `eval.cli` to list the subcommand (its `discover` and `exec` stay light).
_LAZY = {
    "graders": "",
    "oracle": "",
    "HumanEdit": "tasks",
    "Limits": "tasks",
    "Task": "tasks",
    "TaskSpec": "tasks",
    "default_tasks_dir": "tasks",
    "load_task": "tasks",
    "load_tasks": "tasks",
    "BUILTIN_AGENTS": "agents",
    "AgentSpec": "agents",
    "resolve_agent": "agents",
    "RunConfig": "runner",
    "SuiteResult": "runner",
    "TaskResult": "runner",
    "read_results": "runner",
    "run_suite": "runner",
    "run_task": "runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not module:  # a submodule
        return importlib.import_module(f".{name}", __name__)
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "BUILTIN_AGENTS",
    "AgentSpec",
    "AgentSummary",
    "Comparison",
    "Frame",
    "HumanEdit",
    "Limits",
    "RunConfig",
    "SuiteResult",
    "Task",
    "TaskResult",
    "TaskSpec",
    "aggregate",
    "compare",
    "default_tasks_dir",
    "graders",
    "load_task",
    "load_tasks",
    "oracle",
    "pass_at_k",
    "read_results",
    "render_summary",
    "resolve_agent",
    "run_suite",
    "run_task",
]
