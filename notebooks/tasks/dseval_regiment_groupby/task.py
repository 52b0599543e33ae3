"""DSEval port: mean preTestScore per company (grouping)."""

from marimo_pair_tools.eval import Frame, Limits, TaskSpec
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o

TASK = TaskSpec(
    instruction=(
        "What is the mean preTestScore of each company? Add a cell that defines "
        "`mean_pre_by_company`: the mean preTestScore per company of `regiment` (a Series "
        "indexed by company, or a DataFrame with columns company and preTestScore)."
    ),
    graders=[
        g.Equals(
            "mean_pre_by_company",
            Frame(["company", "preTestScore"], [["1st", 40 / 6], ["2nd", 15.5]]),
        ),
        g.RunsClean(),
        g.Unchanged("imports", "raw", "frame"),
    ],
    oracle=[
        o.read_notebook(),
        o.create(
            'mean_pre_by_company = regiment.groupby("company")["preTestScore"].mean()\n'
            "mean_pre_by_company",
            name="answer",
        ),
        o.say("1st: 6.67, 2nd: 15.5."),
    ],
    limits=Limits(steps=10, seconds=90),
    licence="MIT; adapted from DSEval (github.com/MetaCopilot/dseval, benchmarks/exercise/03-grouping-regiment.py, (c) 2024 MetaCopilot team), itself based on guipsamora/pandas_exercises (BSD-3-Clause, (c) 2018 Guilherme Samora)",
    requires=("pandas",),
    tags=("analysis", "pandas", "port"),
)
