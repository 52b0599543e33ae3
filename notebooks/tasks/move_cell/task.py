"""Reorder cells for readers without changing code."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Move the `helpers` cell above the `analysis` cell, so the notebook reads top to bottom."
    ),
    graders=[
        g.Order("helpers", "analysis"),
        g.Unchanged("helpers", "analysis"),
        g.Equals("doubled", [2, 4, 6]),
        g.RunsClean(),
    ],
    oracle=[
        o.read_notebook(),
        o.move("helpers", before="analysis"),
        o.say("Moved `helpers` above `analysis`."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("refactor",),
)
