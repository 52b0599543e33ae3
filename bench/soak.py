"""Soak: many sequential executes through one client; memory, sockets, lost edits.

Every call is a read-modify-write of one cell through marimo's code mode: it
appends the call's number to ``items = [...]``. A lost or reordered edit shows
up at the end as a gap in the list, in the kernel and on disk.

Prints, every ``--every`` calls: latency, client RSS, tracemalloc (current and
peak), open file descriptors and open sockets of this process.

Usage: python bench/soak.py [--n 1000] [--every 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_notebook

from marimo_pair_tools import MarimoServer

READ_CELLS = """
import json, marimo._code_mode as cm
async with cm.get_context() as ctx:
    print(json.dumps([[c.id, c.code] for c in ctx.cells]))
"""

APPEND = """
import marimo._code_mode as cm
async with cm.get_context() as ctx:
    _code = ctx.cells[{cell!r}].code
    assert _code.startswith("items = [") and _code.endswith("]"), _code
    _body = _code[len("items = ["):-1]
    ctx.edit_cell({cell!r}, "items = [" + (_body + ", " if _body else "") + {value!r} + "]")
"""


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_notebook(Path(tmp) / "soak.py", ["items = []"])
        with MarimoServer(path) as server, server.client() as client:
            client.attach()
            cell = json.loads(client.execute(READ_CELLS).stdout)[0][0]
            client.execute(APPEND.format(cell=cell, value="0"))  # warm up (input guard etc.)
            tracemalloc.start()
            base_traced = tracemalloc.get_traced_memory()[0]
            base_rss, (base_fds, base_socks) = rss_mb(), descriptors()
            print(
                f"start: rss {base_rss:.1f} MB, fds {base_fds}, sockets {base_socks}  "
                f"(server {server.url})"
            )
            print(
                f"{'calls':>6} {'elapsed':>8} {'median':>8} {'p95':>8} {'rss':>9} "
                f"{'traced':>9} {'peak':>9} {'fds':>4} {'socks':>5}"
            )
            latencies: list[float] = []
            started = time.perf_counter()
            for i in range(1, args.n):
                t0 = time.perf_counter()
                result = client.execute(APPEND.format(cell=cell, value=str(i)))
                latencies.append(time.perf_counter() - t0)
                if not result.success:
                    raise SystemExit(f"call {i} failed:\n{result.stderr}")
                if (i + 1) % args.every == 0 or i == args.n - 1:
                    window = sorted(latencies[-args.every :])
                    traced, peak = tracemalloc.get_traced_memory()
                    fds, socks = descriptors()
                    print(
                        f"{i + 1:>6} {time.perf_counter() - started:>7.1f}s "
                        f"{statistics.median(window) * 1000:>6.1f}ms "
                        f"{window[int(len(window) * 0.95) - 1] * 1000:>6.1f}ms "
                        f"{rss_mb():>7.1f}MB {(traced - base_traced) / 1e6:>+8.2f}M "
                        f"{peak / 1e6:>8.2f}M {fds:>4} {socks:>5}"
                    )
            traced, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            final = dict(json.loads(client.execute(READ_CELLS).stdout))[cell]
            expected = "items = [" + ", ".join(str(i) for i in range(args.n)) + "]"
            on_disk = path.read_text(encoding="utf-8")
            fds, socks = descriptors()
    lost_kernel = final != expected
    lost_disk = expected not in on_disk
    print(
        f"\n{args.n} calls in {sum(latencies):.1f} s "
        f"(median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.0f} ms)"
    )
    print(
        f"client growth: rss {rss_mb() - base_rss:+.1f} MB, "
        f"tracemalloc {(traced - base_traced) / 1e6:+.2f} MB, "
        f"fds {fds - base_fds:+d}, sockets {socks - base_socks:+d}"
    )
    print(
        f"lost edits: kernel {'YES' if lost_kernel else 'none'}, "
        f"disk {'YES' if lost_disk else 'none'} "
        f"({len(final)} chars of cell code)"
    )
    if lost_kernel or lost_disk:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
