"""MarimoServer start failures, stop/kill of the whole process group, token flags.

Against real `marimo edit --headless` servers, except where a test says otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from marimo_pair_tools import MarimoServer, discover_servers
from marimo_pair_tools.errors import ConfigurationError, ServerUnavailableError
from marimo_pair_tools.server import free_port

from .conftest import write_notebook
from .test_faults import _descendants, _wait_gone

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the process tree from /proc"
)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_startup_timeout_error_holds_the_log_tail_and_cleans_up(tmp_path: Path) -> None:
    # A real marimo that starts fine but where we do not look: a second --port wins
    # (click takes the last), so our /health probe never answers and we time out.
    elsewhere = free_port()
    server = MarimoServer(
        write_notebook(tmp_path / "t.py", ["a = 1"]),
        registry_dir=tmp_path / "state",
        extra_args=["--port", str(elsewhere)],
        startup_timeout=10,  # well past marimo's ~1.3 s start, so its banner is logged
    )
    scratch = server._scratch_dir()
    with pytest.raises(ServerUnavailableError) as raised:
        server.start()
    message = str(raised.value)
    assert "did not answer" in message and "(no server log)" not in message
    assert "Server log tail:" in message and f":{elsewhere}" in message, message
    assert not server.running and server.pid is None
    assert not scratch.exists(), "the temporary directory must be removed"
    assert not _answers(f"http://127.0.0.1:{elsewhere}"), "the stray marimo must be stopped"


def test_exit_while_starting_holds_the_log_tail_and_cleans_up(tmp_path: Path) -> None:
    server = MarimoServer(
        write_notebook(tmp_path / "x.py", ["a = 1"]),
        registry_dir=tmp_path / "state",
        extra_args=["--no-such-flag"],
    )
    scratch = server._scratch_dir()
    with pytest.raises(ServerUnavailableError, match="exited with code 2") as raised:
        server.start()
    assert "--no-such-flag" in str(raised.value)
    assert not scratch.exists(), "the temporary directory must be removed"
    assert not server.running


DETACHED = """
import subprocess, sys
detached = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
)
print(detached.pid)
"""


def _kernel_tree(server: MarimoServer) -> list[int]:
    """Start a kernel that starts a process in a session of its own; return the tree."""
    with server.client() as client:
        client.attach()  # starts the kernel process
        detached = int(client.execute(DETACHED).stdout)
    assert server.pid is not None
    tree = _descendants(server.pid)
    # marimo's kernel leads a session of its own (setsid), and so does the detached
    # process: neither is in the server's process group, nor in each other's.
    assert detached in tree and os.getsid(detached) == detached
    assert any(os.getsid(pid) == pid for pid in tree if pid != detached), "the kernel"
    return [server.pid, *tree]


@linux_only
def test_stop_ends_the_server_and_everything_it_started(start_server: Any, tmp_path: Path) -> None:
    server: MarimoServer = start_server(write_notebook(tmp_path / "s.py", ["a = 1"]))
    processes = _kernel_tree(server)
    server.stop()
    assert [pid for pid in processes if not _wait_gone(pid, 5)] == []


@linux_only
def test_kill_ends_the_kernel_too_and_leaves_a_stale_entry(
    start_server: Any, tmp_path: Path
) -> None:
    server: MarimoServer = start_server(write_notebook(tmp_path / "k.py", ["a = 1"]))
    processes = _kernel_tree(server)
    server.kill()
    # At once: not a second later, when marimo's kernel would notice its server is
    # gone and end its own group (which would still miss the detached process).
    assert [pid for pid in processes if not _wait_gone(pid, 0.5)] == [], "orphans"
    assert server.registry_dir is not None
    records = discover_servers(server.registry_dir, include_unhealthy=True)
    assert [r.status for r in records] == ["stale"]


def test_stop_raises_when_the_server_survives_sigkill(
    start_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real process cannot be made to survive SIGKILL on demand, so the process
    # handle is patched to look alive; the real marimo still gets every signal.
    server: MarimoServer = start_server(write_notebook(tmp_path / "z.py", ["a = 1"]))
    process = server._process
    assert process is not None

    def never(timeout: float | None = None) -> int:
        raise subprocess.TimeoutExpired("marimo", timeout or 0)

    monkeypatch.setattr(process, "wait", never)
    monkeypatch.setattr(process, "poll", lambda: None)
    with pytest.raises(ServerUnavailableError, match=rf"pid {process.pid}\) is still alive"):
        server.stop(timeout=0.2)
    assert server.running, "a server we could not stop is still ours to stop"
    monkeypatch.undo()
    server.stop()
    assert not server.running


@pytest.mark.parametrize(
    "args",
    [
        ["--token-password", "s3cret"],
        ["--token-password=s3cret"],
        ["--token"],
        ["--no-token"],
        ["--token-password-file", "/run/secrets/marimo"],
    ],
)
def test_token_flags_in_extra_args_are_refused(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="token=") as raised:
        MarimoServer(tmp_path, extra_args=args)
    assert "s3cret" not in str(raised.value)


def test_extra_args_that_merely_mention_a_token_are_fine(tmp_path: Path) -> None:
    args = ["--allow-origins", "http://tokens.example", "--base-url", "/token-demo"]
    server = MarimoServer(tmp_path, extra_args=args)
    assert server.command()[-len(args) :] == args
