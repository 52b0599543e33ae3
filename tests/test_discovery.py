"""Discovery reads marimo's registry and decides liveness like the seed's script."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def test_running_pid_that_does_not_answer_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = tmp_path / "servers"
    registry.mkdir()
    port = free_port()
    entry = registry / "e.json"
    entry.write_text(json.dumps({"pid": os.getpid(), "host": "0.0.0.0", "port": port}))
    [record] = discover_servers(registry, include_unhealthy=True)
    assert record.status == "unresponsive" and "does not answer" in (record.reason or "")
    assert record.url == f"http://127.0.0.1:{port}"  # bind-all connects via loopback
    assert entry.exists()

    # Left out of the default listing, but never silently: the reason is logged.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="marimo_pair_tools.discovery"):
        assert discover_servers(registry) == []
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert "unresponsive" in warning.getMessage() and "does not answer" in warning.getMessage()


def test_unknown_pid_is_never_deleted_on_one_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = tmp_path / "servers"
    registry.mkdir()
    entry = registry / "nopid.json"
    entry.write_text(json.dumps({"host": "127.0.0.1", "port": free_port(), "version": "0.25.2"}))
    with caplog.at_level(logging.WARNING, logger="marimo_pair_tools.discovery"):
        [record] = discover_servers(registry, include_unhealthy=True)
    assert record.status == "unknown" and "no pid" in (record.reason or "")
    assert entry.exists(), "only /health said dead: the entry must stay"
    assert "nopid.json" in caplog.text


def test_answering_server_whose_pid_is_gone_is_live(start_server: Any, tmp_path: Path) -> None:
    """Live = pid runs OR /health answers: a pid we cannot see (another pid namespace,
    a container) does not make a server that answers dead."""
    server = start_server(write_notebook(tmp_path / "ns.py", ["a = 1"]))
    assert server.registry_dir is not None
    [original] = list(server.registry_dir.glob("*.json"))
    entry = json.loads(original.read_text())
    registry = tmp_path / "copied"
    registry.mkdir()
    elsewhere = registry / original.name
    elsewhere.write_text(json.dumps({**entry, "pid": _dead_pid()}))

    [record] = discover_servers(registry, include_unhealthy=True)
    assert record.status == "live" and record.url == server.url
    assert "not visible" in (record.reason or "")
    assert [r.url for r in discover_servers(registry)] == [server.url]
    assert elsewhere.exists()

    # But a server that provably is not the registered one (other marimo version) is
    # not offered as it, and its entry stays while the port answers.
    elsewhere.write_text(json.dumps({**entry, "pid": _dead_pid(), "version": "0.0.1"}))
    [record] = discover_servers(registry, include_unhealthy=True)
    assert record.status == "unresponsive"
    assert "different server holds the port" in (record.reason or "")
    assert discover_servers(registry) == [] and elsewhere.exists()


def test_malformed_fields_are_invalid_not_a_crash(tmp_path: Path) -> None:
    registry = tmp_path / "servers"
    registry.mkdir()
    port = free_port()
    bad = {
        "port.json": {"pid": 1, "host": "127.0.0.1", "port": "80a"},
        "pid.json": {"pid": "12", "host": "127.0.0.1", "port": port},
        "host.json": {"host": "a b/c", "port": port},
        "list.json": [1, 2],
    }
    for name, entry in bad.items():
        (registry / name).write_text(json.dumps(entry))
    # Odd optional fields are dropped, not fatal.
    (registry / "odd.json").write_text(
        json.dumps({"pid": _dead_pid(), "port": port, "version": 3, "started_at": {"x": 1}})
    )
    records = {
        Path(r.registry_file).name: r for r in discover_servers(registry, include_unhealthy=True)
    }
    assert {name: records[name].status for name in bad} == dict.fromkeys(bad, "invalid")
    assert records["odd.json"].status == "stale" and records["odd.json"].version is None


def test_unreadable_registry_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "servers"
    not_a_dir.write_text("")
    with caplog.at_level(logging.WARNING, logger="marimo_pair_tools.discovery"):
        assert discover_servers(not_a_dir) == []
    assert "unreadable" in caplog.text


def test_missing_registry_is_empty(tmp_path: Path) -> None:
    assert discover_servers(tmp_path / "nowhere") == []
