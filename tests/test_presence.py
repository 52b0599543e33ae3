"""Presence, against a real server: the agent hears what the person did, the person sees the agent.

The person acts through the requests marimo's page sends (document transactions,
``/api/kernel/run``); they carry no ``X-Pair-Client`` header, as a browser's do not.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.errors import KernelBusyError
from marimo_pair_tools.presence import Presence, announcement
from marimo_pair_tools.toolkit import MarimoPairToolkit


class Page:
    """The person's page: the requests it sends when they type, add, delete and run."""

    def __init__(self, server: MarimoServer, session_key: str) -> None:
        self.url = server.url
        html = httpx.get(server.url + "/").text
        token = html.split('data-token="', 1)[1].split('"', 1)[0]
        self.headers = {"Marimo-Session-Id": session_key, "Marimo-Server-Token": token}

    def _post(self, path: str, body: dict[str, Any]) -> None:
        httpx.post(self.url + path, json=body, headers=self.headers).raise_for_status()

    def change(self, *changes: dict[str, Any]) -> None:
        self._post("/api/document/transaction", {"changes": list(changes)})

    def type_code(self, cell: str, code: str) -> None:
        self.change({"type": "set-code", "cellId": cell, "code": code})

    def run(self, cell: str, code: str) -> None:
        self._post("/api/kernel/run", {"cellIds": [cell], "codes": [code]})

    def save(self, document: Any, path: Path) -> None:
        """The page's save: every cell it shows (the session's document), to the file."""
        cells = document.snapshot().cells
        body = {
            "cellIds": [c.id for c in cells],
            "codes": [c.code for c in cells],
            "names": [c.name or "_" for c in cells],
            "configs": [{"hide_code": c.hide_code, "disabled": c.disabled} for c in cells],
            "filename": str(path),
        }
        self._post("/api/kernel/save", body)


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content)


@pytest.fixture
def pairing(setup: Any, shared_server: MarimoServer) -> Iterator[tuple[Any, Page, list[str]]]:
    """The agent's toolkit (its headless session ran the notebook and let go), and the
    person's page, which resumed that session as its editor."""
    toolkit, path, ids = setup(["a = 1", "b = a + 1", "c = 3", "d = c * 2"])
    tools = {t.name: t for t in toolkit.get_tools()}
    with page_stream(shared_server, path, "tab-" + path.stem):
        yield tools, Page(shared_server, "tab-" + path.stem), ids


def call(tool: Any, args: dict[str, Any]) -> tuple[str, Any]:
    message = tool.invoke({"type": "tool_call", "id": "c1", "name": tool.name, "args": args})
    return text_of(message.content), message


def test_the_agent_hears_what_the_person_did_and_not_what_it_did(
    pairing: tuple[dict[str, Any], Page, list[str]],
) -> None:
    tools, page, (a, b, c, d) = pairing
    first, _ = call(tools["read_notebook"], {})
    assert "Since your last call" not in first  # the first look sets what the agent knows

    # The agent's own changes are not news to it.
    call(tools["create_cell"], {"code": "mine = 1"})
    call(tools["read_cell"], {"cell": c})
    call(tools["edit_cell"], {"cell": c, "code": "c = 30"})
    quiet, _ = call(tools["read_notebook"], {})
    assert "Since your last call" not in quiet, quiet

    # The person: retypes b and runs it, runs the agent's c unchanged, breaks d, adds a
    # cell and deletes a (in the page: the kernel keeps it until the page's delete).
    page.type_code(b, "b = a + 100")
    page.run(b, "b = a + 100")
    page.run(c, "c = 30")
    page.type_code(d, "d = c * undefined_name")
    page.run(d, "d = c * undefined_name")
    page.change(
        {
            "type": "create-cell",
            "cellId": "PersN",
            "code": "theirs = 7",
            "name": "_",
            "config": {},
            "after": d,
        },
        {"type": "delete-cell", "cellId": a},
    )
    toolkit_notebook = tools["read_notebook"].session.sync()
    wait_idle_notebook(toolkit_notebook)
    heard, message = call(tools["get_errors"], {})
    assert heard.startswith("[Since your last call, in this notebook (not your doing):"), heard
    assert f"edited cell {b}" in heard and f"ran cell {b}" in heard
    assert f"ran cell {c}" in heard and f"edited cell {c}" not in heard
    assert f"edited cell {d}" in heard
    assert f"new error in cell {d}: NameError: name 'undefined_name'" in heard
    assert "added cell PersN: theirs = 7" in heard
    # The person's code and error text reach the model marked as data.
    assert (
        heard.index("<notebook-data>") < heard.index("theirs = 7") < heard.index("</notebook-data>")
    )
    assert f"deleted cell {a}" in heard
    assert "mine" not in heard
    assert isinstance(message.artifact, dict) and "cells" in message.artifact  # untouched
    again, _ = call(tools["get_errors"], {})
    assert "Since your last call" not in again, "each change is told once"


