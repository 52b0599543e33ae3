"""`marimo-pair mcp` with the official MCP client, over stdio and streamable HTTP.

Every server here is the real command in a subprocess, on a real marimo server:
the client sees what Claude Code or Cursor would see.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolMessage
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from marimo_pair_tools import MarimoServer
from marimo_pair_tools._mcp_auth import TOKEN_ENV
from marimo_pair_tools.cli import _build_parser
from marimo_pair_tools.mcp_server import (
    RUNS_CODE,
    TOOL_ANNOTATIONS,
    McpPairServer,
    input_schema,
    tool_result,
)
from marimo_pair_tools.server import free_port
from marimo_pair_tools.toolkit import MarimoPairToolkit

CLI = str(Path(sys.executable).with_name("marimo-pair"))
README = Path(__file__).parent.parent / "README.md"
TWO_CELLS = (["x = 1", "y = x + 1"], ["x", "_"])
MCP_TOKEN = f"mcp-endpoint-{secrets.token_urlsafe(16)}"
"""The HTTP endpoint's bearer token: new each run, so no result can be written down."""


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """The server's environment: its own (empty) marimo registry, an empty token.

    Empty, as README's Claude Code config (``${MARIMO_TOKEN:-}``) passes it when unset.
    """
    env = dict(os.environ)
    env["MARIMO_TOKEN"] = ""
    env.pop(TOKEN_ENV, None)
    env["XDG_STATE_HOME"] = str(tmp_path / "mcp-state")
    return env


@pytest.fixture
def http_env(isolated_env: dict[str, str]) -> dict[str, str]:
    """`isolated_env` with the HTTP endpoint's token, as the person exports it."""
    return {**isolated_env, TOKEN_ENV: MCP_TOKEN}


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


