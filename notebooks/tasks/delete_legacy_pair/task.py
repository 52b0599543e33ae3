"""Delete a cell and its one dependent, in a safe order."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Remove the legacy computation: delete the `legacy` cell and the `legacy_report` cell "
        "that depends on it. Keep everything else."
    ),
    graders=[
        g.Absent("legacy_total"),
        g.Absent("legacy_text"),
        g.CellCount(2, 2),
        g.Unchanged("data", "current"),
        g.RunsClean(),
        g.InspectBeforeDelete(),
    ],
    oracle=[
        o.read_notebook(),
        o.inspect("legacy_report"),
        o.delete("legacy_report"),
        o.inspect("legacy"),
        o.delete("legacy"),
        o.say("Deleted `legacy_report`, then `legacy` (which then had no dependents)."),
    ],
    limits=Limits(steps=12, seconds=60),
    tags=("delete", "safety"),
)
