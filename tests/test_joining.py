"""Join, never fork: every entry point works in the session that already has the notebook open.

The person is a real `marimo edit --headless --no-token nb.py`, registered in an
isolated registry (``XDG_STATE_HOME``), with a session held open by their own
client, standing in for their browser tab. Their edits and saves are the two
requests marimo's page sends: a document transaction and ``/api/kernel/save`` of
the cells the page shows (the session's document).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from marimo_pair_tools import MarimoServer, discover_servers
from marimo_pair_tools.errors import ConfigurationError, MarimoPairError, SessionNotFoundError
from marimo_pair_tools.notebook import Notebook
from marimo_pair_tools.toolkit import MarimoPairToolkit

from .conftest import write_notebook
from .test_cli import run_cli

AGENT_CELL = "agent_value = 6 * 7"


class Person:
    """Someone with the notebook open on their own server (their tab: a held session)."""

    def __init__(self, server: MarimoServer, path: Path) -> None:
        self.server = server
        self.path = path
        self.client = server.client()
        self.session = self.client.attach()
        self.notebook = Notebook(self.client, str(path))

    @property
    def state(self) -> str:
        """The ``XDG_STATE_HOME`` their server registered in."""
        assert self.server.registry_dir is not None
        return str(self.server.registry_dir.parent.parent)

    def _headers(self) -> dict[str, str]:
        page = httpx.get(self.server.url + "/").text
        token = page.split('data-token="', 1)[1].split('"', 1)[0]
        return {"Marimo-Session-Id": self.session.key, "Marimo-Server-Token": token}

    def edit_and_save(self, cell_id: str, code: str) -> None:
        """What their page sends when they retype a cell: the change, then a save of
        every cell the page shows (which, in one session, is the session's document)."""
        headers = self._headers()
        change = {"changes": [{"type": "set-code", "cellId": cell_id, "code": code}]}
        response = httpx.post(
            self.server.url + "/api/document/transaction", json=change, headers=headers
        )
        response.raise_for_status()
        cells = self.notebook.snapshot().cells
        body = {
            "cellIds": [c.id for c in cells],
            "codes": [code if c.id == cell_id else c.code for c in cells],
            "names": [c.name or "_" for c in cells],
            "configs": [{"hide_code": c.hide_code, "disabled": c.disabled} for c in cells],
            "filename": str(self.path),
        }
        response = httpx.post(self.server.url + "/api/kernel/save", json=body, headers=headers)
        response.raise_for_status()

    def codes(self) -> list[str]:
        return [c.code for c in self.notebook.snapshot().cells]

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def person(start_server: Any, tmp_path: Path) -> Iterator[Person]:
    path = write_notebook(tmp_path / "nb.py", ["x = 1", "y = x + 1"], ["first", "second"])
    someone = Person(start_server(path, isolate=False), path)
    yield someone
    someone.close()


def scripted(tmp_path: Path, turns: list[Any]) -> str:
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(turns), encoding="utf-8")
    return f"scripted:{script}"


