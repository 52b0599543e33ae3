"""Eval suite wall time with 1 vs 2 workers, and the per-task server overhead.

Runs the same tasks with the same agent (the oracle by default) once per
worker count, in that order, and reports wall times and the speedup (goal:
2 workers >= 1.6x faster than 1). Then measures the fresh-server overhead on
its own: start ``marimo edit`` on a one-cell notebook, attach a headless
session, stop it (goal <= 2.5 s), sequentially with nothing else running.

The machine should be otherwise idle: the figures are wall times on shared
cores. The load average is printed before each phase so a busy machine shows.

Usage: python bench/eval_parallel.py [--workers 1 2] [--task NAME ...] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_notebook

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.eval import RunConfig, aggregate, load_tasks, run_suite
from marimo_pair_tools.eval.runner import stop_server

SPEEDUP_GOAL = 1.6
OVERHEAD_GOAL = 2.5


def _load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def server_overhead(repeat: int) -> dict[str, float]:
    """Median seconds to start a server, attach a session, and stop it (as the runner does)."""
    starts, attaches, stops = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = write_notebook(Path(tmp) / "one.py", ["x = 1"])
        for _ in range(repeat):
            t0 = time.perf_counter()
            server = MarimoServer(path).start()
            t1 = time.perf_counter()
            client = server.client()
            client.attach()
            t2 = time.perf_counter()
            stop_server(server)
            client.close()
            t3 = time.perf_counter()
            starts.append(t1 - t0)
            attaches.append(t2 - t1)
            stops.append(t3 - t2)
    totals = [a + b + c for a, b, c in zip(starts, attaches, stops, strict=True)]
    return {
        "start": statistics.median(starts),
        "attach": statistics.median(attaches),
        "stop": statistics.median(stops),
        "total": statistics.median(totals),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--task", dest="names", action="append", help="only these tasks")
    parser.add_argument("--model", default="oracle")
    parser.add_argument("--repeat", type=int, default=5, help="server overhead samples")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--out", metavar="DIR", help="keep each run's results under DIR/<n>w")
    args = parser.parse_args()

    tasks = load_tasks(names=args.names)
    figures: dict[str, object] = {"tasks": len(tasks), "model": args.model, "cpus": os.cpu_count()}
    walls: dict[int, float] = {}
    for workers in args.workers:
        print(f"{len(tasks)} tasks, {args.model}, {workers} worker(s) ({_load()}) ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out) / f"{workers}w" if args.out else Path(tmp)
            config = RunConfig(out_dir=out, workers=workers, progress=False)
            suite = run_suite(tasks, [args.model], config)
        (summary,) = aggregate(suite.results)
        walls[workers] = suite.seconds
        print(
            f"  wall {suite.seconds:.1f} s, passed {summary.passed}/{summary.tasks}, "
            f"per-task server overhead median {summary.server_overhead_median:.2f} s "
            f"(start {summary.server_start_median:.2f}, attach {summary.attach_median:.2f}, "
            f"stop {summary.server_stop_median:.2f}), grade {summary.grade_median:.2f} s"
        )
        for result in suite.results:
            if not result.passed:
                print(f"  not passed: {result.task} ({result.status}) {result.error or ''}")
        figures[f"wall_{workers}"] = round(suite.seconds, 2)
        figures[f"overhead_in_suite_{workers}"] = summary.server_overhead_median
    if 1 in walls and 2 in walls:
        ratio = walls[1] / walls[2]
        verdict = "meets" if ratio >= SPEEDUP_GOAL else "MISSES"
        print(f"speedup 1 -> 2 workers: {ratio:.2f}x ({verdict} the {SPEEDUP_GOAL}x goal)")
        figures["speedup"] = round(ratio, 2)

    print(f"server overhead alone, {args.repeat} samples ({_load()}) ...", flush=True)
    alone = server_overhead(args.repeat)
    verdict = "meets" if alone["total"] <= OVERHEAD_GOAL else "MISSES"
    print(
        f"  start {alone['start']:.2f} s + attach {alone['attach']:.2f} s + stop "
        f"{alone['stop']:.2f} s = {alone['total']:.2f} s median ({verdict} the "
        f"{OVERHEAD_GOAL} s goal)"
    )
    figures["overhead_alone"] = {k: round(v, 3) for k, v in alone.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
