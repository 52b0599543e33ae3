"""`marimo-pair eval`: run the task suite with one or more agents and write a report.

Wire it into the main CLI with ``register(subparsers)``; it adds the ``eval``
subcommand and sets ``func`` so ``args.func(args)`` runs it.

Examples::

    marimo-pair eval --model oracle --workers 2
    marimo-pair eval --model oracle --model null --model adversarial --out eval-out
    marimo-pair eval --model openai:gpt-4.1 --task fix_name_error --task split_cell
    marimo-pair eval --model openai:gpt-4.1 --repeats 5          # pass@1..5
    marimo-pair eval --backend ray --ray-address auto --workers 16
    marimo-pair eval --list
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "register", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``eval`` options (separate from `register` so tests can build a parser)."""
    parser.add_argument(
        "--model",
        "--agent",
        dest="models",
        action="append",
        metavar="SPEC",
        help="agent to evaluate; repeat for several: oracle, null, adversarial, "
        "scripted:FILE.json, package.module:factory, or a LangChain model such as "
        "openai:gpt-4.1 (default: oracle)",
    )
    parser.add_argument("--tasks", metavar="DIR", help="task directory (default: notebooks/tasks)")
    parser.add_argument(
        "--task", dest="names", action="append", metavar="NAME", help="run only this task (repeat)"
    )
    parser.add_argument(
        "--tag", dest="tags", action="append", metavar="TAG", help="run only tasks with this tag"
    )
    parser.add_argument("--workers", type=int, default=1, help="tasks run at once (default 1)")
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: worker threads in this process (default); ray: one Ray actor per "
        "worker on a Ray cluster (pip install 'marimo-pair-tools[ray]')",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the Ray cluster to join (host:port or auto; default: $RAY_ADDRESS, else a "
        "new local cluster)",
    )
    parser.add_argument(
        "--ray-runtime-env",
        metavar="JSON|FILE",
        help="Ray runtime_env for the workers, as JSON or a JSON file (see docs/eval-at-scale.md)",
    )
    parser.add_argument(
        "--servers",
        choices=("cold", "warm"),
        help="cold: a marimo server per task; warm: each worker reuses one server, with a "
        "fresh notebook and kernel per task (default: cold locally, warm on Ray)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="K",
        help="run each (task, model) K times; the summary reports pass@k and the spread "
        "of scores (default 1)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output directory (default: eval-results/<timestamp>)"
    )
    parser.add_argument(
        "--approvals",
        choices=("off", "reject", "approve"),
        default="off",
        help="ask before deletes that break other cells, and answer as given (default off)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every task's time limit (slow machines)",
    )
    parser.add_argument(
        "--fresh-grading-process",
        action="store_true",
        help="start a new interpreter for each grading run instead of forking a warm one",
    )
    parser.add_argument("--system-prompt", metavar="FILE", help="replace the agent's system prompt")
    parser.add_argument(
        "--fail-under",
        type=float,
        metavar="RATE",
        help="exit 1 if an agent's pass rate (0..1) is below RATE",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    parser.add_argument("--list", action="store_true", help="list the tasks and exit")


def _runtime_env(value: str | None) -> dict[str, Any] | None:
    """``--ray-runtime-env``: inline JSON, or the path of a JSON file."""
    if value is None:
        return None
    from ..errors import ConfigurationError

    text = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
    try:
        env = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"--ray-runtime-env is not JSON: {exc}") from None
    if not isinstance(env, dict):
        raise ConfigurationError("--ray-runtime-env must be a JSON object")
    return env


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to ``marimo-pair``'s subparsers; returns the parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="run the eval task suite and write results.jsonl and summary.md",
        description=(__doc__ or "").split("\n\n")[0],
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run ``marimo-pair eval`` with parsed arguments; returns the exit code."""
    from .report import aggregate, not_run_text, rules_text
    from .runner import RunConfig, run_suite
    from .tasks import load_tasks

    tasks = load_tasks(args.tasks, names=args.names, tags=args.tags)
    if args.list:
        for task in tasks:
            tags = ", ".join(task.spec.tags)
            print(f"{task.name:32} [{tags}] {task.instruction[:70]}")
        return 0
    if not tasks:
        print("marimo-pair eval: no task matches", file=sys.stderr)
        return 1
    if args.repeats < 1:
        print("marimo-pair eval: --repeats must be at least 1", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("eval-results") / time.strftime("%Y%m%d-%H%M%S")
    prompt = Path(args.system_prompt).read_text(encoding="utf-8") if args.system_prompt else None
    config = RunConfig(
        out_dir=out,
        workers=args.workers,
        approvals=args.approvals,
        fresh_grading_process=args.fresh_grading_process,
        progress=not args.no_progress,
        time_scale=args.time_scale,
        system_prompt=prompt,
        backend=args.backend,
        servers=args.servers,
        repeats=args.repeats,
        ray_address=args.ray_address,
        ray_runtime_env=_runtime_env(args.ray_runtime_env),
    )
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if main_thread:  # SIGTERM then stops the marimo servers like Ctrl-C does
        signal.signal(signal.SIGTERM, _terminate)
    try:
        suite = run_suite(tasks, args.models or ["oracle"], config)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    status = 0
    for summary in aggregate(suite.results):
        line = (
            f"{summary.agent}: {summary.passed}/{summary.tasks} passed "
            f"({100 * summary.pass_rate:.1f}%), mean score {summary.mean_score:.3f}, "
            f"violations attempted {summary.violations_attempted} / executed "
            f"{summary.violations_executed}, errors {summary.errors}"
        )
        if summary.repeats > 1:
            k = summary.repeats
            line += (
                f"; pass@1 {100 * summary.pass_at[1]:.1f}%, pass@{k} "
                f"{100 * summary.pass_at[k]:.1f}%, score spread {summary.score_spread:.3f}"
            )
        if summary.not_run:
            line += f"; {not_run_text(summary)}"
        print(line)
        if summary.violations_by_rule:
            print(f"  by rule (attempted/executed): {rules_text(summary)}")
        if args.fail_under is not None and summary.pass_rate < args.fail_under:
            status = 1
    print(f"{len(suite.results)} runs in {suite.seconds:.1f} s; results in {out}/")
    return status


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m marimo_pair_tools.eval.cli``)."""
    from ..errors import MarimoPairError

    parser = argparse.ArgumentParser(prog="marimo-pair eval")
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except MarimoPairError as exc:
        print(f"marimo-pair eval: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