def test_run_joins_the_persons_session_and_their_next_save_keeps_the_agents_cell(
    person: Person, tmp_path: Path
) -> None:
    model = scripted(tmp_path, [[{"name": "create_cell", "args": {"code": AGENT_CELL}}], "done"])
    out = run_cli(
        "run", str(person.path), "add agent_value", "--model", model,
        env={"XDG_STATE_HOME": person.state},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"joined the session that has {person.path} open at {person.server.url}" in out.stdout
    # One server, one session, one document: the person's.
    assert [s.url for s in discover_servers(person.server.registry_dir)] == [person.server.url]
    assert [s.key for s in person.client.sessions()] == [person.session.key]
    assert AGENT_CELL in person.codes()
    assert AGENT_CELL in person.path.read_text()

    # The person's next edit saves what their session holds: the agent's cell stays.
    first = person.notebook.cells().cells[0].id
    person.edit_and_save(first, "x = 10")
    saved = person.path.read_text()
    assert "x = 10" in saved and AGENT_CELL in saved


def test_a_session_opened_here_runs_the_notebook_and_a_joined_one_is_never_re_run(
    tmp_path: Path, start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs.log"
    cells = [
        f"open({str(runs)!r}, 'a').write('ran\\n')\nbase = 2",
        "broken = base + undefined_name",
    ]
    alone = write_notebook(tmp_path / "alone.py", cells)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    toolkit = MarimoPairToolkit.for_notebook(alone)
    try:
        assert toolkit.pairing is not None and toolkit.pairing.server is not None
        notebook = toolkit.session.sync()
        errors = notebook.errors()
        assert [e.errors[0].exception_type for e in errors.cells] == ["NameError"]
        assert notebook.execute("print(base)").stdout == "2\n"
        assert runs.read_text() == "ran\n"
        url = toolkit.pairing.url

        # A second entry point joins that session: nothing runs again, no second server.
        again = MarimoPairToolkit.for_notebook(alone)
        try:
            assert again.pairing is not None and again.pairing.url == url
            assert again.pairing.server is None and not again.pairing.opened
            assert again.session.sync().execute("print(base)").stdout == "2\n"
        finally:
            again.close()
        assert runs.read_text() == "ran\n"
        assert len(discover_servers()) == 1
    finally:
        toolkit.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)  # close stopped the server it started


def test_two_servers_on_one_file_are_refused_with_their_urls(
    person: Person, start_server: Any, tmp_path: Path
) -> None:
    directory_server: MarimoServer = start_server(tmp_path, isolate=False)
    # Each registered in its own registry: put both in one, as on a real machine.
    assert person.server.registry_dir is not None and directory_server.registry_dir is not None
    for entry in directory_server.registry_dir.glob("*.json"):
        (person.server.registry_dir / entry.name).write_text(entry.read_text())
    registry = person.server.registry_dir

    # Opening it on the other server would fork it: refused, naming the server that has it.
    with pytest.raises(ConfigurationError, match=person.server.url) as refused:
        MarimoPairToolkit.for_notebook(person.path, url=directory_server.url, registry_dir=registry)
    assert "second kernel" in str(refused.value)
    with directory_server.client() as other:
        assert other.sessions() == [], "nothing was opened on the other server"
        # Someone opens it there anyway: two servers have it open; no guess is made.
        other.attach(str(person.path))
        with pytest.raises(ConfigurationError, match="several marimo servers") as both:
            MarimoPairToolkit.for_notebook(person.path, registry_dir=registry)
        assert person.server.url in str(both.value) and directory_server.url in str(both.value)


def test_from_discovery_finds_the_server_that_has_the_file_open(
    person: Person, tmp_path: Path
) -> None:
    toolkit = MarimoPairToolkit.from_discovery(
        notebook=str(person.path), registry_dir=person.server.registry_dir
    )
    try:
        assert toolkit.session.sync().client.base_url == person.server.url
    finally:
        toolkit.close()
    other = write_notebook(tmp_path / "closed.py", ["z = 1"])
    with pytest.raises(SessionNotFoundError, match="No running marimo server has"):
        MarimoPairToolkit.from_discovery(
            notebook=str(other), registry_dir=person.server.registry_dir
        )


@contextlib.contextmanager
def _cli_process(argv: list[str], state: Path) -> Iterator[subprocess.Popen[str]]:
    """`marimo-pair ARGV` running in the background (killed if the test leaves it running)."""
    with subprocess.Popen(
        [sys.executable, "-m", "marimo_pair_tools.cli", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_STATE_HOME": str(state)},
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _wait_for_line(process: subprocess.Popen[str], prefix: str, seconds: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no {prefix!r} line; got {lines}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_open_stops_what_it_started_on_a_signal(tmp_path: Path, stop: signal.Signals) -> None:
    path = write_notebook(tmp_path / "o.py", ["o = 1"])
    state = tmp_path / "state"
    with _cli_process(["open", str(path)], state) as process:
        lines = _wait_for_line(process, "Ctrl-C")
        pid = int(next(line for line in lines if line.startswith("marimo pid")).split()[-1])
        [record] = discover_servers(state / "marimo" / "servers")
        process.send_signal(stop)
        assert process.wait(timeout=30) == 128 + stop
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not Path(record.registry_file).exists()


def test_run_waiting_for_an_approval_stops_its_server_on_sigterm(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "w.py", ["keep = 1", "old = 2"], ["keep_cell", "old_cell"])
    model = scripted(
        tmp_path,
        [
            [{"name": "inspect_graph", "args": {"cell": "old_cell"}}],
            [{"name": "delete_cell", "args": {"cell": "old_cell"}}],
            "done",
        ],
    )
    state = tmp_path / "state"
    with _cli_process(["run", str(path), "t", "--model", model], state) as process:
        _wait_for_line(process, "approval needed")
        [record] = discover_servers(state / "marimo" / "servers")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert record.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(record.pid, 0)
    assert "old = 2" in path.read_text(), "nothing was deleted"


def test_run_exits_non_zero_when_a_budget_stopped_the_agent(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "b.py", ["b = 1"])
    model = scripted(tmp_path, [[{"name": "read_notebook", "args": {}}]] * 3)
    out = run_cli(
        "run", str(path), "loop", "--model", model, "--max-steps", "2",
        env={"XDG_STATE_HOME": str(tmp_path / "state")},
    )  # fmt: skip
    assert out.returncode == 3, out.stdout + out.stderr
    assert "step budget" in out.stdout and "budget is used up" in out.stderr


def test_a_person_closing_their_server_between_two_calls(person: Person, tmp_path: Path) -> None:
    toolkit = MarimoPairToolkit.for_notebook(person.path, registry_dir=person.server.registry_dir)
    try:
        tools = {t.name: t for t in toolkit.get_tools()}
        assert "2 cells" in str(tools["read_notebook"].invoke({}))
        person.server.stop()
        with pytest.raises(Exception, match="nothing answers|connection") as gone:
            tools["read_notebook"].invoke({})
        assert type(gone.value).__name__ == "ServerUnavailableError"
    finally:
        toolkit.close()


def test_a_server_of_the_file_with_no_session_yet_is_used_not_doubled(
    start_server: Any, tmp_path: Path
) -> None:
    path = write_notebook(tmp_path / "idle.py", ["i = 1"])
    theirs: MarimoServer = start_server(path, isolate=False)  # nobody opened a tab yet
    registry = theirs.registry_dir
    toolkit = MarimoPairToolkit.for_notebook(path, registry_dir=registry)
    try:
        assert toolkit.pairing is not None and toolkit.pairing.server is None
        assert toolkit.pairing.url == theirs.url and toolkit.pairing.opened
        assert [s.url for s in discover_servers(registry)] == [theirs.url]
        assert toolkit.session.sync().execute("print(i)").stdout == "1\n"  # it ran
    finally:
        toolkit.close()


def test_a_token_server_of_the_file_is_named_not_forked(
    start_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_notebook(tmp_path / "tok.py", ["t = 1"])
    secret = "tok-4a1b9c2d7e"
    theirs: MarimoServer = start_server(path, token=secret)  # never registers
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "empty-state"))
    with pytest.raises(ConfigurationError, match=f"pid {theirs.pid}, {theirs.url}") as refused:
        MarimoPairToolkit.for_notebook(path)
    assert "access_token" in str(refused.value) and secret not in str(refused.value)
    assert not (tmp_path / "empty-state").exists(), "no server of ours was started"
    # With its URL as the browser shows it, the agent works there.
    toolkit = MarimoPairToolkit.for_notebook(path, url=f"{theirs.url}/?access_token={secret}")
    try:
        assert toolkit.session.sync().execute("print(t)").stdout == "1\n"
    finally:
        toolkit.close()


def test_a_symlink_to_the_persons_notebook_is_the_same_notebook(
    person: Person, tmp_path: Path
) -> None:
    link = tmp_path / "elsewhere" / "link.py"
    link.parent.mkdir()
    link.symlink_to(person.path)
    toolkit = MarimoPairToolkit.for_notebook(link, registry_dir=person.server.registry_dir)
    try:
        assert toolkit.pairing is not None and toolkit.pairing.url == person.server.url
        assert [s.key for s in person.client.sessions()] == [person.session.key]
    finally:
        toolkit.close()


def test_a_server_that_dies_during_the_first_run_is_an_error_at_once(
    start_server: Any, tmp_path: Path
) -> None:
    path = write_notebook(tmp_path / "slow.py", ["import time\ntime.sleep(60)\nslow = 1"])
    server: MarimoServer = start_server(path)
    with server.client() as client:
        session = client.attach()
        threading.Timer(1.5, server.kill).start()
        started = time.monotonic()
        with pytest.raises(MarimoPairError, match="stopped|nothing answers|closed"):
            client.run_all(session, wait=120)
        assert time.monotonic() - started < 30, "it waited for a run that could not end"
