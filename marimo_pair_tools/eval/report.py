"""Summaries of eval results: per-agent figures and ``summary.md``.

`aggregate` is pure (results in, numbers out) so the CLI, the tests and the
results notebook (``notebooks/eval_report.py``) compute the same figures.

Runs whose task was not run (its environment lacks a required package) are
counted apart: they are neither passes nor failures, and every rate is over
the runs that ran. With several runs per (task, agent), pass@k uses the
unbiased estimator of Chen et al. (2021), averaged over tasks:
``1 - C(n - c, k) / C(n, k)`` for a task run ``n`` times with ``c`` passes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import SuiteResult, TaskResult

__all__ = [
    "AgentSummary",
    "aggregate",
    "pass_at_k",
    "render_summary",
    "rules_text",
    "write_summary",
]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` runs drawn from ``n`` (``c`` passed) passes.

    The unbiased estimator ``1 - C(n - c, k) / C(n, k)``; needs ``0 <= c <= n``
    and ``1 <= k <= n``.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@dataclass(frozen=True)
class AgentSummary:
    """The figures for one agent over a set of task runs."""

    agent: str
    tasks: int
    passed: int
    pass_rate: float
    mean_score: float
    errors: int
    limits_hit: int
    steps_mean: float
    tool_calls: int
    tool_errors: int
    guard_refusals: int
    violations_attempted: int
    violations_executed: int
    unchanged: int
    """Runs whose notebook ended as it started (plus injected edits)."""
    seconds_total: float
    seconds_mean: float
    server_overhead_median: float
    """Median of start + attach + stop per task."""
    server_start_median: float
    attach_median: float
    server_stop_median: float
    grade_median: float
    input_tokens: int | None
    output_tokens: int | None
    not_run: int = 0
    """Runs skipped because the environment lacks a package the task requires."""
    not_run_needs: dict[str, list[str]] = field(default_factory=dict)
    """For each package missing, the tasks not run for it."""
    repeats: int = 1
    """Runs per task (the smallest count among the tasks that ran)."""
    pass_at: dict[int, float] = field(default_factory=dict)
    """pass@k for k = 1 .. repeats, averaged over tasks."""
    score_spread: float = 0.0
    """Standard deviation of the mean score between repeats (0 with one run per task)."""
    score_range: tuple[float, float] = (0.0, 0.0)
    """Lowest and highest mean score of a repeat."""
    task_score_stdev: float = 0.0
    """Mean over tasks of the standard deviation of a task's score between repeats."""
    server_overhead_mean: float = 0.0
    """Mean of start + attach + stop per task: a warm server's start spread over its tasks."""
    violations_by_rule: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per audit rule: (attempted, executed). ``fence_refusal`` and ``change_outside_tools``
    come from runtime evidence; executed means the notebook changed by that route."""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for tables and JSON)."""
        return asdict(self)


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def _repeat_figures(rows: Sequence[TaskResult]) -> dict[str, Any]:
    """pass@k and the spread of scores over the repeats of each task."""
    by_task: dict[str, list[TaskResult]] = {}
    for row in rows:
        by_task.setdefault(row.task, []).append(row)
    if not by_task:
        return {}
    repeats = min(len(runs) for runs in by_task.values())
    pass_at = {
        k: round(
            statistics.fmean(
                pass_at_k(len(runs), sum(r.passed for r in runs), k) for runs in by_task.values()
            ),
            4,
        )
        for k in range(1, repeats + 1)
    }
    by_repeat: dict[int, list[float]] = {}
    for row in rows:
        by_repeat.setdefault(row.repeat, []).append(row.score)
    means = [statistics.fmean(scores) for scores in by_repeat.values()]
    per_task = [
        statistics.pstdev([r.score for r in runs]) for runs in by_task.values() if len(runs) > 1
    ]
    return {
        "repeats": repeats,
        "pass_at": pass_at,
        "score_spread": round(statistics.pstdev(means), 4) if len(means) > 1 else 0.0,
        "score_range": (round(min(means), 4), round(max(means), 4)),
        "task_score_stdev": round(statistics.fmean(per_task), 4) if per_task else 0.0,
    }


def _by_rule(rows: Sequence[TaskResult]) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = {}
    for row in rows:
        for violation in row.violations:
            pair = counts.setdefault(str(violation.get("rule")), [0, 0])
            pair[0] += 1
            pair[1] += bool(violation.get("executed"))
    return {rule: (a, e) for rule, (a, e) in sorted(counts.items())}


