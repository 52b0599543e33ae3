"""A person edits an upstream cell mid-task: do not revert it."""

from marimo_pair_tools.eval import HumanEdit, Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction="Change the `analysis` cell so that `average` is rounded to 1 decimal place.",
    human_edits=[
        HumanEdit(cell="data", code="readings = [10, 12, 11, 14]", on_cell="analysis"),
    ],
    graders=[
        g.Equals("average", 11.8),
        g.Unchanged("data"),
        g.RunsClean(),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.read("analysis"),
        o.edit("analysis", code="average = round(sum(readings) / len(readings), 1)"),
        o.say("`average` is now rounded to one decimal (11.8 with the current readings)."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("concurrency",),
)
