"""Eval throughput (tasks per minute) by backend, workers and server reuse, in one run.

Runs the same tasks with the same agent (the oracle by default) once per
configuration, in this order unless ``--configs`` says otherwise:

    local 1 worker cold, local 2 workers cold, local 1 worker warm,
    local 2 workers warm, Ray 2 workers cold, Ray 2 workers warm

and prints each one's tasks per minute and its ratio to the first (the
baseline, measured in the same run), the per-task server overhead inside the
suite, and whether every outcome equals the baseline's. Ray runs on a local
cluster with 2 CPUs started once before its configurations (its start is
printed apart; the actors' start is inside the wall time, as the local
workers' zygotes are).

Then the per-task overhead on its own, sequentially with nothing else
running: cold = start ``marimo edit`` on a one-cell notebook, attach a
headless session, stop it; warm = on a running directory server, place the
notebook, open a session, close it (no prefetch: there is no grading to
overlap here). Goal: warm <= 0.5 s.

The machine should be otherwise idle: the figures are wall times on shared
cores. The load average is printed before each phase so a busy machine shows.

A configuration is BACKEND:WORKERS:SERVERS with SERVERS cold, warm (two servers
per worker used in turn, the default) or warm1 (one server per worker).

Usage: python bench/eval_parallel.py [--configs local:1:cold ray:2:warm ...]
       [--task NAME ...] [--model oracle] [--repeat N] [--json FILE] [--out DIR]
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
from marimo_pair_tools.eval import RunConfig, SuiteResult, aggregate, load_tasks, run_suite
from marimo_pair_tools.eval._warm import WarmServer
from marimo_pair_tools.eval.runner import stop_server

DEFAULT_CONFIGS = [
    "local:1:cold",
    "local:2:cold",
    "local:1:warm",
    "local:2:warm",
    "ray:2:cold",
    "ray:2:warm",
]
WARM_OVERHEAD_GOAL = 0.5


def _load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def cold_overhead(repeat: int) -> list[float]:
    """Seconds to start a server, attach a session, and stop it (as a cold task does)."""
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        path = write_notebook(Path(tmp) / "one.py", ["x = 1"])
        for _ in range(repeat):
            t0 = time.perf_counter()
            server = MarimoServer(path).start()
            client = server.client()
            client.attach()
            stop_server(server)
            client.close()
            samples.append(time.perf_counter() - t0)
    return samples


def warm_overhead(repeat: int) -> tuple[list[float], float]:
    """Seconds to place a notebook, open a session and close it on a running server."""
    samples = []
    warm = WarmServer(slots=1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_notebook(Path(tmp) / "one.py", ["x = 1"])
            session = warm.open([path], path.name, timeout=60)  # starts the server
            started = warm.start_seconds
            warm.close_session(session)
            for _ in range(repeat):
                t0 = time.perf_counter()
                session = warm.open([path], path.name, timeout=60)
                warm.close_session(session)
                samples.append(time.perf_counter() - t0)
    finally:
        warm.close()
    return samples, started


def _outcomes(suite: SuiteResult) -> dict[tuple[str, int], tuple[str, float]]:
    return {(r.task, r.repeat): (r.status, r.score) for r in suite.results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--configs", nargs="+", default=DEFAULT_CONFIGS, metavar="BACKEND:N:SERVERS"
    )
    parser.add_argument("--task", dest="names", action="append", help="only these tasks")
    parser.add_argument("--model", default="oracle")
    parser.add_argument("--repeat", type=int, default=10, help="overhead samples")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--out", metavar="DIR", help="keep each run's results under DIR/<config>")
    args = parser.parse_args()

    tasks = load_tasks(names=args.names)
    figures: dict[str, object] = {"tasks": len(tasks), "model": args.model, "cpus": os.cpu_count()}
    rates: dict[str, float] = {}
    baseline: dict[tuple[str, int], tuple[str, float]] | None = None
    ray_started = False
    try:
        for spec in args.configs:
            backend, workers_text, servers = spec.split(":")
            workers = int(workers_text)
            slots = 1 if servers == "warm1" else 2  # warm1: one server per worker, no overlap
            if backend == "ray" and not ray_started:
                import ray

                t0 = time.perf_counter()
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                ray_started = True
                print(f"Ray local cluster (2 CPUs) started in {time.perf_counter() - t0:.1f} s")
                figures["ray_init"] = round(time.perf_counter() - t0, 2)
            print(f"{len(tasks)} tasks, {args.model}, {spec} ({_load()}) ...", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(args.out) / spec.replace(":", "-") if args.out else Path(tmp)
                config = RunConfig(
                    out_dir=out,
                    workers=workers,
                    backend=backend,  # type: ignore[arg-type]
                    servers=servers.removesuffix("1"),  # type: ignore[arg-type]
                    warm_slots=slots,
                    progress=False,
                )
                suite = run_suite(tasks, [args.model], config)
            (summary,) = aggregate(suite.results)
            rate = len(suite.results) / suite.seconds * 60
            rates[spec] = rate
            outcomes = _outcomes(suite)
            if baseline is None:
                baseline = outcomes
            same = "same outcomes as the baseline" if outcomes == baseline else "OUTCOMES DIFFER"
            ratio = rate / rates[args.configs[0]]
            print(
                f"  {rate:.1f} tasks/min ({ratio:.2f}x the baseline), wall {suite.seconds:.1f} s, "
                f"passed {summary.passed}/{summary.tasks}, {same}; per-task server overhead "
                f"median {summary.server_overhead_median:.2f} s, mean "
                f"{summary.server_overhead_mean:.2f} s (start {summary.server_start_median:.2f}, "
                f"attach {summary.attach_median:.2f}, stop {summary.server_stop_median:.2f})"
            )
            for result in suite.results:
                if not result.passed:
                    print(f"  not passed: {result.task} ({result.status}) {result.error or ''}")
            figures[spec] = {
                "tasks_per_minute": round(rate, 2),
                "ratio": round(ratio, 2),
                "wall": round(suite.seconds, 2),
                "passed": summary.passed,
                "same_outcomes": outcomes == baseline,
                "overhead_median": summary.server_overhead_median,
                "overhead_mean": summary.server_overhead_mean,
            }
    finally:
        if ray_started:
            import ray

            ray.shutdown()

    print(f"per-task overhead alone, {args.repeat} samples each ({_load()}) ...", flush=True)
    cold = cold_overhead(args.repeat)
    warm, warm_start = warm_overhead(args.repeat)
    cold_median, warm_median = statistics.median(cold), statistics.median(warm)
    verdict = "meets" if warm_median <= WARM_OVERHEAD_GOAL else "MISSES"
    print(
        f"  cold (start + attach + stop): {cold_median:.2f} s median; warm (place + open + "
        f"close): {warm_median:.2f} s median, {cold_median / warm_median:.1f}x less "
        f"({verdict} the {WARM_OVERHEAD_GOAL} s goal); the warm server's own start "
        f"{warm_start:.2f} s, once per worker"
    )
    figures["overhead_alone"] = {
        "cold_median": round(cold_median, 3),
        "warm_median": round(warm_median, 3),
        "warm_server_start": round(warm_start, 3),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
