"""MarimoClient / AsyncMarimoClient against real marimo servers."""

from __future__ import annotations

import contextlib
import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from marimo_pair_tools import AsyncMarimoClient, MarimoClient, MarimoServer
from marimo_pair_tools.errors import (
    AmbiguousSessionError,
    AuthenticationError,
    ConfigurationError,
    ExecuteTimeoutError,
    OutcomeUnknownError,
    ServerUnavailableError,
    SessionNotFoundError,
)

from .conftest import write_notebook


def test_execute_success_streams_in_order(client: MarimoClient, attached: Any) -> None:
    path = attached(["x = 41"])
    chunks: list[tuple[str, str]] = []
    code = "import sys\nprint('a', flush=True)\nprint('b', file=sys.stderr, flush=True)\nprint('c')\n6 * 7"
    result = client.execute(code, notebook=str(path), on_chunk=lambda ch, t: chunks.append((ch, t)))
    assert result.success
    assert result.stdout == "a\nc\n"
    assert result.stderr == "b\n"
    assert result.output is not None and "42" in result.output.data
    joined = "".join(t for _, t in chunks)
    assert joined.index("a") < joined.index("b") < joined.index("c")


def test_execute_error_has_traceback(client: MarimoClient, attached: Any) -> None:
    path = attached(["y = 1"])
    result = client.execute("1 / 0", notebook=str(path))
    assert not result.success
    assert "ZeroDivisionError" in result.stderr
    assert "Traceback" in result.stderr


def test_two_notebooks_on_one_directory_server(
    client: MarimoClient, attached: Any, shared_dir: Path
) -> None:
    first = attached(["a = 1"])
    second = attached(["b = 2"])
    assert client.resolve_session(str(first)).path == str(first)
    assert client.resolve_session(first.name).path == str(first)  # bare file name
    assert client.resolve_session(str(second)).path == str(second)
    with pytest.raises(AmbiguousSessionError, match=first.name):
        client.resolve_session(None)
    with pytest.raises(SessionNotFoundError, match="nope.py"):
        client.resolve_session("nope.py")
    out = client.execute("import marimo as mo; print(mo.notebook_location())", notebook=str(second))
    assert second.parent.name in out.stdout


def test_session_by_exact_id(client: MarimoClient, attached: Any) -> None:
    path = attached(["q = 1"])
    session = client.resolve_session(str(path))
    assert client.resolve_session(session_id=session.key).path == str(path)
    assert session.stable_id is not None
    assert client.resolve_session(session_id=session.stable_id).key == session.key


def test_timeout_interrupts_and_kernel_recovers(client: MarimoClient, attached: Any) -> None:
    path = attached(["z = 1"])
    with pytest.raises(ExecuteTimeoutError, match="may have partly run") as info:
        client.execute("while True: pass", notebook=str(path), timeout=1.5)
    assert info.value.kernel_responsive is True
    assert client.execute("print('alive')", notebook=str(path)).stdout == "alive\n"


