"""Attack 16: a hostile review of `marimo-pair mcp`, on real marimo servers.

Every test drives the real command (`marimo-pair mcp`, stdio or streamable HTTP) with
the official MCP client, or with raw JSON-RPC where a sloppy client is the point.
A plain test is a defence that held; an ``xfail(strict=True)`` test asserts the
behaviour we should get and fails today: its reason is the finding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession, types

from marimo_pair_tools import MarimoClient, MarimoServer
from marimo_pair_tools.server import free_port

from .conftest import write_notebook
from .test_integrity import person_edits
from .test_mcp import (
    CLI,
    TWO_CELLS,
    cell_ids,
    http_server,
    http_session,
    isolated_env,
    stdio_session,
    text,
)

__all__ = ["isolated_env"]  # the fixture, re-exported for this module's tests

APPROVE = types.ElicitResult


def argv_for(server: MarimoServer, path: Path, *more: str) -> list[str]:
    return ["--url", server.url, "--notebook", str(path), *more]


def answers(*results: types.ElicitResult) -> tuple[Any, list[str]]:
    """An elicitation callback that gives these answers in turn, and what it was asked."""
    asked: list[str] = []
    pending = list(results)

    async def person(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return pending.pop(0)

    return person, asked


class RawStdio:
    """``marimo-pair mcp`` over stdio, driven line by line as a sloppy client would."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [CLI, "mcp", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []
        threading.Thread(target=self._pump, args=("out",), daemon=True).start()
        threading.Thread(target=self._pump, args=("err",), daemon=True).start()

    def _pump(self, which: str) -> None:
        stream = self.process.stdout if which == "out" else self.process.stderr
        assert stream is not None
        for line in stream:
            (self.stdout if which == "out" else self.stderr).append(line)
            if which == "out":
                self.lines.put(line)

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    def reply(self, wait: float = 60) -> dict[str, Any]:
        return dict(json.loads(self.lines.get(timeout=wait)))

    def reply_to(self, request_id: int, wait: float = 60) -> dict[str, Any]:
        """The response to ``request_id`` (notifications and others' answers skipped)."""
        deadline = time.monotonic() + wait
        while True:
            message = self.reply(max(deadline - time.monotonic(), 0.1))
            if message.get("id") == request_id and "method" not in message:
                return message

    def initialize(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        self.send(
            {
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": types.LATEST_PROTOCOL_VERSION,
                    "capabilities": capabilities or {},
                    "clientInfo": {"name": "sloppy", "version": "0"},
                },
            }
        )
        answer = self.reply_to(0)
        self.send({"method": "notifications/initialized"})
        return answer

    def call(self, request_id: int, name: str, arguments: Any) -> dict[str, Any]:
        self.send(
            {
                "id": request_id,
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            }
        )
        return self.reply_to(request_id)

    def close(self, wait: float = 30) -> int | None:
        """Close stdin (the client goes); the exit code, or None if it did not exit."""
        with contextlib.suppress(BrokenPipeError, OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            return self.process.wait(wait)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return b"".join(self.stderr).decode(errors="replace")


@contextlib.contextmanager
def raw_stdio(argv: list[str], env: dict[str, str]) -> Iterator[RawStdio]:
    raw = RawStdio(argv, env)
    try:
        yield raw
    finally:
        raw.close(10)
        raw.kill()


def result_text(reply: dict[str, Any]) -> str:
    return "\n".join(c.get("text", "") for c in reply["result"]["content"])


# =========================================================================================
# Elicitation: what the person answered, and what the server made of it
# =========================================================================================


@pytest.mark.xfail(
    strict=True,
    reason="approval fails open: an elicitation answer {'approve': 'false'} (a string, which "
    "the SDK's ElicitResult accepts) is read with bool(), so 'false' approves and the cell "
    "with dependents is deleted",
)
async def test_a_string_false_in_the_elicitation_answer_is_not_an_approval(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    path = new_notebook(*TWO_CELLS)
    person, asked = answers(APPROVE(action="accept", content={"approve": "false"}))
    async with stdio_session(
        argv_for(shared_server, path), isolated_env, tmp_path / "err.txt", elicitation_callback=person
    ) as session:
        assert not (await session.call_tool("inspect_graph", {"cell": "x"})).isError
        before = path.read_bytes()
        result = await session.call_tool(
            "delete_cell", {"cell": "x", "acknowledge_descendants": True}
        )
        assert len(asked) == 1
        assert result.isError, text(result)
        assert path.read_bytes() == before


async def test_a_cancelled_elicitation_refuses_the_delete(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    path = new_notebook(*TWO_CELLS)
    person, asked = answers(APPROVE(action="cancel"), APPROVE(action="accept"))
    async with stdio_session(
        argv_for(shared_server, path), isolated_env, tmp_path / "err.txt", elicitation_callback=person
    ) as session:
        await session.call_tool("inspect_graph", {"cell": "x"})
        before = path.read_bytes()
        delete = {"cell": "x", "acknowledge_descendants": True}
        cancelled = await session.call_tool("delete_cell", delete)
        assert cancelled.isError and "not approved by a person" in text(cancelled)
        # "accept" with no content is no approval either.
        empty = await session.call_tool("delete_cell", delete)
        assert empty.isError and "not approved by a person" in text(empty)
        assert len(asked) == 2
        assert path.read_bytes() == before


# =========================================================================================
# Tool annotations: do the hints tell the truth?
# =========================================================================================


def counting_cells(log: Path) -> list[str]:
    """A cell that appends a line to ``log`` each time it runs, and one that reads it."""
    return [
        f"import pathlib\n_log = pathlib.Path({str(log)!r})\n"
        "with _log.open('a') as _f:\n    _f.write('ran\\n')\nx = 1",
        "y = x + 1",
    ]


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


async def test_read_only_tools_change_nothing_and_move_runs_nothing(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    """readOnlyHint: file, kernel runs and order unchanged; move_cell (not destructive) runs nothing."""
    log = tmp_path / "runs.log"
    path = new_notebook(counting_cells(log), ["x", "_"])
    async with stdio_session(
        argv_for(shared_server, path), isolated_env, tmp_path / "err.txt"
    ) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        ids = await cell_ids(session)
        before_file, before_runs = path.read_bytes(), runs(log)
        calls = {
            "read_notebook": {},
            "read_cell": {"cell": "x"},
            "inspect_graph": {"cell": "x"},
            "get_errors": {},
            "get_variables": {},
            "list_notebooks": {},
        }
        assert {n for n, t in tools.items() if t.annotations and t.annotations.readOnlyHint} == set(
            calls
        )
        for name, args in calls.items():
            result = await session.call_tool(name, args)
            assert not result.isError, (name, text(result))
        await session.call_tool("inspect_graph", {})
        assert path.read_bytes() == before_file
        assert runs(log) == before_runs
        # move_cell: "order only, nothing runs; the same move twice leaves the same order".
        for _ in range(2):
            moved = await session.call_tool("move_cell", {"cell": ids[1], "before": ids[0]})
            assert not moved.isError, text(moved)
        assert await cell_ids(session) == [ids[1], ids[0]]
        assert runs(log) == before_runs


@pytest.mark.xfail(
    strict=True,
    reason="annotations lie: create_cell runs arbitrary Python (a created cell deleted a file "
    "outside the notebook) yet is annotated destructiveHint=False, openWorldHint=False; a "
    "client that auto-approves non-destructive tools runs code it would confirm for "
    "execute_code (run_cell, edit_cell and set_ui_value alike: openWorldHint=False)",
)
async def test_create_cell_annotations_admit_that_the_new_cell_runs_arbitrary_code(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    path = new_notebook(*TWO_CELLS)
    victim = tmp_path / "person-data.csv"
    victim.write_text("precious\n")
    async with stdio_session(
        argv_for(shared_server, path), isolated_env, tmp_path / "err.txt"
    ) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        made = await session.call_tool(
            "create_cell", {"code": f"import pathlib\npathlib.Path({str(victim)!r}).unlink()"}
        )
        assert not made.isError, text(made)
        assert not victim.exists()  # the "non-destructive, closed-world" call deleted a file
        hints = tools["create_cell"].annotations
        assert hints is not None
        assert hints.destructiveHint is True or hints.openWorldHint is True


# =========================================================================================
# Several MCP sessions on one notebook (one HTTP server: one ledger per session)
# =========================================================================================


async def test_a_read_in_one_session_does_not_let_another_edit_even_with_its_hash(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str]
) -> None:
    path = new_notebook(*TWO_CELLS)
    with http_server(argv_for(shared_server, path), isolated_env) as (url, _):
        async with http_session(url) as a, http_session(url) as b:
            read = await a.call_tool("read_cell", {"cell": "x"})
            assert not read.isError
            [code_hash] = re.findall(r"hash[ =:]+'?([0-9a-f]{16})", text(read))[:1] or [None]
            assert code_hash, text(read)
            before = path.read_bytes()
            stolen = await b.call_tool(
                "edit_cell", {"cell": "x", "code": "x = 666", "expected_hash": code_hash}
            )
            assert stolen.isError and "read_cell" in text(stolen)
            # B inspects and deletes on A's inspection? B has none of its own.
            assert not (await a.call_tool("inspect_graph", {"cell": "x"})).isError
            gone = await b.call_tool("delete_cell", {"cell": "x", "acknowledge_descendants": True})
            assert gone.isError and "inspect_graph" in text(gone)
            assert path.read_bytes() == before


async def test_a_stale_read_in_one_session_loses_to_an_edit_from_another(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str]
) -> None:
    path = new_notebook(*TWO_CELLS)
    with http_server(argv_for(shared_server, path), isolated_env) as (url, _):
        async with http_session(url) as a, http_session(url) as b:
            assert not (await a.call_tool("read_cell", {"cell": "x"})).isError
            assert not (await b.call_tool("read_cell", {"cell": "x"})).isError
            won = await b.call_tool("edit_cell", {"cell": "x", "code": "x = 2  # B's work"})
            assert not won.isError, text(won)
            lost = await a.call_tool("edit_cell", {"cell": "x", "code": "x = 3"})
            assert lost.isError
            assert "B's work" in text(lost)  # A is shown the code it would have overwritten
            assert "x = 2  # B's work" in path.read_text()


async def test_a_dependent_added_by_another_session_stops_a_delete(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str]
) -> None:
    """A inspects x (dependent: y); B adds z reading x; A's acknowledged delete must stop."""
    path = new_notebook(*TWO_CELLS)
    with http_server(argv_for(shared_server, path), isolated_env) as (url, _):
        async with http_session(url) as a, http_session(url) as b:
            assert not (await a.call_tool("inspect_graph", {"cell": "x"})).isError
            made = await b.call_tool("create_cell", {"code": "z = x * 100"})
            assert not made.isError, text(made)
            before = path.read_bytes()
            delete = await a.call_tool(
                "delete_cell", {"cell": "x", "acknowledge_descendants": True}
            )
            assert delete.isError, text(delete)
            assert path.read_bytes() == before


async def test_a_person_edit_between_inspect_and_delete_stops_the_delete(
    shared_server: MarimoServer,
    new_notebook: Any,
    isolated_env: dict[str, str],
    client: MarimoClient,
) -> None:
    path = new_notebook(*TWO_CELLS)
    with http_server(argv_for(shared_server, path), isolated_env) as (url, _):
        async with http_session(url) as a:
            ids = await cell_ids(a)
            assert not (await a.call_tool("inspect_graph", {"cell": "x"})).isError
            person_edits(client, path, ids[0], "x = 1\nperson_note = 'keep me'")
            before = path.read_bytes()
            delete = await a.call_tool(
                "delete_cell", {"cell": "x", "acknowledge_descendants": True}
            )
            assert delete.isError, text(delete)
            assert "person_note" in text(delete)
            assert path.read_bytes() == before
