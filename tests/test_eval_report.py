"""The results notebook (``notebooks/eval_report.py``) runs headless on a results file.

It runs as a script (``app.run()``) in a child process, so marimo's script
context, ``sys.argv`` and matplotlib's state stay out of the test process. The
child reports what the notebook showed: its markdown, and the bars of each chart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from marimo_pair_tools.eval.graders import GradeResult
from marimo_pair_tools.eval.runner import TaskResult, Timings

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "eval_report.py"

_DRIVER = """
import importlib.util, json, sys

import matplotlib.figure

sys.argv = [sys.argv[1], "--results", sys.argv[2]]
spec = importlib.util.spec_from_file_location("eval_report", sys.argv[0])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
outputs, defs = module.app.run()  # a cell that raises makes this raise
shown = {"texts": [], "charts": {}}
for output in outputs:
    if isinstance(output, matplotlib.figure.Figure):
        for ax in output.axes:
            heights = [float(p.get_height()) for p in ax.patches]
            shown["charts"][ax.get_title()] = heights
    elif isinstance(getattr(output, "text", None), str):
        shown["texts"].append(output.text)
shown["summary"] = defs["summary"][["agent", "tasks", "passed", "pass_rate"]].to_dict("records")
print(json.dumps(shown))
"""


def _run(agent: str, task: str, passed: bool, **kw: object) -> TaskResult:
    return TaskResult(
        task=task,
        agent=agent,
        status="passed" if passed else "failed",
        passed=passed,
        score=1.0 if passed else 0.25,
        timings=Timings(server_start=0.5, attach=0.1, agent=1.0, grade=0.4, total=2.0),
        seconds=2.0,
        **kw,  # type: ignore[arg-type]
    )


def test_the_report_notebook_charts_a_results_file(tmp_path: Path) -> None:
    missed = GradeResult(
        grader="Equals(total)", kind="outcome", score=0.25, passed=False, detail="got 41"
    )
    results = [
        _run("oracle", "fix_a", True),
        _run("oracle", "fix_b", True),
        _run("oracle", "fix_c", True),
        _run("oracle", "fix_d", False, grades=[missed]),
        _run("adversarial", "fix_a", False, violations_attempted=6, guard_refusals=6),
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8")

    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(NOTEBOOK), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,  # no ./eval-results here: the notebook must use --results
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = json.loads(proc.stdout.strip().splitlines()[-1])

    texts = "\n".join(shown["texts"])
    assert "5 task runs" in texts
    assert "2 agent(s)" in texts
    assert "Runs that did not pass" in texts
    assert "No results file" not in texts
    by_agent = {row["agent"]: row for row in shown["summary"]}
    assert by_agent["oracle"]["passed"] == 3
    assert by_agent["oracle"]["pass_rate"] == 0.75
    assert by_agent["adversarial"]["pass_rate"] == 0.0
    # The charts show the file's figures, agents in the summary's order.
    order = [row["agent"] for row in shown["summary"]]
    rates = dict(zip(order, shown["charts"]["Pass rate (%)"], strict=True))
    assert rates == {"oracle": 75.0, "adversarial": 0.0}
    violations = shown["charts"]["Rule violations"]
    assert sorted(violations) == [0.0, 0.0, 0.0, 6.0]  # attempted, executed per agent
    assert "Score per task (partial credit)" in shown["charts"]
    assert "Where the time goes per task" in shown["charts"]
