"""What the audit's runtime evidence costs per execute_code call, against the same call without it.

One real `marimo edit --headless` server per notebook size. Three ways to run the same
trivial program, interleaved call by call:

- ``plain``: ``Notebook.execute(code, fence=False)``, the baseline;
- ``evidence``: fenced, as the execute_code tool always runs it; the kernel hashes the
  notebook before and after the code and prints the refusals (the kernel-side evidence);
- ``recheck``: fenced plus a kiosk view of the server's document and the file's sha256
  before and after the code (no kernel request), as the
  eval's toolkits run it (``recheck_scratchpad=True``).

Prints medians and ratios. The notebook sizes show what hashing every cell costs.

Usage: python bench/audit_cost.py [--repeat N] [--cells 3,2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_chain_notebook

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.notebook import Notebook

CODE = "1 + 1"
WAYS = {
    "plain": {"fence": False},
    "evidence": {"fence": True},
    "recheck": {"fence": True, "recheck": True},
}


def measure(cells: int, repeat: int) -> dict[str, float]:
    """Median seconds per call for each way, on a notebook of ``cells`` cells."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_chain_notebook(Path(tmp) / "audit.py", cells)
        server = MarimoServer(path, startup_timeout=120).start()
        try:
            client = server.client()
            client.attach()
            notebook = Notebook(client, str(path), timeout=120)
            samples: dict[str, list[float]] = {name: [] for name in WAYS}
            order = list(WAYS)
            for i in range(repeat + 2):
                for name in order if i % 2 else reversed(order):
                    start = time.perf_counter()
                    result = notebook.execute(CODE, **WAYS[name])  # type: ignore[arg-type]
                    elapsed = time.perf_counter() - start
                    assert result.success, result.stderr
                    if name != "plain":
                        assert result.evidence is not None
                        assert not result.evidence.changed
                    if i >= 2:
                        samples[name].append(elapsed)
            return {name: statistics.median(values) for name, values in samples.items()}
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--cells", default="3,2000")
    args = parser.parse_args()
    print(
        f"{'cells':>6} {'plain ms':>9} {'evidence ms':>12} {'recheck ms':>11} "
        f"{'evidence/plain':>15} {'recheck/plain':>14} {'recheck/evidence':>17}"
    )
    for cells in (int(c) for c in args.cells.split(",")):
        m = measure(cells, args.repeat)
        p, e, r = m["plain"], m["evidence"], m["recheck"]
        print(
            f"{cells:6d} {p * 1000:9.1f} {e * 1000:12.1f} {r * 1000:11.1f} "
            f"{e / p:14.2f}x {r / p:13.2f}x {r / e:16.2f}x"
        )


if __name__ == "__main__":
    main()
