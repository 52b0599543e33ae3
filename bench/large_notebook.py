"""How attach, the first calls and a timeout scale with the notebook, and whether the
client's default waits fit.

Runs a small notebook (the baseline) and a large one (10,000 cells by default) on
fresh servers in the same run, and prints each figure with its ratio to the
baseline and the default wait the client allows for it.

Usage: python bench/large_notebook.py [--cells N] [--baseline N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_chain_notebook

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.errors import ExecuteTimeoutError
from marimo_pair_tools.notebook import Notebook


@dataclass
class Figures:
    cells: int
    start: float
    attach: float
    attach_wait: float
    first_listing: float
    execute: float
    probe_wait: float
    listing: float
    page: float
    timeout_total: float
    cause: str


def measure(cells: int, folder: Path) -> Figures:
    path = write_chain_notebook(folder / f"n{cells}.py", cells)
    with MarimoServer(path, startup_timeout=300) as server, server.client() as client:
        attach_wait = client._attach_wait(str(path))
        started = time.perf_counter()
        session = client.attach()
        attach = time.perf_counter() - started
        notebook = Notebook(client)
        started = time.perf_counter()
        first = notebook.cells()
        first_listing = time.perf_counter() - started
        assert first.total == cells
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            client.execute("1")
            samples.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert len(notebook.cells().cells) == cells
        listing = time.perf_counter() - started
        started = time.perf_counter()
        notebook.cells(limit=60)
        page = time.perf_counter() - started
        started = time.perf_counter()
        try:
            client.execute("while True: pass", timeout=2)
            cause = "no timeout?"
        except ExecuteTimeoutError as exc:
            cause = str(exc.cause)
        timeout_total = time.perf_counter() - started
        return Figures(
            cells=cells,
            start=server.startup_seconds or 0.0,
            attach=attach,
            attach_wait=attach_wait,
            first_listing=first_listing,
            execute=statistics.median(samples),
            probe_wait=client._probe_wait(session),
            listing=listing,
            page=page,
            timeout_total=timeout_total,
            cause=cause,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = measure(args.baseline, Path(tmp))
        large = measure(args.cells, Path(tmp))
    rows = [
        ("server start to healthy", "start", None),
        ("attach (open the session)", "attach", "attach_wait"),
        ("first call: full listing + setup", "first_listing", None),
        ("trivial execute (median of 5)", "execute", "probe_wait"),
        ("full cell listing", "listing", None),
        ("one page of 60 cells", "page", None),
        ("timeout 2 s + diagnosis", "timeout_total", None),
    ]
    print(f"{'':36} {base.cells:>8} cells {large.cells:>8} cells   ratio   default wait")
    for label, name, allowance in rows:
        small, big = getattr(base, name), getattr(large, name)
        wait = f"{getattr(large, allowance):8.1f} s" if allowance else ""
        print(f"{label:36} {small:12.2f} s {big:12.2f} s {big / small:7.1f}x   {wait}")
    print(f"cause after the timeout: {base.cause} / {large.cause}")


if __name__ == "__main__":
    main()
