"""Deployment: `langgraph dev` serves `langgraph.json`'s graph, and model specs fail clearly."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage

from marimo_pair_tools.config import (
    agent_options_from_env,
    model_from_env,
    model_from_spec,
    toolkit_from_env,
)
from marimo_pair_tools.errors import ConfigurationError
from marimo_pair_tools.server import free_port
from marimo_pair_tools.testing import ScriptedChatModel

from .conftest import write_notebook

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 45.0


def scripted_model() -> ScriptedChatModel:
    """The model `langgraph dev` loads here, as ``MARIMO_PAIR_MODEL=tests.test_deploy:scripted_model``."""
    return ScriptedChatModel(
        [
            [{"name": "read_notebook", "args": {}}],
            "Two cells.",
            [{"name": "inspect_graph", "args": {"cell": "last"}}],
            [{"name": "delete_cell", "args": {"cell": "last", "acknowledge_descendants": []}}],
            "Deleted the last cell.",
        ]
    )


# ------------------------------------------------------------------ model specs


def hide_modules(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``import name`` fail as if the package were not installed."""
    for name in names:
        for loaded in list(sys.modules):
            if loaded == name or loaded.startswith(name + "."):
                monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


def test_spec_without_a_colon_lists_the_forms() -> None:
    with pytest.raises(ConfigurationError, match=r"provider:model .*module:factory"):
        model_from_spec("gpt-4.1")


def test_missing_provider_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "not-a-real-key")
    hide_modules(monkeypatch, "langchain_anthropic")
    with pytest.raises(ConfigurationError, match="pip install langchain-anthropic"):
        model_from_spec("anthropic:claude-sonnet-4-5")


def test_provider_spec_without_langchain_names_both_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "not-a-real-key")
    hide_modules(monkeypatch, "langchain", "langchain_openai")
    with pytest.raises(ConfigurationError, match="pip install langchain langchain-openai"):
        model_from_spec("openai:gpt-4.1")


def test_run_and_eval_say_a_missing_api_key_in_the_same_one_line(tmp_path: Path) -> None:
    from .test_cli import run_cli

    notebook = write_notebook(tmp_path / "k.py", ["k = 1"])
    env = {"OPENAI_API_KEY": "", "XDG_STATE_HOME": str(tmp_path / "state")}
    run = run_cli("run", str(notebook), "task", "--model", "openai:gpt-4.1", env=env)
    evaluate = run_cli("eval", "--model", "openai:gpt-4.1", "--task", "fix_name_error", env=env)
    line = "Model spec openai:gpt-4.1 needs an API key: set OPENAI_API_KEY in the environment.\n"
    assert (run.returncode, run.stderr) == (1, "marimo-pair: " + line)
    assert (evaluate.returncode, evaluate.stderr) == (1, "marimo-pair: " + line)
    assert not list((tmp_path / "state").glob("**/*.json")), "no server was started"


def test_a_factory_that_wants_the_task_is_named_for_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="takes an argument"):
        model_from_spec("tests.test_deploy:model_for_task")
    assert isinstance(
        model_from_spec("tests.test_deploy:model_for_task", argument="t"), ScriptedChatModel
    )


def model_for_task(task: object) -> ScriptedChatModel:
    """A factory of the eval kind: it takes the task."""
    return ScriptedChatModel([f"for {task}"])


def test_unknown_module_and_attribute() -> None:
    with pytest.raises(ConfigurationError, match="neither a LangChain provider nor an importable"):
        model_from_spec("no_such_module_here:make")
    with pytest.raises(ConfigurationError, match="has no attribute 'nope'"):
        model_from_spec("marimo_pair_tools.testing:nope")
    with pytest.raises(ConfigurationError, match="gave str, not a chat model"):
        model_from_spec("marimo_pair_tools.config:ENV_MODEL")


def test_module_factory_and_scripted_file(tmp_path: Path) -> None:
    assert isinstance(model_from_spec("tests.test_deploy:scripted_model"), ScriptedChatModel)
    turns = tmp_path / "turns.json"
    turns.write_text(json.dumps(["hello"]), encoding="utf-8")
    model = model_from_spec(f"scripted:{turns}")
    assert isinstance(model, ScriptedChatModel)
    assert model.invoke([HumanMessage("hi")]).content == "hello"


