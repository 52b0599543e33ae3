"""Rename a helper function and all of its callers."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction="Rename the function `calc` to `apply_tax` and update every caller.",
    graders=[
        g.Absent("calc"),
        g.DefinedOnce("apply_tax"),
        g.Equals("apply_tax(100)", 120.0),
        g.Equals("with_tax", [12.0, 30.0, 48.0]),
        g.Equals("lamp", 66.0),
        g.RunsClean(),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.inspect("helpers"),
        o.read("helpers"),
        o.read("prices_cell"),
        o.read("single_cell"),
        o.apply(
            [
                {"op": "replace", "cell": "helpers", "old": "def calc(", "new": "def apply_tax("},
                {"op": "replace", "cell": "prices_cell", "old": "calc(", "new": "apply_tax("},
                {"op": "replace", "cell": "single_cell", "old": "calc(", "new": "apply_tax("},
            ]
        ),
        o.say("Renamed `calc` to `apply_tax` in its cell and both callers."),
    ],
    limits=Limits(steps=12, seconds=60),
    tags=("refactor", "graph"),
)
