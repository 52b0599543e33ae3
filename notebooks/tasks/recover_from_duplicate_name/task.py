"""Recover from a refused change: a name defined twice."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction="Add a cell that computes the total including tax, as `total_with_tax`.",
    graders=[
        g.Equals("total_with_tax", 12.0),
        g.DefinedOnce("total"),
        g.Unchanged("data", "tax_cell"),
        g.RunsClean(),
    ],
    oracle=[
        o.read_notebook(),
        # Redefining `total` is refused as a whole (nothing is applied): retry with a new name.
        o.create("total = round(total + tax, 2)", name="with_tax_cell"),
        o.create("total_with_tax = round(total + tax, 2)", name="with_tax_cell"),
        o.say("Added `total_with_tax` (12.0); `total` stays owned by `data`."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("recover", "graph"),
)