@contextlib.asynccontextmanager
async def stdio_session(
    argv: list[str], env: dict[str, str], errlog: Path, **client: Any
) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session with ``marimo-pair mcp ARGV`` over stdio."""
    params = StdioServerParameters(command=CLI, args=["mcp", *argv], env=env)
    with errlog.open("w") as err:
        async with (
            stdio_client(params, errlog=err) as (read, write),
            ClientSession(read, write, **client) as session,
        ):
            await session.initialize()
            yield session


@contextlib.contextmanager
def http_server(argv: list[str], env: dict[str, str]) -> Iterator[tuple[str, list[str]]]:
    """``marimo-pair mcp --transport http ARGV``: its endpoint URL and its output lines.

    The lines are stdout and stderr together, until the server has stopped.
    """
    process = subprocess.Popen(
        [CLI, "mcp", "--transport", "http", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines: list[str] = []
    found = threading.Event()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "MCP endpoint" in line:
                found.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not found.wait(0.1):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
        [url] = re.findall(r"MCP endpoint (\S+)", "".join(lines))
        yield url, lines
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(10)
        process.stdout.close()


@contextlib.asynccontextmanager
async def http_session(
    url: str, token: str | None = MCP_TOKEN, **client: Any
) -> AsyncIterator[ClientSession]:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(120), headers=bearer(token)) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write, **client) as session,
    ):
        await session.initialize()
        yield session


def text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def cell_ids(session: ClientSession) -> list[str]:
    listing = await session.call_tool("read_notebook", {})
    assert not listing.isError, text(listing)
    return re.findall(r"^(\w{4}) ", text(listing), flags=re.MULTILINE)


def in_process(server: MarimoServer, path: Path, name: str, **args: Any) -> ToolMessage:
    """The same call through the LangChain tool, with a fresh ledger."""
    toolkit = MarimoPairToolkit.from_server(server, notebook=str(path))
    try:
        tools = {t.name: t for t in toolkit.get_tools()}
        message = tools[name].invoke({"type": "tool_call", "name": name, "args": args, "id": "1"})
        assert isinstance(message, ToolMessage)
        return message
    finally:
        toolkit.close()


# ------------------------------------------------------------------------- stdio


async def test_stdio_refuses_unread_edit_and_unchecked_delete_and_applies_a_read_edit(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    path = new_notebook(*TWO_CELLS)
    argv = ["--url", shared_server.url, "--notebook", str(path)]
    async with stdio_session(argv, isolated_env, tmp_path / "err.txt") as session:
        listed = (await session.list_tools()).tools
        toolkit = MarimoPairToolkit.from_clients(None)
        expected = {t.name: t for t in toolkit.get_tools()}
        assert [t.name for t in listed] == list(expected)
        for tool in listed:
            assert tool.inputSchema == input_schema(expected[tool.name])
            assert tool.description == expected[tool.name].description
            assert tool.annotations == TOOL_ANNOTATIONS[tool.name]

        before = path.read_bytes()
        edit = {"cell": "x", "code": "x = 100"}
        refused = await session.call_tool("edit_cell", edit)
        assert refused.isError
        assert path.read_bytes() == before
        # The text the LangChain tool gives, word for word.
        assert text(refused) == in_process(shared_server, path, "edit_cell", **edit).content

        delete = {"cell": "x", "acknowledge_descendants": True}
        refused = await session.call_tool("delete_cell", delete)
        assert refused.isError
        assert "inspect_graph" in text(refused)
        assert path.read_bytes() == before
        assert text(refused) == in_process(shared_server, path, "delete_cell", **delete).content

        unknown = await session.call_tool("edit_cell", {"cell": "x", "code": "x = 2", "dry": 1})
        assert unknown.isError and "Valid arguments" in text(unknown)
        assert path.read_bytes() == before

        read = await session.call_tool("read_cell", {"cell": "x"})
        assert not read.isError and "x = 1" in text(read)
        applied = await session.call_tool("edit_cell", edit)
        assert not applied.isError, text(applied)
        assert "x = 100" in path.read_text(encoding="utf-8")
        value = await session.call_tool("execute_code", {"code": "print(y)"})
        assert "101" in text(value)
    assert (
        "joined" in (tmp_path / "err.txt").read_text()
        or "opened" in (tmp_path / "err.txt").read_text()
    )


async def test_stdio_asks_the_person_before_a_delete_that_breaks_cells(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    path = new_notebook(*TWO_CELLS)
    answers = [False, True]
    asked: list[str] = []

    async def person(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"approve": answers.pop(0)})

    argv = ["--url", shared_server.url, "--notebook", str(path)]
    async with stdio_session(
        argv, isolated_env, tmp_path / "err.txt", elicitation_callback=person
    ) as session:
        await cell_ids(session)
        inspected = await session.call_tool("inspect_graph", {"cell": "x"})
        assert not inspected.isError, text(inspected)
        before = path.read_bytes()
        delete = {"cell": "x", "acknowledge_descendants": True}

        declined = await session.call_tool("delete_cell", delete)
        assert declined.isError
        assert "not approved by a person" in text(declined)
        assert path.read_bytes() == before
        assert len(asked) == 1 and "delete_cell" in asked[0] and "'x'" in asked[0]

        approved = await session.call_tool("delete_cell", delete)
        assert not approved.isError, text(approved)
        assert len(asked) == 2
        assert "x = 1" not in path.read_text(encoding="utf-8")


async def test_stdio_without_elicitation_needs_acknowledgement_and_sends_images(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    path = new_notebook(*TWO_CELLS)
    argv = ["--url", shared_server.url, "--notebook", str(path)]
    async with stdio_session(argv, isolated_env, tmp_path / "err.txt") as session:
        await session.call_tool("inspect_graph", {"cell": "x"})
        before = path.read_bytes()
        refused = await session.call_tool("delete_cell", {"cell": "x"})
        assert refused.isError and "acknowledge_descendants" in text(refused)
        assert path.read_bytes() == before
        deleted = await session.call_tool(
            "delete_cell", {"cell": "x", "acknowledge_descendants": True}
        )
        assert not deleted.isError, text(deleted)
        assert "x = 1" not in path.read_text(encoding="utf-8")

        figure = await session.call_tool(
            "execute_code",
            {
                "code": "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot "
                "as plt\nfig, ax = plt.subplots(figsize=(2, 2))\nax.plot([3, 1, 2])\nfig"
            },
        )
        assert not figure.isError, text(figure)
        [image] = [c for c in figure.content if isinstance(c, types.ImageContent)]
        assert image.mimeType == "image/png"
        assert base64.b64decode(image.data).startswith(b"\x89PNG")


async def test_stdio_token_comes_from_the_environment_and_is_never_shown(
    start_server: Any, tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    from .conftest import write_notebook

    secret = "mcp-secret-7f3a9"
    path = write_notebook(tmp_path / "nb.py", *TWO_CELLS)
    server = start_server(path, token=secret)
    env = {**isolated_env, "MARIMO_TOKEN": secret}
    argv = ["--url", server.url, "--notebook", str(path)]
    async with stdio_session(argv, env, tmp_path / "err.txt") as session:
        result = await session.call_tool(
            "execute_code",
            {"code": "import os\nprint(os.environ.get('MARIMO_TOKEN'), 'ran')"},
        )
        assert not result.isError, text(result)
        assert "ran" in text(result) and secret not in text(result)
    assert secret not in (tmp_path / "err.txt").read_text()


def test_stdio_stdout_carries_only_protocol_messages(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """Nobody has the notebook open: the command starts marimo, then stops it at EOF.

    An HTTP token left in the environment is not handed down to that kernel either.
    """
    from .conftest import write_notebook

    path = write_notebook(tmp_path / "nb.py", *TWO_CELLS)
    process = subprocess.Popen(
        [CLI, "mcp", "--notebook", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**isolated_env, TOKEN_ENV: MCP_TOKEN},
    )
    assert process.stdin is not None and process.stdout is not None

    def send(message: dict[str, Any]) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
        process.stdin.flush()

    def reply() -> dict[str, Any]:
        assert process.stdout is not None
        return dict(json.loads(process.stdout.readline()))

    try:
        send(
            {
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": types.LATEST_PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"},
                },
            }
        )
        assert reply()["result"]["serverInfo"]["name"] == "marimo-pair"
        send({"method": "notifications/initialized"})
        send({"id": 2, "method": "tools/call", "params": {"name": "get_errors", "arguments": {}}})
        assert reply()["id"] == 2
        code = f"import os\nprint(repr(os.environ.get({TOKEN_ENV!r})), 'ran')"
        send(
            {
                "id": 3,
                "method": "tools/call",
                "params": {"name": "execute_code", "arguments": {"code": code}},
            }
        )
        answer = reply()
        assert answer["id"] == 3 and "None ran" in json.dumps(answer), answer
        process.stdin.close()  # the client goes: the server ends, and stops marimo
        assert process.stderr is not None
        rest, errors = process.stdout.read(), process.stderr.read()
        process.wait(60)
    finally:
        if process.poll() is None:
            # SIGTERM first: the command then stops the marimo it started (a kill orphans it).
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    for line in rest.decode().splitlines():
        assert json.loads(line)["jsonrpc"] == "2.0", line
    log = errors.decode()
    assert process.returncode == 0, log
    [url] = re.findall(r"started marimo at (\S+)", log)
    with pytest.raises(httpx.TransportError):  # the server it started is stopped
        httpx.get(f"{url}/health", timeout=2)


def test_take_stdout_sends_everything_else_to_stderr() -> None:
    """The one thing that keeps stray output off the protocol stream, shown failing over."""
    code = (
        "import os, sys\n"
        "from marimo_pair_tools.mcp_server import take_stdout\n"
        "protocol = take_stdout()\n"
        "print('a print')\n"
        "os.system('echo a child process')\n"
        "protocol.write(b'PROTOCOL\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.stdout == b"PROTOCOL\n"
    assert b"a print" in done.stderr and b"a child process" in done.stderr


# -------------------------------------------------------------------------- HTTP


async def test_http_gives_each_client_session_its_own_ledger(
    shared_server: MarimoServer, new_notebook: Any, http_env: dict[str, str]
) -> None:
    path = new_notebook(*TWO_CELLS)
    port = free_port()
    argv = ["--url", shared_server.url, "--notebook", str(path), "--mcp-port", str(port)]
    with http_server(argv, http_env) as (url, _):
        assert url == f"http://127.0.0.1:{port}/mcp"
        async with http_session(url) as one, http_session(url) as other:
            assert len((await one.list_tools()).tools) == len(TOOL_ANNOTATIONS)
            before = path.read_bytes()
            refused = await one.call_tool("edit_cell", {"cell": "x", "code": "x = 5"})
            assert refused.isError and "read_cell" in text(refused)
            refused = await one.call_tool("delete_cell", {"cell": "y"})
            assert refused.isError and "inspect_graph" in text(refused)
            assert path.read_bytes() == before

            assert not (await one.call_tool("read_cell", {"cell": "x"})).isError
            # Another client's read lets nobody else edit.
            refused = await other.call_tool("edit_cell", {"cell": "x", "code": "x = 6"})
            assert refused.isError
            assert path.read_bytes() == before
            applied = await one.call_tool("edit_cell", {"cell": "x", "code": "x = 5"})
            assert not applied.isError, text(applied)
            assert "x = 5" in path.read_text(encoding="utf-8")


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": types.LATEST_PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def test_http_refuses_requests_for_another_host(
    shared_server: MarimoServer, new_notebook: Any, http_env: dict[str, str]
) -> None:
    """DNS rebinding: a web page whose name resolves to 127.0.0.1 gets nothing, token or not."""
    path = new_notebook(*TWO_CELLS)
    argv = ["--url", shared_server.url, "--notebook", str(path)]
    headers = {**ACCEPT, **bearer(MCP_TOKEN)}
    with http_server(argv, http_env) as (url, _):
        evil = httpx.post(url, json=INITIALIZE, headers={**headers, "Host": "evil.example"})
        assert evil.status_code in {400, 403, 421}
        page = httpx.post(
            url, json=INITIALIZE, headers={**headers, "Origin": "http://evil.example"}
        )
        assert page.status_code in {400, 403}
        ours = httpx.post(url, json=INITIALIZE, headers=headers)
        assert ours.status_code == 200


def test_http_listens_on_loopback_only(tmp_path: Path, http_env: dict[str, str]) -> None:
    done = subprocess.run(
        [CLI, "mcp", "--transport", "http", "--mcp-host", "0.0.0.0", "--notebook", "x.py"],
        capture_output=True,
        text=True,
        env=http_env,
        timeout=60,
    )
    assert done.returncode == 1
    assert "not a loopback address" in done.stderr
    assert MCP_TOKEN not in done.stderr + done.stdout


# ---------------------------------------------------------------- HTTP: the token


async def test_http_without_the_right_token_is_401_and_runs_nothing(
    shared_server: MarimoServer, new_notebook: Any, http_env: dict[str, str], tmp_path: Path
) -> None:
    """A stranger who knows the port, and even a live session's id, gets 401 and no tool runs.

    The very request that is refused is then sent with the token and runs: the
    refusals are the token's doing, not a malformed request's.
    """
    path = new_notebook(*TWO_CELLS)
    marker = tmp_path / "ran.txt"
    code = f"open({str(marker)!r}, 'w').write('ran')"
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "execute_code", "arguments": {"code": code}},
    }
    argv = ["--url", shared_server.url, "--notebook", str(path)]
    wrong = [
        {},  # no header
        {"Authorization": "Bearer"},  # the scheme alone
        {"Authorization": f"Basic {base64.b64encode(f'x:{MCP_TOKEN}'.encode()).decode()}"},
        bearer("not-the-token-at-all-0123456789"),
        bearer(MCP_TOKEN[:-1]),
        bearer(MCP_TOKEN + "x"),
        bearer(MCP_TOKEN.upper()),
    ]
    with http_server(argv, http_env) as (url, lines):
        async with (
            httpx.AsyncClient(headers=bearer(MCP_TOKEN), timeout=httpx.Timeout(120)) as http,
            streamable_http_client(url, http_client=http) as (read, write, session_id),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            ours = session_id()
            assert ours
            headers = {
                **ACCEPT,
                "Content-Type": "application/json",
                "Mcp-Session-Id": ours,
                "Mcp-Protocol-Version": types.LATEST_PROTOCOL_VERSION,
            }
            async with httpx.AsyncClient(timeout=httpx.Timeout(120)) as stranger:
                for auth in wrong:
                    for refused in (
                        await stranger.post(url, json=call, headers={**headers, **auth}),
                        await stranger.post(url, json=INITIALIZE, headers={**ACCEPT, **auth}),
                        await stranger.get(url, headers={**headers, **auth}),
                        # Ending someone else's session is refused too.
                        await stranger.delete(url, headers={**headers, **auth}),
                        await stranger.get(url.replace("/mcp", "/"), headers=auth),
                    ):
                        assert refused.status_code == 401, (auth, refused.text)
                        challenge = refused.headers["www-authenticate"]
                        assert challenge.startswith("Bearer "), challenge
                        # RFC 6750: a token that was sent but is wrong is "invalid_token".
                        sent = auth.get("Authorization", "").startswith("Bearer ")
                        assert ('error="invalid_token"' in challenge) is sent, (auth, challenge)
                        assert TOKEN_ENV in refused.text
                        assert MCP_TOKEN not in refused.text + str(refused.headers)
                # The session lives on, and the refused calls never ran: calls on one
                # notebook queue, so any that had reached the kernel would be done by now.
                after = await session.call_tool("execute_code", {"code": "print('still here')"})
                assert "still here" in text(after)
                assert not marker.exists()

                ran = await stranger.post(url, json=call, headers={**headers, **bearer(MCP_TOKEN)})
                assert ran.status_code == 200, ran.text
                assert marker.read_text() == "ran"
    assert MCP_TOKEN not in "".join(lines)


def status_of(error: BaseException) -> int | None:
    """The HTTP status an MCP client failed with, wherever the task groups put it."""
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code
    for inner in getattr(error, "exceptions", ()):
        found = status_of(inner)
        if found is not None:
            return found
    return None


async def test_http_sdk_client_needs_the_token(
    shared_server: MarimoServer, new_notebook: Any, http_env: dict[str, str]
) -> None:
    import anyio

    path = new_notebook(*TWO_CELLS)
    argv = ["--url", shared_server.url, "--notebook", str(path)]
    with http_server(argv, http_env) as (url, _):
        for token in (None, "wrong-token-0123456789abcdef", MCP_TOKEN + "0"):
            with pytest.raises(BaseException) as failed, anyio.fail_after(60):
                async with http_session(url, token=token) as session:
                    await session.list_tools()
            # The SDK wraps it in exception groups; a timeout or another failure has none.
            assert status_of(failed.value) == 401, repr(failed.value)
        async with http_session(url, token=MCP_TOKEN) as session:
            assert len((await session.list_tools()).tools) == len(TOOL_ANNOTATIONS)


@pytest.mark.parametrize(
    ("value", "extra", "expected"),
    [
        (None, [], "set MARIMO_PAIR_MCP_TOKEN"),
        ("", [], "set MARIMO_PAIR_MCP_TOKEN"),
        ("short-secret-1", [], "at least 16"),
        ("a token with spaces in it", [], "without spaces"),
        ("tøken-with-non-ascii-chars", [], "printable ASCII"),
        (MCP_TOKEN, ["--no-auth"], "Both MARIMO_PAIR_MCP_TOKEN and --no-auth"),
    ],
    # Fixed ids: the token is random per process, and pytest-xdist workers must collect
    # the same test names.
    ids=["unset", "empty", "short", "spaces", "non-ascii", "with-no-auth"],
)
def test_http_refuses_to_start_without_a_usable_token(
    tmp_path: Path, isolated_env: dict[str, str], value: str | None, extra: list[str], expected: str
) -> None:
    """Before anything starts: no marimo server, no port. The message never holds the value."""
    from .conftest import write_notebook

    path = write_notebook(tmp_path / "nb.py", *TWO_CELLS)
    env = dict(isolated_env)
    if value is not None:
        env[TOKEN_ENV] = value
    done = subprocess.run(
        [CLI, "mcp", "--transport", "http", *extra, "--notebook", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert expected in done.stderr
    if value is None or value == "":
        assert "--no-auth" in done.stderr and "secrets.token_urlsafe" in done.stderr
    if value:
        assert value not in done.stderr + done.stdout
    assert "started marimo" not in done.stderr
    assert not (tmp_path / "mcp-state").exists()  # no marimo registered a server


def test_no_auth_is_for_http_only(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    done = subprocess.run(
        [CLI, "mcp", "--no-auth", "--notebook", str(tmp_path / "nb.py")],
        capture_output=True,
        text=True,
        env=isolated_env,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--no-auth is for --transport http" in done.stderr
    # What --help says of it: what it opens, and where the token comes from instead.
    sub = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    shown = " ".join(sub.choices["mcp"].format_help().split())
    assert "--no-auth HTTP: serve without a token" in shown
    assert f"Bearer ${TOKEN_ENV}" in shown and "never from a flag" in shown
    assert "anyone on this machine who can reach the port" in shown


async def test_http_no_auth_serves_anyone_and_says_so(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str]
) -> None:
    path = new_notebook(*TWO_CELLS)
    argv = ["--url", shared_server.url, "--notebook", str(path), "--no-auth"]
    with http_server(argv, isolated_env) as (url, lines):
        assert "NO AUTHENTICATION (--no-auth)" in "".join(lines)
        async with http_session(url, token=None) as session:
            listing = await session.call_tool("read_notebook", {})
            assert not listing.isError, text(listing)


async def test_http_token_is_never_shown_nor_inherited(
    tmp_path: Path, http_env: dict[str, str]
) -> None:
    """The command starts marimo itself: its kernel must not find the token in its environment.

    Code the model runs there could print it otherwise. And nothing the server
    writes (stdout, stderr, logs), wrong tokens sent to it included, holds it.
    """
    from .conftest import write_notebook

    path = write_notebook(tmp_path / "nb.py", *TWO_CELLS)
    with http_server(["--notebook", str(path)], http_env) as (url, lines):
        assert "bearer token required" in "".join(lines)
        # The marimo it started takes no token: a second door, and the command says so.
        assert "takes no token" in "".join(lines)
        async with httpx.AsyncClient() as stranger:
            near = await stranger.post(
                url, json=INITIALIZE, headers={**ACCEPT, **bearer(MCP_TOKEN + "!")}
            )
            assert near.status_code == 401
        async with http_session(url) as session:
            result = await session.call_tool(
                "execute_code",
                {"code": f"import os\nprint(repr(os.environ.get({TOKEN_ENV!r})), 'ran')"},
            )
            assert not result.isError, text(result)
            assert "None ran" in text(result)
            broken = await session.call_tool("execute_code", {"code": "raise ValueError('boom')"})
            assert "ValueError: boom" in text(broken)
            for shown in (result, broken):
                assert MCP_TOKEN not in shown.model_dump_json()
    output = "".join(lines)
    assert MCP_TOKEN not in output
    [started] = re.findall(r"started marimo at (\S+)", output)
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.TransportError):  # what the command started, it stopped
            await client.get(f"{started}/health", timeout=2)


# ------------------------------------------------------------------- no server


def test_every_tool_is_annotated_as_the_readme_describes_it() -> None:
    """README's tools table: side effects "none" is exactly `readOnlyHint`, and "runs code"
    is exactly `RUNS_CODE`, whose tools are all destructive and open-world."""
    server = McpPairServer(MarimoPairToolkit.from_clients(None))
    rows = re.findall(r"^\| `(\w+)` \| .* \| ([^|]+) \|$", README.read_text(), re.MULTILINE)
    effects = {name: effect.strip() for name, effect in rows}
    assert {t.name for t in server.definitions} == set(effects)
    assert {n for n, e in effects.items() if "runs code" in e} == RUNS_CODE
    for tool in server.definitions:
        hints = tool.annotations
        assert hints is not None, tool.name
        assert hints.readOnlyHint is (effects[tool.name] == "none"), tool.name
        if not hints.readOnlyHint:
            assert hints.destructiveHint is not None, tool.name
            assert hints.idempotentHint is not None, tool.name
        if tool.name in RUNS_CODE:
            assert hints.destructiveHint is True and hints.openWorldHint is True, tool.name
            assert hints.idempotentHint is False, tool.name


def test_tool_messages_become_mcp_results() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    ok = tool_result(
        ToolMessage(
            content=[
                {"type": "text", "text": "a figure"},
                {"type": "image", "base64": png, "mime_type": "image/png"},
            ],
            tool_call_id="1",
        )
    )
    assert not ok.isError
    assert [c.type for c in ok.content] == ["text", "image"]
    error = tool_result(ToolMessage(content="refused", tool_call_id="1", status="error"))
    assert error.isError and text(error) == "refused"


def test_readme_client_configs_are_commands_we_accept() -> None:
    """Every `marimo-pair` server in README's MCP section parses, and carries no token."""
    section = readme_mcp_section()
    blocks = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    servers = [
        server
        for block in blocks
        for server in json.loads(block)["mcpServers"].values()
        if server.get("command") == "marimo-pair"
    ]
    assert len(servers) == 2
    for server in servers:
        argv = [a.replace("${workspaceFolder}", "/project") for a in server["args"]]
        args = _build_parser().parse_args(argv)
        assert args.command == "mcp" and args.notebook.endswith("analysis.py")
        assert args.transport == "stdio"
        assert not any("token" in a.lower() for a in argv)
        assert set(server["env"]) == {"MARIMO_TOKEN"}


