"""Add an analysis: revenue per region from a shipped CSV (pandas)."""

from marimo_pair_tools.eval import Frame, Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Add a cell that defines `revenue_by_region`: a DataFrame with columns `region` and "
        "`revenue` (the sum of units x price per region), sorted by revenue from highest to "
        "lowest. Leave the existing cells as they are."
    ),
    graders=[
        g.Equals(
            "revenue_by_region",
            Frame(["region", "revenue"], [["EU", 82.5], ["APAC", 80.0], ["US", 75.0]]),
        ),
        g.RunsClean(),
        g.Unchanged("imports", "load", "preview"),
    ],
    oracle=[
        o.read_notebook(),
        o.execute("df.columns.tolist()"),
        o.create(
            '_rev = df.assign(revenue=df["units"] * df["price"])\n'
            "revenue_by_region = (\n"
            '    _rev.groupby("region", as_index=False)["revenue"]\n'
            "    .sum()\n"
            '    .sort_values("revenue", ascending=False)\n'
            "    .reset_index(drop=True)\n"
            ")\n"
            "revenue_by_region",
            after="load",
            name="revenue_cell",
        ),
        o.say("Added `revenue_by_region` (EU 82.5, APAC 80, US 75)."),
    ],
    limits=Limits(steps=12, seconds=90),
    requires=("pandas",),
    tags=("analysis", "pandas"),
)
