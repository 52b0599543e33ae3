"""Produce a labelled matplotlib line plot."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Add a cell that plots revenue by month as a line chart with matplotlib. Title it "
        "'Monthly revenue', label the x axis 'month' and the y axis 'revenue'. Keep the figure "
        "in a variable named `fig` and show it as the cell's output."
    ),
    graders=[
        g.FigureProduced("fig", title="Monthly revenue", xlabel="month", ylabel="revenue"),
        g.FigureProduced(title="Monthly revenue", weight=0.5),
        g.RunsClean(),
        g.Unchanged("imports", "data"),
    ],
    oracle=[
        o.read_notebook(),
        o.create(
            "fig, _ax = plt.subplots()\n"
            '_ax.plot(months, revenue, marker="o")\n'
            '_ax.set_title("Monthly revenue")\n'
            '_ax.set_xlabel("month")\n'
            '_ax.set_ylabel("revenue")\n'
            "fig",
            name="plot_cell",
        ),
        o.say("Added the line chart as `fig`."),
    ],
    limits=Limits(steps=10, seconds=60),
    requires=("matplotlib",),
    tags=("plot",),
)