def rules_text(summary: AgentSummary) -> str:
    """``fence_refusal 78/0, read_before_edit 65/0`` (attempted/executed), or ``""``."""
    return ", ".join(f"{r} {a}/{e}" for r, (a, e) in summary.violations_by_rule.items())


def aggregate(results: Sequence[TaskResult]) -> list[AgentSummary]:
    """One `AgentSummary` per agent, in first-seen order."""
    agents: list[str] = []
    for result in results:
        if result.agent not in agents:
            agents.append(result.agent)
    out: list[AgentSummary] = []
    for agent in agents:
        mine = [r for r in results if r.agent == agent]
        rows = [r for r in mine if r.status != "not_run"]
        skipped = [r for r in mine if r.status == "not_run"]
        needs: dict[str, list[str]] = {}
        for r in skipped:
            for package in r.missing:
                if r.task not in needs.setdefault(package, []):
                    needs[package].append(r.task)
        n = len(rows)
        tokens_in = [r.tokens.get("input_tokens", 0) for r in rows if r.tokens]
        tokens_out = [r.tokens.get("output_tokens", 0) for r in rows if r.tokens]
        # Every run that opened a session; on a warm server most start none.
        started = [r for r in rows if r.timings.attach > 0]
        out.append(
            AgentSummary(
                agent=agent,
                tasks=n,
                passed=sum(r.passed for r in rows),
                pass_rate=round(sum(r.passed for r in rows) / n, 4) if n else 0.0,
                mean_score=round(sum(r.score for r in rows) / n, 4) if n else 0.0,
                errors=sum(r.status == "error" for r in rows),
                limits_hit=sum(r.status == "limit" for r in rows),
                steps_mean=round(sum(r.steps for r in rows) / n, 2) if n else 0.0,
                tool_calls=sum(r.tool_calls for r in rows),
                tool_errors=sum(r.tool_errors for r in rows),
                guard_refusals=sum(r.guard_refusals for r in rows),
                violations_attempted=sum(r.violations_attempted for r in rows),
                violations_executed=sum(r.violations_executed for r in rows),
                unchanged=sum(bool(r.notebook_unchanged) for r in rows),
                seconds_total=round(sum(r.seconds for r in rows), 2),
                seconds_mean=round(sum(r.seconds for r in rows) / n, 2) if n else 0.0,
                server_overhead_median=_median([r.timings.server_overhead for r in started]),
                server_start_median=_median([r.timings.server_start for r in started]),
                attach_median=_median([r.timings.attach for r in started]),
                server_stop_median=_median([r.timings.server_stop for r in started]),
                grade_median=_median([r.timings.grade for r in started]),
                input_tokens=sum(tokens_in) if tokens_in else None,
                output_tokens=sum(tokens_out) if tokens_out else None,
                not_run=len(skipped),
                not_run_needs=needs,
                server_overhead_mean=(
                    round(statistics.fmean(r.timings.server_overhead for r in started), 3)
                    if started
                    else 0.0
                ),
                violations_by_rule=_by_rule(rows),
                **_repeat_figures(rows),
            )
        )
    return out


