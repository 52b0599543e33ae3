"""Move scattered imports into one imports cell at the top."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "Move all imports into one imports cell at the top of the notebook; the other cells "
        "should only do their computations."
    ),
    graders=[
        g.ImportsInSetupCell("math", "statistics", "json"),
        g.Equals("area", 12.566),
        g.Equals("median_value", 4),
        g.Equals("payload", '{"area": 12.566, "median": 4}'),
        g.RunsClean(),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.read("area_cell"),
        o.read("stats_cell"),
        o.read("payload_cell"),
        o.apply(
            [
                {
                    "op": "create",
                    "code": "import json\nimport math\nimport statistics",
                    "before": "area_cell",
                    "name": "imports",
                },
                {"op": "replace", "cell": "area_cell", "old": "import math\n\n", "new": ""},
                {"op": "replace", "cell": "stats_cell", "old": "import statistics\n\n", "new": ""},
                {"op": "replace", "cell": "payload_cell", "old": "import json\n\n", "new": ""},
            ]
        ),
        o.say("One `imports` cell at the top now holds json, math and statistics."),
    ],
    limits=Limits(steps=12, seconds=60),
    tags=("refactor",),
)
