"""Fix a broken import that two cells depend on."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "The notebook fails at the import. Fix it so that `spread` is the population standard "
        "deviation of the list in `calc`, using the standard library."
    ),
    graders=[
        g.Equals("spread", 2.0),
        g.RunsClean(),
        g.CodeMatches(r"\bstatistic\b", present=False),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.read("imports"),
        o.read("calc"),
        o.apply(
            [
                {"op": "replace", "cell": "imports", "old": "statistic", "new": "statistics"},
                {"op": "replace", "cell": "calc", "old": "statistic.", "new": "statistics."},
            ]
        ),
        o.errors(),
        o.say("The module is `statistics`; fixed the import and its use together."),
    ],
    limits=Limits(steps=12, seconds=60),
    tags=("fix",),
)