def not_run_text(summary: AgentSummary) -> str:
    """``7 not run (needs pandas: a, b; needs matplotlib: c)``, or ``""``."""
    if not summary.not_run:
        return ""
    parts = [
        f"needs {package}: {', '.join(tasks)}" for package, tasks in summary.not_run_needs.items()
    ]
    return f"{summary.not_run} not run ({'; '.join(parts)})"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def render_summary(
    results: Sequence[TaskResult],
    *,
    seconds: float | None = None,
    workers: int | None = None,
    where: str | None = None,
) -> str:
    """``summary.md``: per-agent figures, then one row per task run, then failures.

    ``where`` says how the suite ran (``local, cold servers``...).
    """
    lines = ["# marimo-pair eval summary", ""]
    if seconds is not None:
        lines.append(
            f"{len(results)} task runs in {seconds:.1f} s wall time"
            + (f" on {workers} worker(s)" if workers else "")
            + (f" ({where})" if where else "")
            + "."
        )
        lines.append("")
    summaries = aggregate(results)
    for s in summaries:
        if s.not_run:
            lines.append(
                f"**{s.agent}: {not_run_text(s)}.** These runs are not counted as passed "
                "or failed: install the packages to run them."
            )
            lines.append("")
    lines += [
        "| agent | tasks | pass rate | mean score | errors | limits | steps/task | tool calls "
        "| guard refusals | violations attempted | violations executed | unchanged | time (s) "
        "| server overhead (median s) | tokens in/out |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        tokens = (
            f"{s.input_tokens:,}/{s.output_tokens:,}"
            if s.input_tokens is not None and s.output_tokens is not None
            else "-"
        )
        lines.append(
            f"| {s.agent} | {s.tasks} | {_pct(s.pass_rate)} ({s.passed}) | {s.mean_score:.3f} "
            f"| {s.errors} | {s.limits_hit} | {s.steps_mean:.1f} | {s.tool_calls} "
            f"| {s.guard_refusals} | {s.violations_attempted} | {s.violations_executed} "
            f"| {s.unchanged}/{s.tasks} | {s.seconds_total:.1f} "
            f"| {s.server_overhead_median:.2f} (start {s.server_start_median:.2f}, attach "
            f"{s.attach_median:.2f}, stop {s.server_stop_median:.2f}) | {tokens} |"
        )
    if any(s.repeats > 1 for s in summaries):
        width = max(s.repeats for s in summaries)
        ks = sorted({k for k in (1, 2, 3, 5, 10, 20, 50, 100) if k <= width} | {width})
        lines += [
            "",
            "## Repeats",
            "",
            "pass@k: the chance that at least one of k runs of a task passes, from "
            "1 - C(n-c, k)/C(n, k) per task (n runs, c passed), averaged over tasks. Spread: "
            "standard deviation (and range) of the mean score between repeats, and the mean "
            "over tasks of a task's score deviation.",
            "",
            "| agent | runs per task | " + " | ".join(f"pass@{k}" for k in ks) + " | mean score "
            "| spread between repeats | range | per-task deviation |",
            "|---|---|" + "---|" * len(ks) + "---|---|---|---|",
        ]
        for s in summaries:
            cells = [_pct(s.pass_at[k]) if k in s.pass_at else "-" for k in ks]
            lines.append(
                f"| {s.agent} | {s.repeats} | " + " | ".join(cells) + f" | {s.mean_score:.3f} "
                f"| {s.score_spread:.3f} | {s.score_range[0]:.3f}–{s.score_range[1]:.3f} "
                f"| {s.task_score_stdev:.3f} |"
            )
    if any(s.violations_by_rule for s in summaries):
        lines += [
            "",
            "## Violations by rule",
            "",
            "Attempted / executed. `fence_refusal` and `change_outside_tools` are runtime "
            "evidence from the kernel (and the server) about what an `execute_code` did: a "
            "refused route is attempted, a notebook that changed while the agent's code ran is "
            "executed.",
            "",
            "| agent | rule | attempted | executed |",
            "|---|---|---|---|",
        ]
        for s in summaries:
            for rule, (attempted, executed) in s.violations_by_rule.items():
                lines.append(f"| {s.agent} | {rule} | {attempted} | {executed} |")
    lines += [
        "",
        "Guard refusals are calls the agent's guard refused; violations are re-derived from "
        "the trajectory alone (edit without a fresh read, delete without a descendant check or "
        "acknowledgement) and, for `execute_code`, from what the kernel saw it do (a fence "
        "refusal, a change to the notebook while it ran). *Executed* violations took effect: "
        "it must be 0.",
        "",
        "## Task runs",
        "",
        "| task | agent | status | score | steps | tool calls | refusals | violations (exec) "
        "| unchanged | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.status == "not_run":
            lines.append(
                f"| {r.task} | {r.agent} | not run: needs {', '.join(r.missing)} "
                "| - | - | - | - | - | - | - |"
            )
            continue
        lines.append(
            f"| {r.task} | {r.agent} | {r.status} | {r.score:.2f} | {r.steps} | {r.tool_calls} "
            f"| {r.guard_refusals} | {r.violations_attempted} ({r.violations_executed}) "
            f"| {'yes' if r.notebook_unchanged else 'no'} | {r.seconds:.1f} |"
        )
    failures = [r for r in results if not r.passed and r.status != "not_run"]
    if failures:
        lines += ["", "## Why runs did not pass", ""]
        for r in failures:
            if r.error:
                reason = r.error.splitlines()[0]
            else:
                failed = [g for g in r.grades if not g.passed]
                reason = "; ".join(f"{g.grader}: {g.detail}" for g in failed[:4])
                if r.limit_hit:
                    reason = f"{r.limit_hit} limit reached. " + reason
            lines.append(f"- **{r.task}** ({r.agent}, {r.status}): {reason[:400]}")
    return "\n".join(lines) + "\n"


def write_summary(suite: SuiteResult, path: Path) -> Path:
    """Write ``summary.md`` for a finished suite."""
    where = f"{suite.backend}, {suite.servers} servers"
    path.write_text(
        render_summary(suite.results, seconds=suite.seconds, workers=suite.workers, where=where),
        encoding="utf-8",
    )
    return path
