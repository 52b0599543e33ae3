"""Resolve a name defined in two cells, keeping one owner."""

from marimo_pair_tools.eval import Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "The notebook will not run: `threshold` is defined in two cells. Keep the `config` cell "
        "as it is; in `flags_cell`, rename its threshold to `ratio_threshold` (and use it there)."
    ),
    graders=[
        g.DefinedOnce("threshold"),
        g.DefinedOnce("ratio_threshold"),
        g.Equals("flags", [False, True, False, True]),
        g.Equals("n_large", 2),
        g.RunsClean(),
        g.Unchanged("config", "count_cell"),
        g.ReadBeforeEdit(),
    ],
    oracle=[
        o.read_notebook(),
        o.inspect(),
        o.read("flags_cell"),
        o.edit("flags_cell", old="threshold", new="ratio_threshold", replace_all=True),
        o.errors(),
        o.say("`flags_cell` now uses `ratio_threshold`; `threshold` is owned by `config` only."),
    ],
    limits=Limits(steps=12, seconds=60),
    tags=("fix", "graph"),
)
