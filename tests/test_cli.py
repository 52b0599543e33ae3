"""The `marimo-pair` CLI, run as a real subprocess against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import write_notebook


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marimo_pair_tools.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_discover_sessions_exec(start_server: Any, tmp_path: Path) -> None:
    server = start_server(write_notebook(tmp_path / "c.py", ["n = 1"]))
    state = str(server.registry_dir.parent.parent)
    out = run_cli("discover", env={"XDG_STATE_HOME": state})
    assert [r["url"] for r in json.loads(out.stdout)] == [server.url]

    with server.client() as client:
        client.attach()
        sessions = json.loads(run_cli("sessions", "--url", server.url).stdout)
        assert sessions[0]["path"].endswith("c.py")

        ok = run_cli("exec", "--port", str(server.port), "-c", "print('hello'); 2 + 3")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("hello\n") and "5" in ok.stdout

        bad = run_cli("exec", "--url", server.url, "-", stdin="raise ValueError('boom')\n")
        assert bad.returncode == 1
        assert "ValueError: boom" in bad.stderr

        script = tmp_path / "code.py"
        script.write_text("print('from file')")
        assert run_cli("exec", "--url", server.url, str(script)).stdout == "from file\n"

        slow = run_cli("exec", "--url", server.url, "--timeout", "1", "-c", "while True: pass")
        assert slow.returncode == 1 and "limit" in slow.stderr


def test_exec_without_server_is_a_clear_error(tmp_path: Path) -> None:
    out = run_cli("exec", "--port", "9", "-c", "1", env={"XDG_STATE_HOME": str(tmp_path)})
    assert out.returncode == 1
    assert "nothing answers" in out.stderr


def test_open_prints_url(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "o.py", ["o = 1"])
    out = run_cli(
        "open", str(path), "--exit-after", "0.5", env={"XDG_STATE_HOME": str(tmp_path / "s")}
    )
    assert out.returncode == 0, out.stderr
    assert "watch it live: http://127.0.0.1:" in out.stdout


def run_delete_with_approval(tmp_path: Path, stdin: str) -> tuple[Any, Path]:
    """`marimo-pair run` whose scripted model inspects, then deletes old_cell (asks first)."""
    path = write_notebook(
        tmp_path / "r.py", ["keep = 1", "old = 2"], names=["keep_cell", "old_cell"]
    )
    turns = [
        [{"name": "inspect_graph", "args": {"cell": "old_cell"}}],
        [{"name": "delete_cell", "args": {"cell": "old_cell"}}],
        "done",
    ]
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(turns))
    out = run_cli(
        "run",
        str(path),
        "remove old_cell",
        "--model",
        f"scripted:{script}",
        env={"XDG_STATE_HOME": str(tmp_path / "s")},
        stdin=stdin,
    )
    assert out.returncode == 0, out.stderr
    return out, path


def test_run_with_a_scripted_model_and_a_terminal_approval(tmp_path: Path) -> None:
    out, path = run_delete_with_approval(tmp_path, "y\n")
    assert "approval needed: delete_cell" in out.stdout
    assert "✓ delete_cell" in out.stdout
    assert "old = 2" not in path.read_text()
    assert "keep = 1" in path.read_text()


def test_run_terminal_edit_decision_goes_through_the_policy(tmp_path: Path) -> None:
    """The person edits the delete to target another cell: the guard still checks it."""
    out, path = run_delete_with_approval(tmp_path, 'e\nnot json\n{"cell": "keep_cell"}\n')
    assert "[a]pprove / [e]dit / [r]eject" in out.stdout
    assert "not JSON" in out.stdout
    # The edited call went through the policy: keep_cell was never inspected.
    assert "you have not checked what depends on cell 'keep_cell'" in out.stdout
    assert "old = 2" in path.read_text() and "keep = 1" in path.read_text()


HEAVY = ("langchain", "langchain_core", "langgraph", "langsmith")
_IMPORTS_AFTER = f"""
import json, sys
from marimo_pair_tools.cli import main
code = main(sys.argv[1:])
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
print("\\nIMPORTED " + json.dumps(heavy), "RC", code)
"""


def test_discover_and_exec_import_no_langchain(start_server: Any, tmp_path: Path) -> None:
    server = start_server(write_notebook(tmp_path / "light.py", ["n = 1"]))
    with server.client() as client:
        client.attach()
        for argv in (
            ["discover", "--registry-dir", str(server.registry_dir)],
            ["exec", "--url", server.url, "-c", "print('ran')"],
        ):
            out = subprocess.run(
                [sys.executable, "-c", _IMPORTS_AFTER, *argv],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.stdout.rstrip().endswith("IMPORTED [] RC 0"), (argv, out.stdout, out.stderr)
        # A failing execute loads the tool errors (a ToolException subclass) lazily: still right.
        failed = run_cli("exec", "--url", server.url, "--timeout", "1", "-c", "while True: pass")
        assert failed.returncode == 1 and "limit" in failed.stderr
