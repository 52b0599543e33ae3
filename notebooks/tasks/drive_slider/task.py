"""Drive a mo.ui slider instead of editing code."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Set the multiplier slider to 7, as if you had moved it in the UI. Do not change any code."
    ),
    graders=[
        g.Equals("result", 70, live=True),
        g.Equals("slider", 7, live=True),
        g.NotebookUnchanged(),
        g.UsedTool("set_ui_value"),
    ],
    oracle=[
        o.read_notebook(),
        o.set_ui("slider", 7),
        o.say("The slider is at 7; `result` is now 70."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("ui",),
)
