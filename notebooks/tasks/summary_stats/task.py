"""Add an analysis: summary statistics of a list, as a dict."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Add a cell that defines `stats`: a dict with keys 'mean' (rounded to 1 decimal), "
        "'min' and 'max' of `scores`."
    ),
    graders=[
        g.Equals("stats", {"mean": 81.7, "min": 61, "max": 95}),
        g.RunsClean(),
        g.Unchanged("data"),
    ],
    oracle=[
        o.read_notebook(),
        o.create(
            "stats = {\n"
            '    "mean": round(sum(scores) / len(scores), 1),\n'
            '    "min": min(scores),\n'
            '    "max": max(scores),\n'
            "}\n"
            "stats",
            name="stats_cell",
        ),
        o.say("Added `stats` with mean, min and max of `scores`."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("analysis",),
)
