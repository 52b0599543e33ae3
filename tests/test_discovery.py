"""Discovery reads marimo's registry and decides liveness like the seed's script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from marimo_pair_tools import discover_servers
from marimo_pair_tools.server import free_port

from .conftest import write_notebook


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_live_server_is_discovered(start_server: Any, tmp_path: Path) -> None:
    server = start_server(write_notebook(tmp_path / "d.py", ["a = 1"]))
    found = discover_servers(server.registry_dir)
    assert [r.url for r in found] == [server.url]
    assert found[0].version and found[0].pid == server.pid and found[0].status == "live"
    server.stop()
    assert discover_servers(server.registry_dir) == []


def test_stale_entry_is_removed_and_junk_is_skipped(tmp_path: Path) -> None:
    registry = tmp_path / "servers"
    registry.mkdir()
    port = free_port()
    stale = registry / f"127.0.0.1_{port}.json"
    stale.write_text(
        json.dumps(
            {
                "server_id": "x",
                "pid": _dead_pid(),
                "host": "127.0.0.1",
                "port": port,
                "base_url": "",
                "version": "0.25.2",
            }
        )
    )
    (registry / "broken.json").write_text("{not json")
    records = discover_servers(registry, include_unhealthy=True)
    by_status = {r.status: r for r in records}
    assert by_status["stale"].reason and not stale.exists()
    assert "unreadable" in (by_status["invalid"].reason or "")
    assert (registry / "broken.json").exists()
    assert discover_servers(registry) == []


def test_running_pid_that_does_not_answer_is_reported(tmp_path: Path) -> None:
    registry = tmp_path / "servers"
    registry.mkdir()
    port = free_port()
    entry = registry / "e.json"
    entry.write_text(json.dumps({"pid": subprocess.os.getpid(), "host": "0.0.0.0", "port": port}))
    [record] = discover_servers(registry, include_unhealthy=True)
    assert record.status == "unresponsive" and "does not answer" in (record.reason or "")
    assert record.url == f"http://127.0.0.1:{port}"  # bind-all connects via loopback
    assert entry.exists()


def test_missing_registry_is_empty(tmp_path: Path) -> None:
    assert discover_servers(tmp_path / "nowhere") == []
