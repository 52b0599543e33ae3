"""Median latency of `client.execute("1")` vs a bare httpx POST vs a process per call.

The process-per-call baseline is the seed's way (a bash script that starts curl
for each call); here a fresh Python process doing one httpx request stands in
for it. All three run against the same real server in the same run.

Usage: python bench/execute_latency.py [--repeat N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_seconds, write_notebook

from marimo_pair_tools import MarimoServer

CHILD = """
import sys, httpx
r = httpx.post(sys.argv[1] + "/api/kernel/execute", json={"code": "1"},
               headers={"Marimo-Stable-Session-Id": sys.argv[2]}, timeout=30)
assert "event: done" in r.text
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_notebook(Path(tmp) / "bench.py", ["x = 1"])
        with MarimoServer(path) as server, server.client() as client:
            session = client.attach()
            assert session.stable_id
            bare = httpx.Client(timeout=30)
            url = server.url + "/api/kernel/execute"
            headers = {"Marimo-Stable-Session-Id": session.stable_id}

            def bare_post() -> None:
                with bare.stream("POST", url, json={"code": "1"}, headers=headers) as r:
                    body = r.read()
                assert b"event: done" in body

            def ours() -> None:
                assert client.execute("1").success

            def process() -> None:
                subprocess.run(
                    [sys.executable, "-c", CHILD, server.url, session.stable_id], check=True
                )

            t_bare = median_seconds(bare_post, args.repeat)
            t_ours = median_seconds(ours, args.repeat)
            t_proc = median_seconds(process, max(args.repeat // 4, 5), warmup=1)
            bare.close()
    print(f"bare httpx POST        median {t_bare * 1000:7.1f} ms")
    print(f"MarimoClient.execute   median {t_ours * 1000:7.1f} ms")
    print(f"process per call       median {t_proc * 1000:7.1f} ms")
    print(f"client / bare httpx    {t_ours / t_bare:5.2f}x  (goal <= 1.15x)")
    print(f"process / client       {t_proc / t_ours:5.2f}x  (goal >= 2.5x faster)")


if __name__ == "__main__":
    main()
