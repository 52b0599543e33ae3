"""Drive a mo.ui dropdown to show another region's figure."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o


def _retry_if_not_taken(messages):
    """A dropdown's value may be its list of selected options: retry that way if needed."""
    if o.last_artifact(messages, "set_ui_value").get("took"):
        return o.variables("selected_total")
    return o.set_ui("region", ["APAC"])


TASK = TaskSpec(
    instruction=("Show the APAC figure: choose APAC in the region dropdown. Do not edit any cell."),
    graders=[
        g.Equals("selected_total", 143, live=True),
        g.NotebookUnchanged(),
        g.UsedTool("set_ui_value"),
    ],
    oracle=[
        o.read_notebook(),
        o.set_ui("region", "APAC"),
        _retry_if_not_taken,
        o.say("Selected APAC: `selected_total` is 143."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("ui",),
)
