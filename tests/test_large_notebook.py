"""A large notebook: attach, the first calls and a timeout work with the default scaling.

marimo's own work grows with the notebook: opening 10,000 cells took 17 s on this
project's CI machine and every execute carries ~0.3 ms a cell (figures from
`bench/large_notebook.py`). Here 1,500 cells keep the test fast, and a
``probe_timeout`` of 0.3 s stands in for the 5 s default at 10,000 cells: marimo's
per-request work (~0.5 s here) is above it, as 6 s for the first call is above 5 s
there. Fixed waits fail this test; waits that scale with the notebook pass it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from marimo_pair_tools import MarimoClient, MarimoServer
from marimo_pair_tools.errors import ExecuteTimeoutError
from marimo_pair_tools.notebook import Notebook

CELLS = 1_500

# The notebook bench/large_notebook.py measures, written by the same function.
sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from _common import write_chain_notebook  # noqa: E402


def test_large_notebook_attach_listing_and_timeout(start_server: Any, tmp_path: Path) -> None:
    path = write_chain_notebook(tmp_path / "large.py", CELLS)
    server: MarimoServer = start_server(path)
    with server.client(probe_timeout=0.3) as client:
        started = time.monotonic()
        session = client.attach()
        attached = time.monotonic() - started

        # The first call installs the input() guard and the kernel package: seconds here.
        page = Notebook(client).cells()
        assert page.total == CELLS and len(page.cells) == CELLS
        assert page.cells[1].refs == ["v0"]

        # A timeout on this notebook is followed by probes that scale with it, so the
        # kernel is found answering again, not wrongly reported wedged.
        with pytest.raises(ExecuteTimeoutError) as info:
            client.execute("while True: pass", timeout=1)
        assert info.value.cause == "kernel_answers", str(info.value)
        assert client.execute("print('fine')").stdout == "fine\n"
        assert client._probe_wait(session) > 0.3 + CELLS * 0.0005
    print(f"attach {attached:.1f} s for {CELLS} cells")


def test_attach_wait_grows_with_the_notebook_file(tmp_path: Path) -> None:
    small = write_chain_notebook(tmp_path / "small.py", 10)
    large = write_chain_notebook(tmp_path / "huge.py", 10_000)
    with MarimoClient(base_url="http://127.0.0.1:9") as client:
        assert client._attach_wait(str(small)) < 31
        # 10,000 cells took 17 s to open here; the default leaves room for a loaded machine.
        assert client._attach_wait(str(large)) >= 30 + 10_000 * 0.005
        assert client._cells_in_file(str(large)) == 10_000
    with MarimoClient(base_url="http://example.com:2718", allow_remote=True) as remote:
        # Not this machine's file, whatever the path says: nothing is read.
        assert remote._cells_in_file(str(large)) == 0
