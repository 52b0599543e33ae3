"""Summaries of eval results: per-agent figures and ``summary.md``.

`aggregate` is pure (results in, numbers out) so the CLI, the tests and the
results notebook (``notebooks/eval_report.py``) compute the same figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import SuiteResult, TaskResult

__all__ = ["AgentSummary", "aggregate", "render_summary", "write_summary"]


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

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for tables and JSON)."""
        return asdict(self)


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def aggregate(results: Sequence[TaskResult]) -> list[AgentSummary]:
    """One `AgentSummary` per agent, in first-seen order."""
    agents: list[str] = []
    for result in results:
        if result.agent not in agents:
            agents.append(result.agent)
    out: list[AgentSummary] = []
    for agent in agents:
        rows = [r for r in results if r.agent == agent]
        n = len(rows)
        tokens_in = [r.tokens.get("input_tokens", 0) for r in rows if r.tokens]
        tokens_out = [r.tokens.get("output_tokens", 0) for r in rows if r.tokens]
        started = [r for r in rows if r.timings.server_start > 0]
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
            )
        )
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def render_summary(
    results: Sequence[TaskResult], *, seconds: float | None = None, workers: int | None = None
) -> str:
    """``summary.md``: per-agent figures, then one row per task run, then failures."""
    lines = ["# marimo-pair eval summary", ""]
    if seconds is not None:
        lines.append(
            f"{len(results)} task runs in {seconds:.1f} s wall time"
            + (f" on {workers} worker(s)" if workers else "")
            + "."
        )
        lines.append("")
    lines += [
        "| agent | tasks | pass rate | mean score | errors | limits | steps/task | tool calls "
        "| guard refusals | violations attempted | violations executed | unchanged | time (s) "
        "| server overhead (median s) | tokens in/out |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in aggregate(results):
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
    lines += [
        "",
        "Guard refusals are calls the agent's guard refused; violations are re-derived from "
        "the trajectory alone (edit without a fresh read, delete without a descendant check or "
        "acknowledgement, scratchpad use of marimo's private editing API). *Executed* "
        "violations took effect: it must be 0.",
        "",
        "## Task runs",
        "",
        "| task | agent | status | score | steps | tool calls | refusals | violations (exec) "
        "| unchanged | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.task} | {r.agent} | {r.status} | {r.score:.2f} | {r.steps} | {r.tool_calls} "
            f"| {r.guard_refusals} | {r.violations_attempted} ({r.violations_executed}) "
            f"| {'yes' if r.notebook_unchanged else 'no'} | {r.seconds:.1f} |"
        )
    failures = [r for r in results if not r.passed]
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
    path.write_text(
        render_summary(suite.results, seconds=suite.seconds, workers=suite.workers),
        encoding="utf-8",
    )
    return path