def readme_mcp_section() -> str:
    return README.read_text().split("## MCP clients", 1)[1].split("\n## ", 1)[0]


def expand_like_the_clients(value: str, env: dict[str, str]) -> str:
    """``${VAR}``/``${VAR:-default}`` (Claude Code) and ``${env:VAR}`` (Cursor), as documented.

    An unset variable stays as written, as Claude Code leaves it.
    """

    def one(found: re.Match[str]) -> str:
        name, default = found.group(1), found.group(2)
        return env.get(name) or (default if default is not None else found.group(0))

    return re.sub(r"\$\{(?:env:)?(\w+)(?::-([^}]*))?\}", one, value)


async def test_readme_http_configs_authenticate_with_the_token_from_the_environment(
    shared_server: MarimoServer, new_notebook: Any, http_env: dict[str, str]
) -> None:
    """README's HTTP client configs, expanded as their clients document, reach a real server.

    The token is in no file: without the variable the same configs get 401.
    """
    import anyio

    section = readme_mcp_section()
    [command] = re.findall(r"^marimo-pair (mcp --transport http .*)$", section, re.MULTILINE)
    args = _build_parser().parse_args(command.split())
    assert args.transport == "http" and not args.no_auth
    assert TOKEN_ENV in section and "--no-auth" in section
    blocks = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    configs = [
        server
        for block in blocks
        for server in json.loads(block)["mcpServers"].values()
        if "url" in server
    ]
    assert len(configs) == 2
    path = new_notebook(*TWO_CELLS)
    argv = ["--url", shared_server.url, "--notebook", str(path)]
    with http_server(argv, http_env) as (url, _):
        for config in configs:
            assert config.get("type", "http") == "http"
            assert config["url"].endswith("/mcp")
            [(name, written)] = config["headers"].items()
            assert name == "Authorization" and TOKEN_ENV in written
            assert len(written) - len(TOKEN_ENV) < 16  # no literal token beside the name
            header = expand_like_the_clients(written, http_env)
            assert header == f"Bearer {MCP_TOKEN}"
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(120), headers={name: header}) as http,
                streamable_http_client(url, http_client=http) as (read, write, _),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                assert len((await session.list_tools()).tools) == len(TOOL_ANNOTATIONS)
            unset = expand_like_the_clients(written, {})
            with pytest.raises(BaseException) as failed, anyio.fail_after(60):
                async with (
                    httpx.AsyncClient(timeout=httpx.Timeout(120), headers={name: unset}) as http,
                    streamable_http_client(url, http_client=http) as (read, write, _),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
            assert status_of(failed.value) == 401, repr(failed.value)


async def test_no_approve_deletes_skips_the_question_not_the_acknowledgement(
    shared_server: MarimoServer, new_notebook: Any, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    path = new_notebook(*TWO_CELLS)
    asked: list[str] = []

    async def person(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="decline")

    argv = ["--url", shared_server.url, "--notebook", str(path), "--no-approve-deletes"]
    async with stdio_session(
        argv, isolated_env, tmp_path / "err.txt", elicitation_callback=person
    ) as session:
        await session.call_tool("inspect_graph", {"cell": "x"})
        before = path.read_bytes()
        refused = await session.call_tool("delete_cell", {"cell": "x"})
        assert refused.isError and "acknowledge_descendants" in text(refused)
        assert path.read_bytes() == before
        deleted = await session.call_tool(
            "delete_cell", {"cell": "x", "acknowledge_descendants": True}
        )
        assert not deleted.isError, text(deleted)
    assert asked == []


async def test_http_on_a_token_marimo_server_has_no_open_door_to_warn_of(
    start_server: Any, tmp_path: Path, http_env: dict[str, str]
) -> None:
    from .conftest import write_notebook

    secret = f"marimo-{secrets.token_urlsafe(12)}"
    path = write_notebook(tmp_path / "nb.py", *TWO_CELLS)
    server = start_server(path, token=secret)
    env = {**http_env, "MARIMO_TOKEN": secret}
    with http_server(["--url", server.url, "--notebook", str(path)], env) as (url, lines):
        async with http_session(url) as session:
            result = await session.call_tool("execute_code", {"code": "print(6 * 7)"})
            assert "42" in text(result), text(result)
    output = "".join(lines)
    assert "joined" in output or "opened" in output
    assert "takes no token" not in output
    assert secret not in output and MCP_TOKEN not in output


async def test_bearer_gate_keeps_no_token_and_passes_none_on() -> None:
    """What the MCP app behind the gate is handed: never the Authorization header.

    A recording ASGI app stands in for the MCP app here: the real one keeps the
    request's headers to itself, so nothing else can show what reached it.
    """
    from marimo_pair_tools._mcp_auth import BearerGate

    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gate = BearerGate(app, MCP_TOKEN)
    assert MCP_TOKEN not in repr(gate) + repr(vars(gate))
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        assert (await client.get("/mcp", headers=bearer(MCP_TOKEN))).text == "ok"
        assert (
            await client.get("/mcp", headers={"authorization": f"bearer {MCP_TOKEN}"})
        ).text == "ok"
        assert (await client.get("/mcp")).status_code == 401
        # Two Authorization headers, one of them right: ambiguous, so refused.
        twice = [("Authorization", f"Bearer {MCP_TOKEN}"), ("Authorization", "Bearer other")]
        refused = await client.get("/mcp", headers=twice)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert len(seen) == 2
    for scope in seen:
        assert not [k for k, _ in scope["headers"] if k.lower() == b"authorization"]
        assert MCP_TOKEN.encode() not in repr(scope).encode()