def wait_idle_notebook(notebook: Any) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            notebook.client.ping(notebook.notebook, wait=5)
            return
        except KernelBusyError:
            assert time.monotonic() < deadline, "the kernel stayed busy"
            time.sleep(0.05)


def test_a_refusal_carries_the_news_too(
    pairing: tuple[dict[str, Any], Page, list[str]],
) -> None:
    tools, page, (a, *_rest) = pairing
    call(tools["read_cell"], {"cell": a})
    page.type_code(a, "a = 5")
    notebook = tools["read_cell"].session.sync()
    page.save(notebook, Path(notebook.notebook))  # as the page does, a moment later
    refused, message = call(tools["edit_cell"], {"cell": a, "code": "a = 2"})
    assert message.status == "error"
    assert refused.startswith("[Since your last call") and f"edited cell {a}" in refused
    assert "changed since it was read" in refused


def test_presence_hashes_are_the_tools_code_hashes(
    pairing: tuple[dict[str, Any], Page, list[str]],
) -> None:
    tools, page, (_a, b, *_rest) = pairing
    page.type_code(b, "b = a + 2")  # the document changes; the kernel still runs the old code
    _, listed = call(tools["read_notebook"], {})
    presence = tools["read_notebook"].session.presence
    assert presence is not None and presence.known is not None
    hashes = {c["id"]: c["code_hash"] for c in listed.artifact["cells"]}
    assert {cid: mark.hash for cid, mark in presence.known.items()} == hashes


def test_presence_off_sends_nothing_extra(setup: Any) -> None:
    toolkit, _path, _ids = setup(["q = 1"])
    notebook = toolkit.session.sync()
    sent: list[str] = []
    original = notebook.client.execute

    def counting(code: str, **kwargs: Any) -> Any:
        sent.append(code)
        return original(code, **kwargs)

    notebook.client.execute = counting  # type: ignore[method-assign]
    try:
        on = {t.name: t for t in toolkit.get_tools()}
        call(on["get_errors"], {})
        assert len(sent) == 2, "presence read + the tool's own request"
        sent.clear()
        quiet = MarimoPairToolkit.from_clients(
            notebook.client, None, notebook=notebook.notebook, presence=False
        )
        call({t.name: t for t in quiet.get_tools()}["get_errors"], {})
        assert len(sent) == 1
    finally:
        notebook.client.execute = original  # type: ignore[method-assign]


def test_a_person_running_a_long_cell_is_told_as_busy_not_crashed(
    pairing: tuple[dict[str, Any], Page, list[str]],
) -> None:
    tools, page, (_a, _b, c, _d) = pairing
    call(tools["read_notebook"], {})
    page.run(c, "import time\ntime.sleep(3)\nc = 3")
    time.sleep(0.3)
    busy, message = call(tools["read_notebook"], {})
    # Busy, not crashed: named as the person's run when marimo's replay shows it in time.
    assert message.status == "error" and (
        "already running other work" in busy or "that someone else started" in busy
    ), busy
    wait_idle_notebook(tools["read_notebook"].session.sync())
    after, _ = call(tools["read_notebook"], {})
    # What they ran is not yet their cell's text (a page syncs it a moment later): a change.
    assert f"ran cell {c}" in after and f"edited cell {c}" in after


