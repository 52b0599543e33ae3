"""Fix a logic error: an off-by-one slice."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "`last_three` should hold the last three items of `values`, but the slice is off by "
        "one. Fix the `tail_cell` cell."
    ),
    graders=[
        g.Equals("last_three", [9, 2, 6]),
        g.CodeMatches(r"values\[", cell="tail_cell"),
        g.RunsClean(),
        g.Unchanged("data"),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.read("tail_cell"),
        o.edit("tail_cell", old="values[-4:-1]", new="values[-3:]"),
        o.say("`last_three` now slices `values[-3:]`."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("fix",),
)
