"""What confirming "the kernel answers" with one trivial request adds to a timeout.

One real `marimo edit --headless` server. Code that sleeps past a 1 s limit is timed
out, and the client finds the kernel idle again. Interleaved call by call: as shipped
(idle status confirmed by one `None` execute, so a paused kernel is not called
answering) and a baseline that trusts the idle status alone (the client before that
check). Prints the median seconds from the call to the `kernel_answers` error, and
the ratio.

Usage: python bench/diagnosis_cost.py [--repeat N]
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
from marimo_pair_tools.client import MarimoClient
from marimo_pair_tools.errors import ExecuteTimeoutError


class _TrustsStatus(MarimoClient):
    """The baseline: an idle status counts as answering, with no request sent."""

    def _confirm_answers(self, session: object) -> str:  # type: ignore[override]
        return "answers"


def _timed_out(client: MarimoClient) -> float:
    start = time.perf_counter()
    try:
        client.execute("import time\ntime.sleep(1.5)", timeout=1)
    except ExecuteTimeoutError as exc:
        if exc.cause != "kernel_answers":
            raise AssertionError(str(exc)) from exc
    else:  # pragma: no cover - the limit is below the sleep
        raise AssertionError("no timeout")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory() as tmp:
        path = write_notebook(Path(tmp) / "diag.py", ["x = 1"])
        server = MarimoServer(path).start()
        try:
            shipped = server.client()
            baseline = _TrustsStatus(base_url=server.url)
            shipped.attach()
            baseline.execute("1")
            times: dict[str, list[float]] = {"confirmed": [], "status only": []}
            for i in range(repeat):
                pairs = (("confirmed", shipped), ("status only", baseline))
                for name, client in pairs[:: 1 if i % 2 else -1]:
                    times[name].append(_timed_out(client))
            confirmed = statistics.median(times["confirmed"])
            status = statistics.median(times["status only"])
            print(f"timeout (1 s limit) to a kernel_answers error, median of {repeat}:")
            print(
                f"  status only {status:.2f} s   confirmed {confirmed:.2f} s   "
                f"ratio {confirmed / status:.2f}x"
            )
            shipped.close()
            baseline.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
