"""What presence costs: tool calls with and without the look before each call.

With presence on (the default), every tool call first sends one short program that
reads each cell's fingerprint (and shows the person a toast for changes); the tool's
own request follows. Measured per tool on notebooks of 10 and 200 cells, the two
toolkits interleaved call by call on one server and session.

Usage: python bench/presence.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_notebook

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.toolkit import MarimoPairToolkit


def _seconds(tool: Any, args: dict[str, Any]) -> float:
    started = time.perf_counter()
    message = tool.invoke({"type": "tool_call", "id": "b", "name": tool.name, "args": args})
    elapsed = time.perf_counter() - started
    if message.status == "error":
        raise SystemExit(f"{tool.name} failed: {message.content}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"median of {args.repeat} calls each, interleaved (ms)")
    print(f"{'cells':>5} {'tool':14} {'presence off':>13} {'on':>8} {'ratio':>6} {'added':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (10, 200):
            cells = [f"v{i} = {i}" for i in range(size)]
            path = write_notebook(Path(tmp) / f"nb{size}.py", cells)
            with MarimoServer(path, registry_dir=Path(tmp) / f"state{size}") as server:
                on = MarimoPairToolkit.from_server(server)
                off = MarimoPairToolkit.from_server(server, presence=False)
                try:
                    tools = {
                        "on": {t.name: t for t in on.get_tools()},
                        "off": {t.name: t for t in off.get_tools()},
                    }
                    first = on.session.sync().cells().cells[0].id
                    calls = [
                        ("read_cell", {"cell": first}),
                        ("get_errors", {}),
                        ("run_cell", {"cell": first}),
                    ]
                    for name, call_args in calls:
                        samples: dict[str, list[float]] = {"on": [], "off": []}
                        for _ in range(2):  # warm-up
                            for mode in samples:
                                _seconds(tools[mode][name], call_args)
                        for _ in range(args.repeat):
                            for mode, values in samples.items():
                                values.append(_seconds(tools[mode][name], call_args))
                        without = statistics.median(samples["off"]) * 1000
                        with_ = statistics.median(samples["on"]) * 1000
                        print(
                            f"{size:5} {name:14} {without:13.1f} {with_:8.1f} "
                            f"{with_ / without:5.2f}x {with_ - without:6.1f}"
                        )
                finally:
                    on.close()
                    off.close()


if __name__ == "__main__":
    main()
