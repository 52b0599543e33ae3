"""Fix a broken cell: string + int TypeError."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "`label` should be the text 'Count: 7', built from `count`, but the `label_cell` cell "
        "raises a TypeError. Fix it without changing `inputs`."
    ),
    graders=[
        g.RunsClean(),
        g.Equals("label", "Count: 7"),
        g.CodeMatches(r"Count: 7", present=False),
        g.Unchanged("inputs"),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.read("label_cell"),
        o.edit("label_cell", old='"Count: " + count', new='f"Count: {count}"'),
        o.say("`label` is now built with an f-string."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("fix",),
)