def test_scripted_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Cannot read"):
        model_from_spec(f"scripted:{tmp_path / 'missing.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="is not JSON"):
        model_from_spec(f"scripted:{bad}")
    bad.write_text(json.dumps([42]), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="Turn 0"):
        model_from_spec(f"scripted:{bad}")


def test_environment_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MARIMO_PAIR_MODEL"):
        model_from_env({})
    with pytest.raises(ConfigurationError, match="MARIMO_NOTEBOOK"):
        toolkit_from_env({})
    with pytest.raises(ConfigurationError, match="is not a notebook file"):
        toolkit_from_env({"MARIMO_NOTEBOOK": str(tmp_path / "missing.py")})


def test_approval_options_from_the_environment() -> None:
    assert agent_options_from_env({}) == {}
    assert agent_options_from_env(
        {"MARIMO_PAIR_APPROVE_DELETES": "with_descendants", "MARIMO_PAIR_INTERRUPT_ON": "a, b"}
    ) == {"approve_deletes": "with_descendants", "interrupt_on": ["a", "b"]}
    with pytest.raises(ConfigurationError, match="with_descendants"):
        agent_options_from_env({"MARIMO_PAIR_APPROVE_DELETES": "sometimes"})


# ----------------------------------------------------------------- langgraph dev


def served_config(directory: Path) -> Path:
    """The repo's langgraph.json with its paths made absolute, written to ``directory``.

    `langgraph dev` resolves graph paths against its working directory and keeps
    its in-memory state in ``./.langgraph_api``; running it in a temporary
    directory keeps the repository clean, so the paths must not be relative.
    """
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert config["dependencies"] == ["."]
    graphs = {}
    for graph_id, spec in config["graphs"].items():
        path, _, variable = spec.rpartition(":")
        graphs[graph_id] = f"{(ROOT / path).resolve()}:{variable}"
    served = {**config, "dependencies": [str(ROOT)], "graphs": graphs}
    if "http" in config:
        app_path, _, variable = config["http"]["app"].rpartition(":")
        served["http"] = {**config["http"], "app": f"{(ROOT / app_path).resolve()}:{variable}"}
    target = directory / "langgraph.json"
    target.write_text(json.dumps(served), encoding="utf-8")
    return target


@contextlib.contextmanager
def langgraph_dev(config: Path, env: dict[str, str], log: Path) -> Iterator[tuple[str, Any]]:
    """Run ``langgraph dev`` in its own process group; stop it with SIGINT (like Ctrl+C)."""
    port = free_port()
    command = [sys.executable, "-m", "langgraph_cli", "dev", "--no-browser", "--no-reload"]
    command += ["--port", str(port), "--config", str(config)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=config.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        # The group is ours (start_new_session): end whatever is left of it, e.g. a leaked marimo.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def wait_for_assistants(base: str, process: Any, log: Path) -> list[dict[str, Any]]:
    """Poll ``POST /assistants/search`` until the server answers with the graph."""
    deadline = time.monotonic() + STARTUP_SECONDS
    delay = 0.1
    with httpx.Client(timeout=2.0) as http:
        while True:
            if process.poll() is not None:
                pytest.fail(f"langgraph dev exited ({process.returncode}):\n{tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                response = http.post(f"{base}/assistants/search", json={})
                if response.status_code == 200 and response.json():
                    return list(response.json())
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not list the graph in time:\n{tail(log)}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)


def tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@pytest.mark.skipif(sys.platform == "win32", reason="stops the server with SIGINT")
@pytest.mark.timeout(120)
def test_langgraph_dev_serves_the_pair_graph(tmp_path: Path) -> None:
    pytest.importorskip("langgraph_cli", reason="pip install 'langgraph-cli[inmem]'")
    pytest.importorskip("langgraph_api", reason="pip install 'langgraph-cli[inmem]'")
    notebook = write_notebook(tmp_path / "nb.py", ["a = 1", "b = a + 1"], ["first", "last"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARIMO_", "LANGSMITH_"))}
    env |= {
        "MARIMO_NOTEBOOK": str(notebook),
        "MARIMO_PAIR_MODEL": "tests.test_deploy:scripted_model",
        "MARIMO_PAIR_APPROVE_DELETES": "1",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
        "NO_COLOR": "1",
    }
    log = tmp_path / "langgraph-dev.log"
    with langgraph_dev(served_config(tmp_path), env, log) as (base, process):
        [assistant] = wait_for_assistants(base, process, log)
        assert assistant["graph_id"] == "marimo_pair"
        found = re.search(r"marimo server for .*?: (http://127\.0\.0\.1:\d+)", tail(log, 400))
        assert found, tail(log)
        marimo_url = found.group(1)

        # One real run: the scripted model lists the cells; the ledger survives the
        # server's own checkpointer and comes back as JSON.
        with httpx.Client(base_url=base, timeout=30.0) as http:
            thread = http.post("/threads", json={}).json()["thread_id"]
            state = http.post(
                f"/threads/{thread}/runs/wait",
                json={
                    "assistant_id": assistant["assistant_id"],
                    "input": {"messages": [{"role": "user", "content": "what is here?"}]},
                },
            ).json()
            assert [m["type"] for m in state["messages"]] == ["human", "ai", "tool", "ai"], state
            assert state["messages"][2]["status"] == "success"
            assert len(state["ledger"]["hashes"]) == 2

            # Approvals work with the server's checkpointer: the delete pauses for a person.
            run = {"assistant_id": assistant["assistant_id"]}
            http.post(
                f"/threads/{thread}/runs/wait",
                json={**run, "input": {"messages": [{"role": "user", "content": "drop last"}]}},
            )
            paused = http.get(f"/threads/{thread}/state").json()
            [request] = [i["value"] for t in paused["tasks"] for i in t["interrupts"]]
            assert request["action_requests"][0]["name"] == "delete_cell"
            assert "b = a + 1" in request["action_requests"][0]["description"]
            assert "b = a + 1" in notebook.read_text()
            state = http.post(
                f"/threads/{thread}/runs/wait",
                json={**run, "command": {"resume": {"decisions": [{"type": "approve"}]}}},
            ).json()
            assert state["messages"][-1]["content"] == "Deleted the last cell.", state
        assert "b = a + 1" not in notebook.read_text()

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) is not None
    # The marimo server toolkit_from_env started went down with langgraph dev.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{marimo_url}/health", timeout=2.0)


def saving_model() -> ScriptedChatModel:
    """One run that adds a cell, so marimo saves the notebook (``tests.test_deploy:saving_model``)."""
    return ScriptedChatModel([[{"name": "create_cell", "args": {"code": "added = 1"}}], "Added."])


def marimo_dev(
    config: Path, env: dict[str, str], log: Path
) -> contextlib.AbstractContextManager[Any]:
    """``marimo-pair dev`` (langgraph dev with its reloader on) in its own process group."""
    port = free_port()
    command = [sys.executable, "-m", "marimo_pair_tools.cli", "dev", "--config", str(config)]
    command += ["--", "--no-browser", "--port", str(port)]
    return _process_group(command, config.parent, env, log, f"http://127.0.0.1:{port}")


@contextlib.contextmanager
def _process_group(
    command: list[str], cwd: Path, env: dict[str, str], log: Path, base: str
) -> Iterator[tuple[str, Any]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _live_marimo(registry: Path) -> list[int]:
    from marimo_pair_tools import discover_servers

    return [s.pid for s in discover_servers(registry) if s.pid is not None]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="stops the server with SIGINT")
@pytest.mark.timeout(240)
def test_dev_reloader_ignores_the_agents_saves_and_no_marimo_outlives_a_reload(
    tmp_path: Path,
) -> None:
    pytest.importorskip("langgraph_api", reason="pip install 'langgraph-cli[inmem]'")
    notebook = write_notebook(tmp_path / "nb.py", ["a = 1"])  # inside the watched folder
    registry = tmp_path / "state" / "marimo" / "servers"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARIMO_", "LANGSMITH_"))}
    env |= {
        "MARIMO_NOTEBOOK": "nb.py",
        "MARIMO_PAIR_MODEL": "tests.test_deploy:saving_model",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "1",
        "LANGSMITH_TRACING": "false",
        "NO_COLOR": "1",
    }
    log = tmp_path / "dev.log"
    with marimo_dev(served_config(tmp_path), env, log) as (base, process):
        [assistant] = wait_for_assistants(base, process, log)
        [first] = _live_marimo(registry)
        with httpx.Client(base_url=base, timeout=60.0) as http:
            thread = http.post("/threads", json={}).json()["thread_id"]
            state = http.post(
                f"/threads/{thread}/runs/wait",
                json={
                    "assistant_id": assistant["assistant_id"],
                    "input": {"messages": [{"role": "user", "content": "add a cell"}]},
                },
            ).json()
        assert state["messages"][-1]["content"] == "Added.", state
        assert "added = 1" in notebook.read_text()  # marimo saved the watched file
        time.sleep(3)  # the reloader polls; give it time to (wrongly) react
        assert "Reloading" not in tail(log, 400), tail(log)
        assert _live_marimo(registry) == [first], "the graph was not reloaded"

        # Code changes still reload; the old worker stops the server it started.
        (tmp_path / "trigger.py").write_text("changed = True\n")
        deadline = time.monotonic() + 90
        live = _live_marimo(registry)
        while not (_gone(first) and len(live) == 1):
            assert time.monotonic() < deadline, f"no clean reload:\n{tail(log)}"
            time.sleep(0.2)
            live = _live_marimo(registry)
        [second] = live
        assert second != first and "Reloading" in tail(log, 400)

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) is not None
    assert _gone(second), "langgraph dev exited and left its marimo server running"
    assert _live_marimo(registry) == []
