"""Soak: many sequential tool calls on one notebook; client memory, connections, lost edits.

One `MarimoPairToolkit` (pairing policy on) on one notebook of a `marimo edit
--headless` server started with an isolated state dir (its registry entry goes
to a temporary directory, never the user's). Every call is a real
``tool.invoke(ToolCall)``, in a fixed cycle of ten::

    read_cell(items) -> edit_cell(items, old="]", new=", N]", expected_hash=<read>)
    read_notebook() -> read_cell(items) -> edit_cell(items, code=<read + N>, expected_hash=<read>)
    get_errors() -> run_cell(total) -> get_variables([items, total])
    execute_code("print(len(items), items[-1])") -> inspect_graph(total)

where N is the edit's call number (1-based), so the cell ``items = [0, ...]``
records every edit in order; ``total = len(items)`` depends on it. Along the way
get_variables and execute_code check the kernel's list; at the end execute_code
and read_cell check the kernel and the saved file is parsed: a lost or reordered
edit shows up as a difference from the expected list.

Prints, every ``--every`` calls: median/p95/max latency of those calls, client
RSS, tracemalloc current (after ``gc.collect()``) and peak, open file descriptors
and open sockets of this process. At the end, the growth from the first
checkpoint after warm-up (``--warmup`` calls) to the last.

Exits non-zero if a tool call failed, an edit was lost (kernel or disk), the
open sockets or file descriptors grew, tracemalloc current grew more than
``--max-traced-kb``, or the run took longer than ``--max-seconds``.

Usage: python bench/soak.py [--n 1000] [--every 100] [--warmup 100]
"""

from __future__ import annotations

import argparse
import array
import ast
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_notebook

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.discovery import default_registry_dir
from marimo_pair_tools.toolkit import MarimoPairToolkit

CYCLE = 10
"""Calls per cycle (see the module docstring); two of them are edits."""

TRACED_KB_BOUND = 256
"""Default bound on tracemalloc growth after warm-up. Nothing in the client should
grow with the number of calls (the ledger holds one hash per cell); the script's
own expected list grows by ~40 B per edit (~7 KB for 1000 calls). 256 KB over 900
calls is under 0.3 KB a call: one leaked small object per call would exceed it."""


# ----------------------------------------------------------------------------- process figures


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descriptors() -> tuple[int, int]:
    """(open file descriptors, of which sockets) for this process."""
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return len(fds), sockets


@dataclass
class Checkpoint:
    calls: int
    elapsed: float
    rss_mb: float
    traced: int
    peak: int
    fds: int
    sockets: int

    @classmethod
    def take(cls, calls: int, started: float) -> Checkpoint:
        gc.collect()
        traced, peak = tracemalloc.get_traced_memory()
        fds, sockets = descriptors()
        return cls(calls, time.perf_counter() - started, rss_mb(), traced, peak, fds, sockets)


# ----------------------------------------------------------------------------- the soak


class Soak:
    """The toolkit's tools, the cycle of calls, and what the notebook must contain."""

    def __init__(self, toolkit: MarimoPairToolkit) -> None:
        self.tools = {tool.name: tool for tool in toolkit.get_tools()}
        self.expected = [0]
        self.failures: list[str] = []
        self.mismatches: list[str] = []
        self.hash = ""
        self.code = ""
        page = self.call(0, "read_notebook", {})
        ids = {name: cell["id"] for cell in page["cells"] for name in cell["defs"]}
        self.items, self.total = ids["items"], ids["total"]

    def call(self, n: int, name: str, args: dict[str, Any]) -> Any:
        """Invoke one tool as an agent would; return its artifact (None if it failed)."""
        message = self.tools[name].invoke(
            {"type": "tool_call", "id": f"soak-{n}", "name": name, "args": args}
        )
        if getattr(message, "status", "success") == "error":
            self.failures.append(f"call {n} {name}({args}): {message.content}")
            return None
        return message.artifact

    def read(self, n: int) -> None:
        cell = self.call(n, "read_cell", {"cell": self.items})
        if cell is not None:
            self.hash, self.code = cell["code_hash"], cell["code"]

    def edit(self, n: int, *, full: bool) -> None:
        args: dict[str, Any] = {"cell": self.items, "expected_hash": self.hash}
        if full:
            assert self.code.endswith("]"), self.code
            args["code"] = f"{self.code[:-1]}, {n}]"
        else:
            args |= {"old": "]", "new": f", {n}]"}
        result = self.call(n, "edit_cell", args)
        if result is None:
            return
        change = result["changes"][0]
        if change["action"] not in {"edited", "replaced"} or change.get("problem"):
            self.failures.append(f"call {n} edit_cell: {change}")
            return
        self.expected.append(n)

    def check_variables(self, n: int) -> None:
        report = self.call(n, "get_variables", {"names": ["items", "total"]})
        if report is None:
            return
        total = {v["name"]: v["repr"] for v in report["variables"]}.get("total")
        if total != str(len(self.expected)):
            self.mismatches.append(f"call {n}: kernel total={total}, expected {len(self.expected)}")

    def check_execute(self, n: int) -> None:
        result = self.call(n, "execute_code", {"code": "print(len(items), items[-1])"})
        if result is None:
            return
        want = f"{len(self.expected)} {self.expected[-1]}"
        if result["stdout"].strip() != want:
            self.mismatches.append(f"call {n}: kernel printed {result['stdout']!r}, want {want!r}")

    def step(self, n: int) -> None:
        """Call number ``n`` (1-based) of the cycle."""
        steps: list[Callable[[], None]] = [
            lambda: self.read(n),
            lambda: self.edit(n, full=False),
            lambda: self.call(n, "read_notebook", {}),
            lambda: self.read(n),
            lambda: self.edit(n, full=True),
            lambda: self.call(n, "get_errors", {}),
            lambda: self.call(n, "run_cell", {"cell": self.total}),
            lambda: self.check_variables(n),
            lambda: self.check_execute(n),
            lambda: self.call(n, "inspect_graph", {"cell": self.total}),
        ]
        steps[(n - 1) % CYCLE]()


