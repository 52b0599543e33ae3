import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo

    mo.md(
        """
        # marimo-pair eval results

        Loads a `results.jsonl` written by `marimo-pair eval` and shows pass rates, scores,
        the safety figures (guard refusals, violations attempted vs executed) and where the
        time went. Pick another file below.
        """
    )
    return (mo,)


@app.cell
def imports():
    from pathlib import Path

    import matplotlib.pyplot as plt
    import pandas as pd

    from marimo_pair_tools.eval import aggregate, read_results

    return Path, aggregate, pd, plt, read_results


@app.cell
def choose(Path, mo):
    # `marimo edit notebooks/eval_report.py -- --results DIR/results.jsonl` picks a file;
    # otherwise the newest run under ./eval-results is shown.
    _found = sorted(Path("eval-results").glob("*/results.jsonl"), key=lambda p: p.stat().st_mtime)
    _default = str(_found[-1]) if _found else "eval-results/latest/results.jsonl"
    path_input = mo.ui.text(
        value=str(mo.cli_args().get("results") or _default),
        label="results file",
        full_width=True,
    )
    path_input
    return (path_input,)


@app.cell
def load(Path, aggregate, mo, path_input, pd, read_results):
    _path = Path(path_input.value)
    mo.stop(
        not _path.is_file(),
        mo.md(f"No results file at `{_path}`. Run `marimo-pair eval --out DIR` first."),
    )
    results = read_results(_path)
    summary = pd.DataFrame([s.as_dict() for s in aggregate(results)])
    runs = pd.DataFrame(
        [
            {
                "task": r.task,
                "agent": r.agent,
                "status": r.status,
                "passed": r.passed,
                "score": r.score,
                "steps": r.steps,
                "tool_calls": r.tool_calls,
                "guard_refusals": r.guard_refusals,
                "violations_attempted": r.violations_attempted,
                "violations_executed": r.violations_executed,
                "unchanged": r.notebook_unchanged,
                "seconds": r.seconds,
                **{f"t_{k}": v for k, v in r.timings.model_dump().items()},
            }
            for r in results
            if r.status != "not_run"  # missing packages: no score, no time to chart
        ]
    )
    _skipped = sum(r.status == "not_run" for r in results)
    mo.md(
        f"**{len(results)} task runs** by {summary['agent'].nunique()} agent(s) from `{_path}`"
        + (f" ({_skipped} not run: their packages are missing)" if _skipped else "")
    )
    return results, runs, summary


@app.cell
def summary_table(mo, summary):
    mo.ui.table(
        summary[
            [
                "agent",
                "tasks",
                "passed",
                "pass_rate",
                "mean_score",
                "not_run",
                "errors",
                "steps_mean",
                "tool_calls",
                "guard_refusals",
                "violations_attempted",
                "violations_executed",
                "unchanged",
                "seconds_total",
                "server_overhead_median",
            ]
        ],
        selection=None,
    )
    return


@app.cell
def rates_chart(plt, summary):
    fig_rates, _axes = plt.subplots(1, 2, figsize=(10, 3.5))
    _axes[0].bar(summary["agent"], summary["pass_rate"] * 100, color="tab:green")
    _axes[0].set_title("Pass rate (%)")
    _axes[0].set_ylim(0, 100)
    _x = range(len(summary))
    _axes[1].bar(
        [i - 0.2 for i in _x], summary["violations_attempted"], width=0.4, label="attempted"
    )
    _axes[1].bar([i + 0.2 for i in _x], summary["violations_executed"], width=0.4, label="executed")
    _axes[1].set_xticks(list(_x), summary["agent"])
    _axes[1].set_title("Rule violations")
    _axes[1].legend()
    fig_rates.tight_layout()
    fig_rates
    return


@app.cell
def scores_chart(plt, runs):
    _scores = runs.pivot_table(index="task", columns="agent", values="score")
    fig_scores, _ax = plt.subplots(figsize=(8, 0.3 * len(_scores) + 1.5))
    _image = _ax.imshow(_scores.values, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1)
    _ax.set_yticks(range(len(_scores)), _scores.index)
    _ax.set_xticks(range(len(_scores.columns)), _scores.columns)
    _ax.set_title("Score per task (partial credit)")
    fig_scores.colorbar(_image, ax=_ax)
    fig_scores.tight_layout()
    fig_scores
    return


@app.cell
def time_chart(plt, runs):
    _parts = ["t_server_start", "t_attach", "t_prepare", "t_agent", "t_collect", "t_grade"]
    _times = runs.groupby("task")[_parts].mean()
    fig_time, _ax = plt.subplots(figsize=(8, 0.3 * len(_times) + 1.5))
    _left = [0.0] * len(_times)
    for _part in _parts:
        _ax.barh(_times.index, _times[_part], left=_left, label=_part.removeprefix("t_"))
        _left = [a + b for a, b in zip(_left, _times[_part], strict=True)]
    _ax.set_xlabel("seconds (mean over agents)")
    _ax.set_title("Where the time goes per task")
    _ax.legend(fontsize="small")
    fig_time.tight_layout()
    fig_time
    return


@app.cell
def failures(mo, pd, results):
    _rows = [
        {
            "task": r.task,
            "agent": r.agent,
            "status": r.status,
            "why": r.error.splitlines()[0]
            if r.error
            else "; ".join(f"{g.grader}: {g.detail}" for g in r.grades if not g.passed),
        }
        for r in results
        if not r.passed and r.status != "not_run"
    ]
    mo.vstack(
        [mo.md("## Runs that did not pass"), mo.ui.table(pd.DataFrame(_rows), selection=None)]
    ) if _rows else mo.md("Every run passed.")
    return


if __name__ == "__main__":
    app.run()
