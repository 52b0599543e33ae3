"""Fix a broken cell: wrong column name (pandas KeyError)."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "The `avg` cell fails with a KeyError. Fix it so that `avg_price` is the mean of the "
        "price column."
    ),
    graders=[
        g.RunsClean(),
        g.Equals("avg_price", 4.0),
        g.Unchanged("imports", "load"),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.read("avg"),
        o.execute("df.columns.tolist()"),
        o.edit("avg", old='df["Price"]', new='df["price"]'),
        o.say("The column is `price` (lower case); `avg_price` is 4.0."),
    ],
    limits=Limits(steps=10, seconds=60),
    requires=("pandas",),
    tags=("fix", "pandas"),
)