@contextlib.contextmanager
def page_stream(
    server: MarimoServer, notebook: Path, key: str = "person-tab"
) -> Iterator[list[dict[str, Any]]]:
    """A person's tab, headless: a main consumer on the notebook, recording what it gets."""
    received: list[dict[str, Any]] = []
    stop = threading.Event()
    params = {"session_id": key, "file": str(notebook)}

    def read() -> None:
        with httpx.stream("GET", server.url + "/sse", params=params, timeout=None) as response:
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("data:"):
                    with contextlib.suppress(ValueError):
                        received.append(json.loads(line[5:]))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while key not in httpx.get(server.url + "/api/sessions").json():
        assert time.monotonic() < deadline, "the tab's session did not appear"
        time.sleep(0.05)
    try:
        yield received
    finally:
        stop.set()


def _sessions(server: MarimoServer) -> list[dict[str, Any]]:
    return list(httpx.get(server.url + "/api/sessions").json().values())


def test_the_person_sees_what_the_agent_does_as_a_toast(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    path = new_notebook(["n = 1"])
    with page_stream(shared_server, path) as page:
        toolkit = MarimoPairToolkit.from_server(shared_server, notebook=str(path))
        try:
            tools = {t.name: t for t in toolkit.get_tools()}
            call(tools["read_notebook"], {})  # a read: not announced by default
            call(tools["create_cell"], {"code": 'html = "<img src=x onerror=alert(1)>"'})
            deadline = time.monotonic() + 10
            while not [m for m in page if m.get("op") == "alert"]:
                assert time.monotonic() < deadline, "no toast reached the page"
                time.sleep(0.05)
        finally:
            toolkit.close()
    alerts = [m["data"] for m in page if m.get("op") == "alert"]
    assert len(alerts) == 1, alerts
    assert alerts[0]["title"] == "marimo-pair agent"
    assert alerts[0]["description"].startswith("adding a cell: html = &quot;&lt;img")
    assert "<img" not in alerts[0]["description"]


def test_what_is_announced() -> None:
    assert announcement("edit_cell", {"cell": "y"}, "changes") == "editing cell y"
    assert announcement("read_cell", {"cell": "y"}, "changes") is None
    assert announcement("read_cell", {"cell": "y"}, "all") == "reading cell y"
    assert announcement("delete_cell", {"cell": "y"}, "off") is None
    assert Presence(announce="off").program("edit_cell", {"cell": "y"}).count("None") >= 1


def test_news_a_failed_call_could_not_carry_is_told_by_the_next(
    pairing: tuple[dict[str, Any], Page, list[str]],
) -> None:
    tools, page, (a, *_rest) = pairing
    call(tools["read_notebook"], {})
    page.type_code(a, "a = 11")
    timed_out, message = call(
        tools["execute_code"], {"code": "while True:\n    pass", "timeout": 1}
    )
    assert message.status == "error" and "limit" in timed_out
    assert "Since your last call" not in timed_out  # an ExecuteTimeoutError carries none
    told, _ = call(tools["read_notebook"], {})
    assert f"edited cell {a}" in told


def test_the_persons_unsaved_edits_are_not_taken_for_outside_changes(
    pairing: tuple[dict[str, Any], Page, list[str]],
) -> None:
    """The file check before a change (kernel/saved.py) must tell a person's unsaved work in
    the page (the file still as it was) and their later save (the file equal to the running
    notebook) from an edit made outside marimo: neither refuses the agent's change."""
    tools, page, (a, b, c, d) = pairing
    notebook = tools["read_notebook"].session.sync()
    path = Path(notebook.notebook)
    call(tools["read_notebook"], {})
    call(tools["read_cell"], {"cell": a})
    call(tools["read_cell"], {"cell": b})
    page.type_code(c, "c = 33  # the person's unsaved typing")
    page.change({"type": "delete-cell", "cellId": d})
    assert "c = 33" not in path.read_text()  # unsaved: the file is as it was
    edited, message = call(tools["edit_cell"], {"cell": a, "code": "a = 10"})
    assert message.status != "error", edited
    text = path.read_text()
    # marimo's save wrote the running notebook: the agent's edit and the person's work.
    assert "a = 10" in text and "c = 33" in text and "d = c * 2" not in text
    page.type_code(c, "c = 34")
    page.save(notebook, path)
    assert "c = 34" in path.read_text()
    again, message = call(tools["edit_cell"], {"cell": b, "code": "b = a + 2"})
    assert message.status != "error", again
