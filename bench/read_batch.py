"""Reading N cells: N `read_cell` calls vs one `read_cell(cells=[...])`, same run, real server.

Both through the toolkit's tools with the pairing policy on and presence on (the
defaults: each call also asks what the person changed), so the numbers are what
an agent pays. Each way reads every cell's full code into the ledger.

Usage: python bench/read_batch.py [--cells 31] [--repeat 5]
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

from marimo_pair_tools import MarimoPairToolkit, MarimoServer


def _call(tool: object, **args: object) -> None:
    message = tool.invoke({"type": "tool_call", "name": "read_cell", "args": args, "id": "1"})  # type: ignore[attr-defined]
    assert message.status != "error", message.content


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=31)
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cells = [f"v{i} = {i}\nprint(v{i} * 2)" for i in range(opts.cells)]
        path = write_notebook(Path(tmp) / "nb.py", cells)
        with MarimoServer(path, registry_dir=Path(tmp) / "state") as server:
            toolkit = MarimoPairToolkit.from_server(server)
            tools = {t.name: t for t in toolkit.get_tools()}
            listing = tools["read_notebook"].invoke(
                {"type": "tool_call", "name": "read_notebook", "args": {}, "id": "0"}
            )
            ids = [c["id"] for c in listing.artifact["cells"]]
            one_by_one, batched = [], []
            for _ in range(opts.repeat):  # interleaved, so both see the same machine load
                start = time.perf_counter()
                for cell in ids:
                    _call(tools["read_cell"], cell=cell)
                one_by_one.append(time.perf_counter() - start)
                start = time.perf_counter()
                _call(tools["read_cell"], cells=ids)
                batched.append(time.perf_counter() - start)
            toolkit.close()
    single, batch = statistics.median(one_by_one), statistics.median(batched)
    print(f"{opts.cells} cells, median of {opts.repeat}:")
    print(f"  {opts.cells} read_cell calls:   {single:.3f} s")
    print(f"  1 read_cell(cells=...): {batch:.3f} s")
    print(f"  batched / one by one:   {batch / single:.3f}  ({single / batch:.1f}x faster)")


if __name__ == "__main__":
    main()
