"""Produce a bar chart of counts per category (pandas + matplotlib)."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Add a bar chart of the number of orders per category (matplotlib; pandas plotting is "
        "fine). Keep the Axes in a variable named `ax` and title it 'Orders per category'."
    ),
    graders=[
        g.FigureProduced("ax", title="Orders per category", min_artists=3),
        g.RunsClean(),
        g.Unchanged("imports", "load"),
    ],
    oracle=[
        o.read_notebook(),
        o.create(
            'ax = orders["category"].value_counts().sort_index().plot.bar(\n'
            '    title="Orders per category"\n'
            ")\n"
            "ax",
            name="chart_cell",
        ),
        o.say("Added the bar chart (`ax`): books 3, games 2, music 1."),
    ],
    limits=Limits(steps=10, seconds=60),
    requires=("pandas", "matplotlib"),
    tags=("plot", "pandas"),
)