def items_on_disk(path: Path) -> list[int] | None:
    """The list assigned to ``items`` in the saved notebook (parsed, not string-matched)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "items"
        ):
            return list(ast.literal_eval(node.value))
    return None


def print_checkpoint(c: Checkpoint, window: array.array[float]) -> None:
    w = sorted(window)
    print(
        f"{c.calls:>6} {c.elapsed:>7.1f}s {statistics.median(w) * 1000:>6.1f}ms "
        f"{w[max(0, int(len(w) * 0.95) - 1)] * 1000:>6.1f}ms {w[-1] * 1000:>6.0f}ms "
        f"{c.rss_mb:>7.1f}MB {c.traced / 1024:>8.0f}K {c.peak / 1024:>8.0f}K "
        f"{c.fds:>4} {c.sockets:>5}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000, help="tool calls")
    parser.add_argument("--every", type=int, default=100, help="calls between checkpoints")
    parser.add_argument(
        "--warmup", type=int, default=100, help="calls before the baseline checkpoint"
    )
    parser.add_argument("--max-traced-kb", type=float, default=TRACED_KB_BOUND)
    parser.add_argument("--max-seconds", type=float, default=900, help="stop and fail after")
    parser.add_argument("--timeout", type=float, default=60, help="per tool call, seconds")
    args = parser.parse_args()
    if args.warmup >= args.n:
        parser.error("--warmup must be below --n")

    started_all = time.perf_counter()
    user_registry = default_registry_dir()
    user_entries_before = set(user_registry.glob("*.json")) if user_registry.is_dir() else set()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="marimo-soak-") as tmp_name:
        tmp = Path(tmp_name)
        path = write_notebook(tmp / "soak.py", ["items = [0]", "total = len(items)"])
        server = MarimoServer(path, registry_dir=tmp / "state", isolate=True)
        with server:
            assert server.registry_dir is not None
            entry = server.registry_dir / f"{server.host}_{server.port}.json"
            print(
                f"server {server.url} (marimo pid {server.pid}); registry entry in the "
                f"isolated dir: {'yes' if entry.exists() else 'NO'} ({server.registry_dir})"
            )
            user_entries = set(user_registry.glob("*.json")) if user_registry.is_dir() else set()
            if any(p.name == entry.name for p in user_entries - user_entries_before):
                problems.append(f"the server registered in the user's registry {user_registry}")
            tracemalloc.start()
            toolkit = MarimoPairToolkit.from_server(server, timeout=args.timeout)
            try:
                soak = Soak(toolkit)
                start = Checkpoint.take(0, time.perf_counter())
                print(
                    f"start (toolkit attached, before the calls): rss {start.rss_mb:.1f} MB, "
                    f"traced {start.traced / 1024:.0f} KB, fds {start.fds}, "
                    f"sockets {start.sockets}"
                )
                print(
                    f"{'calls':>6} {'elapsed':>8} {'median':>8} {'p95':>8} {'max':>8} "
                    f"{'rss':>9} {'traced':>9} {'peak':>9} {'fds':>4} {'socks':>5}"
                )
                # Preallocated raw doubles: the script's own bookkeeping must not grow the
                # traced memory it measures (a list would add a float object per call).
                latencies = array.array("d", bytes(8 * args.n))
                checkpoints: list[Checkpoint] = []
                started = time.perf_counter()
                for n in range(1, args.n + 1):
                    t0 = time.perf_counter()
                    soak.step(n)
                    latencies[n - 1] = time.perf_counter() - t0
                    if n % args.every == 0 or n == args.n:
                        checkpoints.append(Checkpoint.take(n, started))
                        print_checkpoint(checkpoints[-1], latencies[max(0, n - args.every) : n])
                    if time.perf_counter() - started > args.max_seconds:
                        problems.append(f"stopped after {n} calls: over --max-seconds")
                        if not checkpoints or checkpoints[-1].calls != n:
                            checkpoints.append(Checkpoint.take(n, started))
                        break
                calls = n
                latencies = latencies[:calls]

                # The end state, through the tools: kernel variable, cell code, then the file.
                final = soak.call(-1, "execute_code", {"code": "print(items)"})
                kernel = ast.literal_eval(final["stdout"].strip()) if final else None
                cell = soak.call(-2, "read_cell", {"cell": soak.items})
                cell_list = ast.literal_eval(cell["code"].split("=", 1)[1]) if cell else None
                deadline = time.monotonic() + 10  # the save may trail the kernel's answer
                disk = items_on_disk(path)
                while disk != soak.expected and time.monotonic() < deadline:
                    time.sleep(0.1)
                    disk = items_on_disk(path)
                peak_end = tracemalloc.get_traced_memory()[1]
            finally:
                toolkit.close()
            gc.collect()
            closed_fds, closed_sockets = descriptors()
        tracemalloc.stop()

    base = next((c for c in checkpoints if c.calls >= args.warmup), checkpoints[0])
    last = checkpoints[-1]
    growth = {
        "rss_mb": last.rss_mb - base.rss_mb,
        "traced_kb": (last.traced - base.traced) / 1024,
        "sockets": last.sockets - base.sockets,
        "fds": last.fds - base.fds,
    }
    edits = len(soak.expected) - 1
    print(
        f"\n{calls} tool calls ({edits} edits) in {sum(latencies):.1f} s: median "
        f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"whole run {time.perf_counter() - started_all:.1f} s"
    )
    print(
        f"growth from call {base.calls} to call {last.calls}: rss {growth['rss_mb']:+.1f} MB, "
        f"tracemalloc {growth['traced_kb']:+.1f} KB (bound {args.max_traced_kb:g} KB), "
        f"sockets {growth['sockets']:+d}, fds {growth['fds']:+d}; "
        f"tracemalloc peak {peak_end / 1024:.0f} KB"
    )
    print(
        f"after toolkit.close(): fds {closed_fds} (start {start.fds}), "
        f"sockets {closed_sockets} (start {start.sockets})"
    )

    def verdict(found: list[int] | None) -> str:
        if found == soak.expected:
            return f"none ({len(found)} items)"
        if found is None:
            return "YES (not found)"
        missing = sorted(set(soak.expected) - set(found))
        return (
            f"YES ({len(found)} items, expected {len(soak.expected)}; missing {missing[:10]}"
            f"{', out of order' if not missing else ''})"
        )

    lost = {"kernel": verdict(kernel), "cell code": verdict(cell_list), "disk": verdict(disk)}
    print("lost edits: " + ", ".join(f"{where} {what}" for where, what in lost.items()))
    print(f"tool failures: {len(soak.failures)}; mid-run kernel mismatches: {len(soak.mismatches)}")
    for line in (soak.failures + soak.mismatches)[:10]:
        print("  " + line[:300])

    problems += [f"lost edit ({where})" for where, what in lost.items() if what.startswith("YES")]
    if soak.failures:
        problems.append(f"{len(soak.failures)} tool calls failed")
    if soak.mismatches:
        problems.append(f"{len(soak.mismatches)} mid-run kernel mismatches")
    if growth["sockets"] > 0:
        problems.append(f"open sockets grew by {growth['sockets']}")
    if growth["fds"] > 0:
        problems.append(f"open fds grew by {growth['fds']}")
    if growth["traced_kb"] > args.max_traced_kb:
        problems.append(
            f"tracemalloc grew {growth['traced_kb']:.0f} KB > {args.max_traced_kb:g} KB"
        )
    print("FAIL: " + "; ".join(problems) if problems else "PASS")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
