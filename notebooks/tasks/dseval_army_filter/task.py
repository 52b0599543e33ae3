"""DSEval port: filter rows on a condition (filtering/sorting)."""

from marimo_pair_tools.eval import Frame, Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

_COLUMNS = [
    "origin",
    "regiment",
    "company",
    "deaths",
    "battles",
    "size",
    "veterans",
    "readiness",
    "armored",
    "deserters",
]
_ROWS = [
    ["Arizona", "Nighthawks", "1st", 523, 5, 1045, 1, 1, 1, 4],
    ["Texas", "Nighthawks", "2nd", 25, 2, 1099, 62, 3, 1, 31],
    ["Florida", "Nighthawks", "2nd", 616, 2, 1400, 26, 3, 1, 2],
    ["Maine", "Dragoons", "1st", 43, 4, 1592, 73, 2, 0, 3],
    ["Alaska", "Dragoons", "2nd", 523, 8, 987, 949, 2, 0, 24],
    ["Louisana", "Scouts", "2nd", 37, 8, 1099, 63, 2, 1, 2],
    ["Georgia", "Scouts", "2nd", 35, 9, 1523, 345, 3, 1, 3],
]

TASK = TaskSpec(
    instruction=(
        "Select the rows of `army` where deaths is greater than 500 or less than 50, keep all "
        "columns, and store them in `big_or_small_losses`."
    ),
    graders=[
        g.Equals("big_or_small_losses", Frame(_COLUMNS, _ROWS)),
        g.RunsClean(),
        g.Unchanged("imports", "raw", "frame"),
    ],
    oracle=[
        o.read_notebook(),
        o.create(
            'big_or_small_losses = army[(army["deaths"] > 500) | (army["deaths"] < 50)]\n'
            "big_or_small_losses",
            name="answer",
        ),
        o.say("Seven regiments lost more than 500 or fewer than 50."),
    ],
    limits=Limits(steps=10, seconds=90),
    licence="MIT; adapted from DSEval (github.com/MetaCopilot/dseval, benchmarks/exercise/02-filtering-sorting-fictional-army.py, (c) 2024 MetaCopilot team), itself based on guipsamora/pandas_exercises (BSD-3-Clause, (c) 2018 Guilherme Samora)",
    requires=("pandas",),
    tags=("analysis", "pandas", "port"),
)