def test_fifty_megabytes_printed_stay_bounded(client: MarimoClient, attached: Any) -> None:
    path = attached(["w = 1"])
    small = MarimoClient(base_url=client.base_url, max_output_chars=10_000)
    code = "line = 'x' * 999\nfor _ in range(50_000):\n    print(line)"
    tracemalloc.start()
    try:
        result = small.execute(code, notebook=str(path), timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        small.close()
    assert result.success
    assert result.stdout_cut > 49_000_000
    assert len(result.stdout) < 12_000
    assert "characters of stdout cut" in result.stdout
    assert peak < 30_000_000, f"client memory peaked at {peak / 1e6:.1f} MB"


def test_non_local_url_refused() -> None:
    with pytest.raises(ConfigurationError, match="allow_remote=True"):
        MarimoClient(base_url="http://10.1.2.3:2718")
    with pytest.raises(ConfigurationError, match="non-local"):
        AsyncMarimoClient(base_url="http://example.com")
    remote = MarimoClient(base_url="http://example.com:2718", allow_remote=True)
    assert remote.base_url == "http://example.com:2718"
    remote.close()


def _cut_stream_client(cut_after: int) -> tuple[MarimoClient, list[str]]:
    """A client whose server answers the first ``cut_after`` executes, then cuts streams.

    A real server cannot be made to drop the stream on demand between two events;
    a fake transport stands in for that one case.
    """
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/version":
            return httpx.Response(200, text="0.25.2")
        if request.url.path == "/api/sessions":
            return httpx.Response(200, json={"s": {"session_id": "sess-1", "path": "/n.py"}})
        if request.url.path == "/api/kernel/status":
            return httpx.Response(200, json={"state": "idle"})
        sent.append(json.loads(request.content)["code"])
        events = 'event: stdout\ndata: {"data": "half"}\n\n'
        if len(sent) <= cut_after:
            events += 'event: done\ndata: {"success": true}\n\n'
        return httpx.Response(200, text=events, headers={"content-type": "text/event-stream"})

    client = MarimoClient(base_url="http://127.0.0.1:9", transport=httpx.MockTransport(handler))
    return client, sent


def test_stream_cut_before_done_is_outcome_unknown() -> None:
    client, sent = _cut_stream_client(cut_after=0)
    with client, pytest.raises(OutcomeUnknownError, match="Inspect the notebook state"):
        client.execute("x = 1")
    # The input() guard's installer rode in front of the user's code, on its line. After
    # the cut, the idle status was confirmed with one trivial request (`None`).
    assert len(sent) == 2 and sent[0].endswith("; x = 1") and sent[1] == "None", sent


# A compound statement first: the guard cannot share its line, so it is sent alone.
LOOP = "for i in range(2):\n    x = i"


def test_stream_cut_of_the_users_code_is_outcome_unknown() -> None:
    client, sent = _cut_stream_client(cut_after=1)  # the separate guard request completes
    with client, pytest.raises(OutcomeUnknownError, match="Inspect the notebook state"):
        client.execute(LOOP)
    assert sent[-2:] == [LOOP, "None"], "the user's code, then the probe after its cut"


def test_stream_cut_before_the_code_was_sent_says_it_did_not_run() -> None:
    client, sent = _cut_stream_client(cut_after=0)  # the setup request itself is cut
    with client, pytest.raises(ServerUnavailableError, match="your code did not run"):
        client.execute(LOOP)
    assert LOOP not in sent


async def test_async_client_execute_and_timeout(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    path = new_notebook(["v = 5"])
    async with shared_server.async_client() as aclient:
        await aclient.attach(str(path))
        result = await aclient.execute("print(1 + 1)", notebook=str(path))
        assert result.stdout == "2\n"
        with pytest.raises(ExecuteTimeoutError):
            await aclient.execute(
                "import time\nwhile True: time.sleep(0.01)", notebook=str(path), timeout=1
            )
        assert (await aclient.execute("print('ok')", notebook=str(path))).stdout == "ok\n"


def test_token_server(start_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-token-123"
    path = write_notebook(tmp_path / "tok.py", ["t = 1"])
    server: MarimoServer = start_server(path, token=secret)
    assert secret not in " ".join(server.command())
    with open(f"/proc/{server.pid}/cmdline", "rb") as f:
        assert secret.encode() not in f.read()

    monkeypatch.delenv("MARIMO_TOKEN", raising=False)
    with MarimoClient(base_url=server.url) as missing, pytest.raises(AuthenticationError) as info:
        missing.sessions()
    assert "MARIMO_TOKEN" in str(info.value)

    with (
        MarimoClient(base_url=server.url, token="wrong") as wrong,
        pytest.raises(AuthenticationError) as info,
    ):
        wrong.sessions()
    assert "wrong" not in str(info.value)

    monkeypatch.setenv("MARIMO_TOKEN", secret)
    with MarimoClient(base_url=server.url) as right:
        assert secret not in repr(right)
        right.attach()
        result = right.execute(
            "from marimo._runtime.context import get_context\nprint(get_context().request.headers)"
        )
        # The kernel sees our Authorization header; it must not come back verbatim.
        assert secret not in result.stdout + result.stderr


def test_version_check(start_server: Any, tmp_path: Path) -> None:
    from marimo_pair_tools._versions import check_server_version
    from marimo_pair_tools.errors import UnsupportedServerError

    with pytest.raises(UnsupportedServerError, match=r"0\.20\.0"):
        check_server_version("0.20.0")
    check_server_version("0.25.2")
    server: MarimoServer = start_server(write_notebook(tmp_path / "v.py", ["a = 1"]))
    with server.client() as c:
        assert c.version().startswith("0.")


def test_env_token_never_in_reprs() -> None:
    os.environ["MARIMO_TOKEN"] = "zzz-secret"
    try:
        c = MarimoClient(base_url="http://127.0.0.1:1")
        assert "zzz-secret" not in repr(c) and "zzz-secret" not in str(vars(c).get("base_url"))
        c.close()
    finally:
        del os.environ["MARIMO_TOKEN"]


# ------------------------------------------------------------ the input() guard, once per kernel


@contextlib.contextmanager
def _recording_client(server: MarimoServer) -> Iterator[tuple[MarimoClient, list[str]]]:
    """A new client (as a fresh process would make) that records every request it sends."""
    sent: list[str] = []
    record = [lambda r: sent.append(f"{r.method} {r.url.path}")]
    with httpx.Client(event_hooks={"request": record}) as http:
        with MarimoClient(base_url=server.url, http_client=http, check_version=False) as client:
            yield client, sent


def test_a_known_session_costs_the_busy_check_and_the_execute(
    client: MarimoClient, attached: Any, shared_server: MarimoServer
) -> None:
    path = attached(["k = 1"])
    session = client.resolve_session(str(path))
    with _recording_client(shared_server) as (fresh, sent):
        result = fresh.execute("print(41 + 1)", session_id=session.key)
        assert result.stdout == "42\n"
        # The seed's script sends one POST; the extra GET is the busy check that keeps a
        # timeout of ours from interrupting a person's running cell.
        assert sent == ["GET /api/kernel/status", "POST /api/kernel/execute"]
        sent.clear()
        # Code whose first statement is compound cannot carry the guard on its line: the
        # guard goes alone, once per session for this client.
        fresh.execute("for i in range(1):\n    pass", session_id=session.key)
        assert sent == ["GET /api/kernel/status", "POST /api/kernel/execute"], "guarded already"
    with _recording_client(shared_server) as (other, sent):
        other.execute("for i in range(1):\n    pass", session_id=session.key)
        assert sent.count("POST /api/kernel/execute") == 2


def test_the_guard_in_front_keeps_line_numbers_and_works_at_once(
    shared_server: MarimoServer, attached: Any
) -> None:
    path = attached(["n = 1"])
    with _recording_client(shared_server) as (fresh, _):
        # The first request of this client on a fresh kernel carries the guard's installer.
        first = fresh.execute("a = 1\nb = 2\nraise ValueError('three')", notebook=str(path))
        assert not first.success
        assert "line 3, in <module>\n    raise ValueError" in first.stderr, first.stderr
        asked = fresh.execute("x = input('name? ')", notebook=str(path), timeout=30)
        assert "input() cannot be answered" in asked.stderr


@pytest.mark.parametrize(
    ("code", "folds"),
    [
        ("x = 1", "; "),
        ("# a comment\nx = 1", "  "),
        ("\n\nx = 1", "  "),
        ("await asyncio.sleep(0)", "; "),
        ("@decorator\ndef f():\n    pass", None),
        ("def f():\n    pass", None),
        ("with open('f') as f:\n    pass", None),
        ("from __future__ import annotations\nx = 1", None),
        ("x = (\n1)", "; "),
        ("  indented = 1", None),
        ("x = ", None),
        ("", "  "),
    ],
)
def test_where_the_guard_can_ride(code: str, folds: str | None) -> None:
    from marimo_pair_tools.client import _INPUT_GUARD_PREFIX, _with_input_guard

    folded = _with_input_guard(code)
    if folds is None:
        assert folded is None
        return
    assert folded == _INPUT_GUARD_PREFIX + folds + code
    assert folded.count("\n") == code.count("\n")


def test_a_toolkit_works_across_event_loops(setup: Any) -> None:
    """`asyncio.run` twice on one toolkit: each loop gets a connection pool of its own."""
    import asyncio

    toolkit, _path, ids = setup(["loops = 1"])
    read = {t.name: t for t in toolkit.get_tools()}["read_cell"]

    async def once() -> str:
        return str(await read.ainvoke({"cell": ids[0]}))

    assert "loops = 1" in asyncio.run(once())
    assert "loops = 1" in asyncio.run(once())
    assert "loops = 1" in asyncio.run(once())
