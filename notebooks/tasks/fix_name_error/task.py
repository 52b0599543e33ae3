"""Fix a typo that makes a cell fail with NameError."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "The `report` cell fails with a NameError. Fix it so that `message` reads "
        "'Total: <the total>'. Do not change the `data` cell."
    ),
    graders=[
        g.RunsClean(),
        g.Equals("message", "Total: 42"),
        g.CodeMatches(r"\btotl\b", present=False),
        g.Unchanged("data"),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.read("report"),
        o.edit("report", old="{totl}", new="{total}"),
        o.say("Fixed the typo: `report` now uses `total`."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("fix",),
)
