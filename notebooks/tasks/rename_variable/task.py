"""Rename a variable across its defining cell and every dependent."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Rename the DataFrame `df` to `sales` everywhere: where it is defined and in every cell "
        "that uses it. The results must stay the same."
    ),
    graders=[
        g.Absent("df"),
        g.DefinedOnce("sales"),
        g.Equals("total", 550),
        g.Equals("best_month", 4),
        g.Equals("growth", [0.0, 0.5, -0.2, 0.5]),
        g.DependsOn("total_cell", "load"),
        g.RunsClean(),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.inspect("load"),
        o.read("load"),
        o.read("total_cell"),
        o.read("best_cell"),
        o.read("growth_cell"),
        o.apply(
            [
                {"op": "replace", "cell": cell, "old": "df", "new": "sales", "replace_all": True}
                for cell in ("load", "total_cell", "best_cell", "growth_cell")
            ]
        ),
        o.say("Renamed `df` to `sales` in `load` and its three dependents, in one batch."),
    ],
    limits=Limits(steps=14, seconds=90),
    requires=("pandas",),
    tags=("refactor", "graph", "pandas"),
)
