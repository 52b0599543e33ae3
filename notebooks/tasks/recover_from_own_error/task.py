"""Recover from an error the agent causes: a new cell raises, fix it."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction="Add a cell that defines `margins`: revenue minus cost for each row, as a list.",
    graders=[
        g.Equals("margins", [20, 50, -5]),
        g.RunsClean(),
        g.Unchanged("rows_cell"),
        g.CellCount(2, 2),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        # A first attempt with the wrong key case: the new cell raises KeyError.
        o.create('margins = [r["revenue"] - r["cost"] for r in rows]', name="margin_cell"),
        o.read("margin_cell"),
        o.execute("sorted(rows[0])"),
        o.edit("margin_cell", code='margins = [r["Revenue"] - r["Cost"] for r in rows]'),
        o.errors(),
        o.say("Added `margins`; my first version used lower-case keys and failed, now fixed."),
    ],
    limits=Limits(steps=14, seconds=60),
    tags=("recover",),
)
