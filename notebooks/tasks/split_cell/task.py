"""Split one cell into three, keeping the dataflow."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Split the `pipeline` cell into three cells: one defining `raw`, one defining "
        "`cleaned` and one defining `total`. The values must stay the same."
    ),
    graders=[
        g.DependsOn("cleaned", "raw"),
        g.DependsOn("total", "cleaned"),
        g.Equals("total", 24),
        g.Equals("cleaned", [4, 7, 3, 10]),
        g.Equals("summary_text", "4 values, total 24"),
        g.CellCount(4, 4),
        g.Unchanged("report"),
        g.RunsClean(),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.read("pipeline"),
        o.apply(
            [
                {"op": "edit", "cell": "pipeline", "code": "raw = [4, None, 7, 3, None, 10]"},
                {
                    "op": "create",
                    "code": "cleaned = [x for x in raw if x is not None]",
                    "after": "pipeline",
                    "name": "clean_step",
                },
                {
                    "op": "create",
                    "code": "total = sum(cleaned)",
                    "after": "@1",
                    "name": "total_step",
                },
            ]
        ),
        o.say("Split `pipeline` into `pipeline` (raw), `clean_step` and `total_step`."),
    ],
    limits=Limits(steps=10, seconds=60),
    tags=("refactor", "graph"),
)
