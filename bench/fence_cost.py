"""What the scratchpad fence costs per execute_code call, against the same call without it.

One real `marimo edit --headless` server; `Notebook.execute(code)` (fenced, as the
execute_code tool runs it) and `Notebook.execute(code, fence=False)` interleaved call
by call on a trivial program and on a small pandas one. Prints medians and the ratio.

Usage: python bench/fence_cost.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_notebook

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.notebook import Notebook

PROGRAMS = {
    "trivial": "x + 1",
    "pandas": "import pandas as pd\npd.DataFrame({'a': range(100)})['a'].sum()",
    "await": "import asyncio\nawait asyncio.sleep(0)\nx",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory() as tmp:
        path = write_notebook(Path(tmp) / "fence.py", ["x = 1"])
        server = MarimoServer(path).start()
        try:
            client = server.client()
            client.attach()
            notebook = Notebook(client, str(path))
            notebook.apply([{"op": "run", "cell": c.id} for c in notebook.cells().cells])
            print(f"{'program':10} {'fenced ms':>10} {'plain ms':>9} {'ratio':>6}")
            for name, code in PROGRAMS.items():
                fenced: list[float] = []
                plain: list[float] = []
                for i in range(repeat + 2):
                    for fence, out in ((True, fenced), (False, plain))[:: 1 if i % 2 else -1]:
                        start = time.perf_counter()
                        result = notebook.execute(code, fence=fence)
                        if i >= 2:
                            out.append(time.perf_counter() - start)
                        assert result.success, result.stderr
                f, p = statistics.median(fenced), statistics.median(plain)
                print(f"{name:10} {f * 1000:10.1f} {p * 1000:9.1f} {f / p:5.2f}x")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
