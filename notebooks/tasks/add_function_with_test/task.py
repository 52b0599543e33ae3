"""Add a function in its own cell and use it (checked on fresh inputs)."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Add a function `normalize(xs)` in its own cell that rescales a list to the range "
        "0..1 (the minimum becomes 0.0, the maximum 1.0), and a cell that defines "
        "`normalized = normalize(raw_scores)`."
    ),
    graders=[
        g.Equals("normalize([2, 4, 6])", [0.0, 0.5, 1.0]),
        g.Equals("normalize([10, 20])", [0.0, 1.0]),
        g.Equals("normalized", [0.0, 1 / 3, 2 / 3, 1.0]),
        g.DependsOn("normalized", "normalize"),
        g.RunsClean(),
        g.Unchanged("data"),
    ],
    oracle=[
        o.read_notebook(),
        o.apply(
            [
                {
                    "op": "create",
                    "code": (
                        "def normalize(xs):\n"
                        "    low, high = min(xs), max(xs)\n"
                        "    return [(x - low) / (high - low) for x in xs]"
                    ),
                    "name": "normalize_cell",
                },
                {"op": "create", "code": "normalized = normalize(raw_scores)", "after": "@0"},
            ]
        ),
        o.say("Added `normalize` and `normalized`."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("analysis",),
)
