"""Add a reactive markdown summary that uses a notebook value."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Add a markdown cell (mo.md) that shows 'Total sales: <total>' using the value of "
        "`total`, so it updates when the data changes."
    ),
    graders=[
        g.OutputContains("Total sales: 670"),
        g.CodeMatches(r"mo\.md\("),
        g.CodeMatches(r"670", present=False),
        g.RunsClean(),
        g.Unchanged("ui_imports", "data"),
    ],
    oracle=[
        o.read_notebook(),
        o.create('mo.md(f"Total sales: {total}")', name="summary_md"),
        o.say("Added a markdown cell that shows the live total."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("analysis", "markdown"),
)
