"""Start-up cost of `marimo-pair discover` and `exec`, against bare Python baselines.

Every command runs as a fresh process (that is what a person or an agent's shell
pays), interleaved round by round so load on the machine hits all of them alike:

- baseline ``python -c "import httpx"`` vs ``marimo-pair discover`` (an empty registry);
- ``python -c "import marimo_pair_tools.cli"`` (import only);
- the seed's ``execute-code.sh`` requests done with httpx in a fresh interpreter
  (``GET /api/sessions`` + ``POST /api/kernel/execute``) vs ``marimo-pair exec``,
  on a live server whose session already has the ``input()`` guard.

Goal: discover ≤ 2× the httpx import. Usage: python bench/cli_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_notebook

from marimo_pair_tools import MarimoServer

SEED_LIKE = """
import httpx, json, sys
base = sys.argv[1]
with httpx.Client() as http:
    key = next(iter(http.get(base + "/api/sessions").json()))
    with http.stream("POST", base + "/api/kernel/execute", json={"code": "1"},
                     headers={"Marimo-Session-Id": key}) as response:
        for _ in response.iter_text():
            pass
"""


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("marimo-pair")
    if script.exists():
        return [str(script)]
    found = shutil.which("marimo-pair")
    return [found] if found else [sys.executable, "-m", "marimo_pair_tools.cli"]


def _seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}):\n{done.stderr[-800:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    cli = _cli()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "empty").mkdir()
        path = write_notebook(root / "nb.py", ["x = 1"])
        with MarimoServer(path, registry_dir=root / "state") as server, server.client() as client:
            client.attach()
            client.execute("None")  # the kernel has the input() guard from here on
            commands = {
                "python -c 'import httpx'": [sys.executable, "-c", "import httpx"],
                "marimo-pair discover": [*cli, "discover", "--registry-dir", str(root / "empty")],
                "import marimo_pair_tools.cli": [
                    sys.executable,
                    "-c",
                    "import marimo_pair_tools.cli",
                ],
                "seed's requests (httpx)": [sys.executable, "-c", SEED_LIKE, server.url],
                "marimo-pair exec -c 1": [*cli, "exec", "--url", server.url, "-c", "1"],
            }
            samples: dict[str, list[float]] = {name: [] for name in commands}
            for argv in commands.values():  # warm the file cache
                _seconds(argv)
            for _ in range(args.repeat):
                for name, argv in commands.items():
                    samples[name].append(_seconds(argv))
    median = {name: statistics.median(values) for name, values in samples.items()}
    base = median["python -c 'import httpx'"]
    seed = median["seed's requests (httpx)"]
    print(f"median of {args.repeat} fresh processes each, interleaved")
    for name, value in median.items():
        print(f"  {name:32} {value * 1000:7.0f} ms  {value / base:5.2f}x httpx import")
    ratio = median["marimo-pair discover"] / base
    print(f"discover / httpx import = {ratio:.2f} (goal <= 2): {'met' if ratio <= 2 else 'MISSED'}")
    print(f"exec / seed's requests  = {median['marimo-pair exec -c 1'] / seed:.2f}")


if __name__ == "__main__":
    main()
