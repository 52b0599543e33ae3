"""Attack 11c: a hostile review of issue 11's client half (causes, queue, secrets, text)
and its kernel/policy half, on real marimo servers.

Each test states the attack, what should happen and checks it. A test marked
``xfail(strict=True)`` is a break: it asserts the behaviour issue 11 promises, and that
behaviour does not happen today. Nothing here is a fake: the person is a second HTTP
client of the same server (marimo's own ``/api/kernel/run`` or a code-mode transaction),
faults are real signals to real processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from langchain_core.messages import ToolMessage

from marimo_pair_tools import MarimoClient, MarimoServer
from marimo_pair_tools.errors import (
    ExecuteTimeoutError,
    KernelBusyError,
    MarimoPairError,
    ServerUnavailableError,
)
from marimo_pair_tools.toolkit import MarimoPairToolkit

from .conftest import write_notebook
from .test_integrity import call, ok, person_edits, refused

SECRET = "tok-8e1d5b0c9f2a4e7d3c61"
RESTART_ADVICE = ("restart button", "Only a restart", "needs a restart", "MarimoClient.restart")


def _server_token(url: str, **kwargs: Any) -> str:
    match = re.search(r'data-token="([^"]*)"', httpx.get(url + "/", **kwargs).text)
    assert match is not None
    return match.group(1)


def _kernel_pid(client: MarimoClient, server: MarimoServer, notebook: str | None = None) -> int:
    pid = int(client.execute("import os; print(os.getpid())", notebook=notebook).stdout)
    assert server.pid is not None
    assert pid in {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
    return pid


# =============================================================== secrets


def test_a_persons_session_cookie_captured_by_their_cell_reaches_the_model(
    start_server: Any, tmp_path: Path
) -> None:
    """Attack: on a token server the person's browser authenticates with marimo's session
    cookie. A cell the *person* ran keeps the request it ran for (``mo.app_meta()``); the
    agent then looks at that variable. Expected: the cookie (a credential that
    authenticates on its own) never reaches the model. It is nothing our requests carry:
    it is recognised by its name (``session_<port>``) and shape (fixed in fix-11c)."""
    path = write_notebook(
        tmp_path / "cookie.py",
        ["import marimo as mo", "seen = None"],
    )
    server: MarimoServer = start_server(path, token=SECRET)
    person = httpx.Client(timeout=30)
    person.get(f"{server.url}/?access_token={SECRET}")  # the browser logs in with the URL
    cookie = next(v for k, v in person.cookies.items() if k.startswith("session_"))
    stop = threading.Event()

    def hold_tab() -> None:  # the person's tab: the session's editor, cookie only
        with (
            contextlib.suppress(httpx.HTTPError),
            person.stream(
                "GET", server.url + "/sse", params={"session_id": "persons-tab", "file": str(path)}
            ) as stream,
        ):
            for _ in stream.iter_raw():
                if stop.is_set():
                    return

    tab = threading.Thread(target=hold_tab, daemon=True)
    tab.start()
    toolkit = None
    try:
        deadline = time.monotonic() + 20
        while "persons-tab" not in person.get(server.url + "/api/sessions").text:
            assert time.monotonic() < deadline, "the person's tab never opened a session"
            time.sleep(0.2)
        toolkit = MarimoPairToolkit.from_url(f"{server.url}?access_token={SECRET}", attach=True)
        tools = {t.name: t for t in toolkit.get_tools()}
        ids = [c["id"] for c in ok(call(tools["read_notebook"])).artifact["cells"]]
        skew = _server_token(server.url, cookies=dict(person.cookies))
        response = person.post(
            server.url + "/api/kernel/run",
            json={
                "cellIds": ids,
                "codes": [
                    "import marimo as mo",
                    "seen = dict(mo.app_meta().request.cookies)\nseen",
                ],
            },
            headers={"Marimo-Session-Id": "persons-tab", "Marimo-Server-Token": skew},
        )
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 15
        while True:
            shown = ok(call(tools["get_variables"], names=["seen"]))
            if "session_" in shown.content or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert "session_" in shown.content, "the person's run did not record its request"
        payload = cookie.split(".")[0]
        assert payload not in shown.content, "the person's session cookie reached the model"
    finally:
        stop.set()
        if toolkit is not None:
            toolkit.close()
        person.close()


def test_a_callers_httpx_auth_flow_is_redacted(start_server: Any, tmp_path: Path) -> None:
    """Attack: the caller's own httpx client authenticates to a proxy with ``auth=``
    (httpx adds ``Authorization: Basic …`` per request, it is not in ``client.headers``).
    Kernel code prints the headers it sees. Expected: the credential is redacted."""
    path = write_notebook(tmp_path / "basic.py", ["a = 1"])
    server: MarimoServer = start_server(path)
    import base64

    password = "proxy-pass-51c0d9e2a7"
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    with (
        httpx.Client(auth=("alice", password)) as http,
        MarimoClient(base_url=server.url, http_client=http) as client,
    ):
        client.attach()
        result = client.execute(
            "from marimo._runtime.context import get_context\n"
            "print(dict(get_context().request.headers))"
        )
    assert "x-pair-client" in result.stdout
    assert basic not in result.stdout, "the caller's Basic credential reached the output"


def test_a_credential_header_without_a_telltale_name_is_redacted(
    start_server: Any, tmp_path: Path
) -> None:
    """Attack: a caller behind Cloudflare Access sends ``Cf-Access-Jwt-Assertion`` (a
    JWT that authenticates on its own; AWS ALB's ``X-Amzn-Oidc-Data`` is the same kind).
    Expected: "every credential-bearing header value" is redacted. (It knew only header
    names holding auth/cookie/token/…; now every header outside a short allow-list.)"""
    path = write_notebook(tmp_path / "cf.py", ["a = 1"])
    server: MarimoServer = start_server(path)
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJlbWFpbCI6ImFAYi5jIn0.c2lnbmF0dXJlLXZhbHVl"
    with (
        httpx.Client(headers={"Cf-Access-Jwt-Assertion": jwt}) as http,
        MarimoClient(base_url=server.url, http_client=http) as client,
    ):
        client.attach()
        result = client.execute(
            "from marimo._runtime.context import get_context\n"
            "print(dict(get_context().request.headers))"
        )
    assert "cf-access-jwt-assertion" in result.stdout
    assert jwt not in result.stdout, "the access JWT reached the output"


def test_a_remote_url_with_access_token_is_refused_without_echoing_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Attack: a non-loopback page URL with ``?access_token=`` (refused for consent), a
    ``#access_token=`` fragment, and a URL whose query also holds ``token=``. Expected:
    refused or accepted, the token never shows in the error, the repr or the logs."""
    from marimo_pair_tools.errors import ConfigurationError

    texts = []
    with pytest.raises(ConfigurationError) as remote:
        MarimoClient(base_url=f"http://203.0.113.9:2718/?access_token={SECRET}")
    texts.append(str(remote.value))
    with pytest.raises(ConfigurationError) as scheme:
        MarimoClient(base_url=f"ws://127.0.0.1:2718/#access_token={SECRET}")
    texts.append(str(scheme.value))
    with MarimoClient(base_url=f"http://127.0.0.1:9/?access_token={SECRET}") as client:
        texts.append(repr(client) + client.base_url)
        with pytest.raises(MarimoPairError) as down:
            client.sessions()
        texts.append(str(down.value))
    texts.append(caplog.text)
    for text in texts:
        assert SECRET not in text, text


def test_a_fragment_token_is_not_kept_in_the_base_url() -> None:
    """Attack: a URL copied with the token in the fragment (``#access_token=``, as some
    proxies rewrite it). Expected: the token is taken out or the URL refused; it must not
    stay in ``base_url``, which is shown in reprs and error messages."""
    with MarimoClient(base_url=f"http://127.0.0.1:9/#access_token={SECRET}") as client:
        assert SECRET not in repr(client)
        with pytest.raises(MarimoPairError) as down:
            client.sessions()
        assert SECRET not in str(down.value)


# ======================================================= text that cannot be sent


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def test_kernel_output_with_a_lone_surrogate_reaches_the_model_as_sendable_text(
    tools_for: Any,
) -> None:
    """Attack: the arguments are clean, but what comes back holds a lone surrogate (code
    that prints ``'\\ud800'``, a person's variable holding half an emoji). The model API
    and the checkpoint must encode the tool result as UTF-8. Expected: every tool result
    is encodable text (the surrogate escaped or replaced)."""
    tools, _, ids = tools_for(["half = 'ok \\ud83d cut'"])
    ok(call(tools["apply_changes"], changes=[{"op": "run", "cell": ids[0]}]))
    printed = call(tools["execute_code"], code="print('a \\ud800 b')")
    shown = call(tools["get_variables"], names=["half"])
    bad = [m.name or "?" for m in (printed, shown) if _has_lone_surrogate(str(m.content))]
    assert not bad, f"tool results holding a lone surrogate: {bad}"


def test_an_agent_run_whose_tool_output_holds_a_lone_surrogate_goes_on(setup: Any) -> None:
    """Attack: the same through a checkpointed agent: a tool result with a lone surrogate
    is stored in the checkpoint and handed to the next model call. Expected: the run goes
    on and the checkpoint can be written as UTF-8 JSON (what a Postgres/SQLite saver or
    the model's HTTP request needs)."""
    import json

    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from marimo_pair_tools.agent import create_pair_agent
    from marimo_pair_tools.testing import ScriptedChatModel

    toolkit, _, _ = setup(["a = 1"])
    model = ScriptedChatModel(
        [[{"name": "execute_code", "args": {"code": "print('x \\udc80 y')"}}], "done"]
    )
    agent = create_pair_agent(model, toolkit, checkpointer=InMemorySaver())
    result = agent.invoke({"messages": [HumanMessage("go")]}, {"configurable": {"thread_id": "s"}})
    tool_text = [str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)]
    assert tool_text, "no tool ran"
    for text in tool_text:
        json.dumps(text, ensure_ascii=False).encode("utf-8")  # what a model request does


# ================================================================ the queue


def test_two_toolkits_spelling_the_server_differently_still_queue(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    """Attack: one process, two toolkits on one notebook (e.g. the graph and a helper
    agent), one built from ``127.0.0.1`` and one from ``localhost``. Their parallel calls
    must queue (README: "two toolkits on one notebook queue together"), not find each
    other busy and blame "another client". (The slot was keyed by the URL text; now by
    the normalised address.)"""
    path = str(new_notebook(["a = 1"]))
    port = httpx.URL(shared_server.url).port
    one = MarimoPairToolkit.from_url(f"http://127.0.0.1:{port}", notebook=path, attach=True)
    two = MarimoPairToolkit.from_url(f"http://localhost:{port}", notebook=path, attach=True)
    try:
        slow = {t.name: t for t in one.get_tools()}["execute_code"]
        quick = {t.name: t for t in two.get_tools()}["execute_code"]
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(call, slow, code="import time\ntime.sleep(2)\nprint('slow')")
            time.sleep(0.7)
            second = pool.submit(call, quick, code="print('quick')")
            results = [first.result(), second.result()]
        failed = [m.content for m in results if m.status == "error"]
        assert not failed, failed
    finally:
        one.close()
        two.close()


def test_interrupt_kernel_in_the_same_turn_is_not_queued_behind_the_run_it_stops(
    setup: Any,
) -> None:
    """Attack: a model turn with ``execute_code`` (a long run) and ``interrupt_kernel`` in
    parallel (or a second thread asked to stop the agent's run). Expected: the interrupt
    is not queued behind the very run it should stop; the run ends within seconds."""
    toolkit, _, _ = setup(["a = 1"])
    tools = {t.name: t for t in toolkit.get_tools()}
    call(tools["read_notebook"])
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        run = pool.submit(
            call, tools["execute_code"], code="import time\ntime.sleep(40)", timeout=60
        )
        time.sleep(1.5)
        stop = pool.submit(call, tools["interrupt_kernel"])
        stop_result = stop.result(timeout=60)
        run_result = run.result(timeout=90)
        elapsed = time.monotonic() - started
    assert elapsed < 20, (
        f"the interrupt waited for the run: {elapsed:.0f} s ({stop_result.content})"
    )
    assert "KeyboardInterrupt" in str(run_result.content) or "FAILED" in str(run_result.content)


def test_parallel_delete_and_edit_of_one_cell_apply_at_most_one(tools_for: Any) -> None:
    """Attack: one model turn deletes a cell and edits it, in parallel (ToolNode threads).
    Expected: the queue serialises them; the second sees the first's result and is refused
    by compare-and-swap (or cell gone). Never both, never an edit of a deleted cell."""
    tools, path, [cell] = tools_for(["draft = 1"])
    read = ok(call(tools["read_cell"], cell=cell))
    ok(call(tools["inspect_graph"], cell=cell))
    with ThreadPoolExecutor(2) as pool:
        delete = pool.submit(call, tools["delete_cell"], cell=cell)
        edit = pool.submit(
            call,
            tools["edit_cell"],
            cell=cell,
            code="draft = 2",
            expected_hash=read.artifact["code_hash"],
        )
        outcomes = [delete.result(), edit.result()]
    applied = [m for m in outcomes if m.status != "error"]
    assert len(applied) == 1, [m.content for m in outcomes]
    text = path.read_text()
    assert ("draft = 2" in text) != (applied[0].name == "delete_cell" or "draft" not in text)


# ================================================================ causes


def test_a_kernel_killed_while_idle_is_named_dead_at_the_next_tool_call(
    start_server: Any, tmp_path: Path
) -> None:
    """Attack: the kernel is killed between two tool calls (OOM killer, ``kill -9``).
    Expected: the next call says at once that the kernel process is dead and the
    variables are gone (not busy, not a timeout), and the file is unchanged."""
    path = write_notebook(tmp_path / "idle_dies.py", ["d = 1"])
    server: MarimoServer = start_server(path)
    toolkit = MarimoPairToolkit.from_server(server, notebook=str(path))
    try:
        tools = {t.name: t for t in toolkit.get_tools()}
        ok(call(tools["read_notebook"]))
        pid = _kernel_pid(toolkit.session.sync().client, server, str(path))
        os.kill(pid, signal.SIGKILL)
        time.sleep(1.0)
        before = path.read_bytes()
        started = time.monotonic()
        message = call(tools["create_cell"], code="e = 2")
        elapsed = time.monotonic() - started
        assert message.status == "error", message.content
        assert "stopped" in message.content or "dead" in message.content, message.content
        assert elapsed < 10, f"named after {elapsed:.1f} s"
        assert path.read_bytes() == before
    finally:
        toolkit.close()


def test_a_frozen_kernel_process_is_not_reported_as_answering(
    start_server: Any, tmp_path: Path
) -> None:
    """Attack: the kernel process (not the server) is SIGSTOPped while idle; the agent then
    runs code with a short limit. Expected: an error that does not claim the kernel answers
    again, within a bounded time."""
    path = write_notebook(tmp_path / "frozen_kernel.py", ["f = 1"])
    server: MarimoServer = start_server(path)
    with server.client() as client:
        client.attach()
        pid = _kernel_pid(client, server)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(MarimoPairError) as info:
                client.execute("print('hi')", timeout=2)
            elapsed = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        text = str(info.value)
        assert "answers again" not in text and getattr(info.value, "cause", None) != (
            "kernel_answers"
        ), text
        assert elapsed < 40, f"{elapsed:.0f} s"


def test_a_server_frozen_before_the_call_is_named_promptly(
    start_server: Any, tmp_path: Path
) -> None:
    """Attack: the server is SIGSTOPped *before* a tool call (not after a timeout).
    Expected: a ``server_down``-style error naming the server within a bounded time
    (the probe wait), never a hang until the 120 s execute limit."""
    path = write_notebook(tmp_path / "frozen_server.py", ["s = 1"])
    server: MarimoServer = start_server(path)
    with server.client() as client:
        client.attach()
        client.execute("1")
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(MarimoPairError) as info:
                client.execute("print('hi')", timeout=120)
            elapsed = time.monotonic() - started
        finally:
            os.kill(server.pid, signal.SIGCONT)
    assert isinstance(info.value, ServerUnavailableError), repr(info.value)
    assert getattr(info.value, "cause", None) == "server_down", repr(info.value)
    assert "start it again" in str(info.value) or "discover" in str(info.value), str(info.value)
    assert elapsed < 45, f"named after {elapsed:.0f} s"


def test_code_that_needs_two_interrupts_then_cleans_up_is_not_called_wedged(
    client: MarimoClient, attached: Any
) -> None:
    """Attack: code that handles KeyboardInterrupt twice (a retry wrapper, then a cleanup
    of some seconds) and then ends by itself. Expected: no "only a restart frees it"
    advice for a kernel that answers again seconds later; a restart would lose every
    variable for nothing."""
    path = str(attached(["keep = 1"]))
    code = (
        "import time\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        time.sleep(60)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
        "time.sleep(6)\n"
    )
    with pytest.raises(ExecuteTimeoutError) as info:
        client.execute(code, notebook=path, timeout=1)
    text = str(info.value)
    deadline = time.monotonic() + 15
    answered = False
    while time.monotonic() < deadline and not answered:
        with contextlib.suppress(KernelBusyError):
            answered = client.execute("print('alive')", notebook=path).stdout == "alive\n"
        time.sleep(0.5)
    assert answered, "the kernel did not come back by itself"
    assert not any(advice in text for advice in RESTART_ADVICE), text


# ============================================================ documents and the disk


def test_file_rewritten_in_place_between_read_and_edit_is_not_overwritten(
    tools_for: Any,
) -> None:
    """Attack: the person saves the notebook from an editor that writes in place (VS Code,
    ``vim`` with backupcopy, ``cat > nb.py``): same inode, new content. Then the agent edits
    a cell it read before. Expected: the edit is refused ("read again") and the person's
    text stays on disk. The document id is kernel + inode, so an in-place write is the same
    document, and marimo's save of the session's document wipes the person's work."""
    tools, path, [cell, _other] = tools_for(["x = 1", "y = 2"])
    ok(call(tools["read_cell"], cell=cell))
    text = path.read_text().replace("y = 2", "y = 2\n    persons_edit_in_vscode = 'keep me'")
    with open(path, "r+", encoding="utf-8") as handle:  # in place: the inode stays
        handle.seek(0)
        handle.write(text)
        handle.truncate()
    before = path.read_bytes()
    message = call(tools["edit_cell"], cell=cell, code="x = 2")
    assert "persons_edit_in_vscode" in path.read_text(), "the person's saved edit was erased"
    assert message.status == "error", message.content
    assert path.read_bytes() == before


def _rewrite_in_place(path: Path, text: str) -> None:
    with open(path, "r+", encoding="utf-8") as handle:
        handle.seek(0)
        handle.write(text)
        handle.truncate()


def _drop_cell(text: str, code: str) -> str:
    """The file without the cell whose body is ``code`` (marimo's generated layout)."""
    block = re.search(
        r"\n\n@app\.cell\ndef _\([^)]*\):\n    " + re.escape(code) + r"\n    return[^\n]*\n", text
    )
    assert block is not None, text
    return text.replace(block.group(0), "\n")


@pytest.mark.parametrize(
    "how",
    [
        "deletes-a-cell",
        "names-a-cell",
        pytest.param(
            "sets-app-width",
            marks=pytest.mark.xfail(
                strict=True,
                reason="LIMIT: marimo.App(...) options are held by the server, not the kernel: "
                "a change of them alone made outside marimo is not seen (docs/reliability.md)",
            ),
        ),
        "swaps-cells",
    ],
)
def test_other_in_place_edits_of_the_file_are_not_overwritten(tools_for: Any, how: str) -> None:
    """Attack: the in-place check above looks for cells the file has and the session lacks.
    Other edits a person saves from an editor: deleting a cell, naming one, changing the
    app's settings, reordering. Expected: the agent's next change is refused and the file
    keeps the person's edit (marimo's save would write the session's version over it)."""
    tools, path, [cell, _other, _third] = tools_for(["x = 1", "y = 2", "z = 3"])
    ok(call(tools["read_cell"], cell=cell))
    text = path.read_text()
    if how == "deletes-a-cell":
        edited = _drop_cell(text, "z = 3")
        assert "z = 3" not in edited
    elif how == "names-a-cell":
        edited = text.replace("def _():\n    y = 2", "def persons_loader():\n    y = 2")
    elif how == "sets-app-width":
        edited = re.sub(r"app = marimo\.App\([^)]*\)", 'app = marimo.App(width="full")', text)
    else:
        edited = text.replace("y = 2", "TMP").replace("z = 3", "y = 2").replace("TMP", "z = 3")
    assert edited != text
    _rewrite_in_place(path, edited)
    message = call(tools["edit_cell"], cell=cell, code="x = 2")
    after = path.read_text()
    kept = {
        "deletes-a-cell": "z = 3" not in after,
        "names-a-cell": "persons_loader" in after,
        "sets-app-width": 'width="full"' in after,
        "swaps-cells": 0 <= after.find("z = 3") < after.find("y = 2"),
    }[how]
    assert kept, (
        f"the person's edit ({how}) was overwritten; the tool said: {message.content[:200]}"
    )


def test_a_markdown_notebook_change_is_verified_on_disk(start_server: Any, tmp_path: Path) -> None:
    """Attack: marimo also edits Markdown notebooks (``nb.md``). Expected: "done means on
    disk" works for them: a create that marimo saved is reported saved, and the file holds
    it."""
    path = tmp_path / "notes.md"
    path.write_text(
        "---\ntitle: Notes\nmarimo-version: 0.25.2\n---\n\n"
        "```python {.marimo}\nx = 1\n```\n\n```python {.marimo}\ny = x + 1\n```\n",
        encoding="utf-8",
    )
    server: MarimoServer = start_server(path)
    toolkit = MarimoPairToolkit.from_server(server, notebook=str(path))
    try:
        tools = {t.name: t for t in toolkit.get_tools()}
        ok(call(tools["read_notebook"]))
        created = call(tools["create_cell"], code="z = y * 3")
        on_disk = "z = y * 3" in path.read_text()
        assert on_disk == (created.status != "error"), (on_disk, created.content)
        assert created.status != "error", created.content
    finally:
        toolkit.close()


def test_a_notebook_file_deleted_under_the_session_is_reported_truthfully(
    tools_for: Any,
) -> None:
    """Attack: the notebook file is deleted (``rm``, a branch switch) while the session is
    open; the agent creates a cell. Expected: either the file is written again and holds
    the change, or an error says the file does not hold it. Never "saved" without a file."""
    tools, path, _ = tools_for(["x = 1"])
    path.unlink()
    message = call(tools["create_cell"], code="after_rm = 1")
    exists = path.exists() and "after_rm = 1" in path.read_text()
    if message.status != "error":
        assert exists, f"reported {message.content[:200]!r} but the file is gone"
    else:
        assert not exists or "not" in message.content


def test_a_new_server_on_the_same_port_makes_the_agent_read_again(
    start_server: Any, tmp_path: Path
) -> None:
    """Attack: the server is restarted on the same port (same URL) while the agent pairs;
    the person changed the file meanwhile in place. The agent edits a cell it read on the
    old server. Expected: refused, read again; the file keeps the person's text."""
    from marimo_pair_tools.server import free_port

    path = write_notebook(tmp_path / "same_port.py", ["x = 1", "y = x"])
    port = free_port()
    first: MarimoServer = start_server(path, port=port)
    toolkit = MarimoPairToolkit.from_url(first.url, notebook=str(path), attach=True)
    try:
        tools = {t.name: t for t in toolkit.get_tools()}
        ids = [c["id"] for c in ok(call(tools["read_notebook"])).artifact["cells"]]
        ok(call(tools["read_cell"], cell=ids[0]))
        first.stop()
        with open(path, "r+", encoding="utf-8") as handle:
            text = handle.read().replace("y = x", "y = x\n    while_down = 'person'")
            handle.seek(0)
            handle.write(text)
            handle.truncate()
        second: MarimoServer = start_server(path, port=port)
        assert second.url == first.url
        with second.client() as person:
            person.attach(str(path))
        before = path.read_bytes()
        message = call(tools["edit_cell"], cell=ids[0], code="x = 2")
        assert path.read_bytes() == before or "while_down" in path.read_text()
        assert message.status == "error", message.content
        assert "read" in message.content
    finally:
        toolkit.close()


# ================================================================ reads and rules


def test_a_paged_read_across_a_persons_edit_is_not_a_whole_read(
    tools_for: Any, client: MarimoClient
) -> None:
    """Attack: the agent reads the first page of a long cell, the person rewrites the
    cell, the agent reads the second page. The pages cover the length, but of two versions.
    Expected: a full replacement is refused."""
    body = "".join(f"padding_{i} = {i}\n" for i in range(800))
    tools, path, [cell] = tools_for(["value = 1\n" + body + "last = 'end'"])
    first = ok(call(tools["read_cell"], cell=cell))
    end = first.artifact["code_shown"][1]
    person_edits(
        client,
        path,
        cell,
        "value = 1\n" + body.replace("padding_5 = 5", "person = 'new'") + "last = 'end'",
    )
    offset = end
    while True:
        page = ok(call(tools["read_cell"], cell=cell, offset=offset))
        stop = page.artifact["code_shown"][1]
        if stop >= len(page.artifact["code"]):
            break
        offset = stop
    before = path.read_bytes()
    refused(call(tools["edit_cell"], cell=cell, code="value = 3"))
    assert path.read_bytes() == before


def test_emptying_by_find_replace_is_judged_as_a_delete(tools_for: Any) -> None:
    """Attack: instead of ``code=""``, the definition is removed with a find/replace
    (``old="x = 1", new="pass"``). Expected: judged by effect like an emptying edit: the
    reader is named and inspect_graph is asked for."""
    tools, path, [source, reader] = tools_for(["x = 1", "y = x + 1"])
    ok(call(tools["read_cell"], cell=source))
    before = path.read_bytes()
    refused(call(tools["edit_cell"], cell=source, old="x = 1", new="pass"), reader)
    refused(
        call(
            tools["edit_cell"],
            cell=source,
            old="x = 1",
            new="pass",
            acknowledge_descendants=[reader],
        ),
        "inspect_graph",
    )
    assert path.read_bytes() == before


def test_aba_on_the_cell_with_a_new_reader_still_needs_acknowledgement(
    tools_for: Any, client: MarimoClient
) -> None:
    """Attack: the agent inspects cell A (no readers). The person adds a cell R that reads
    A's name, changes A and changes it back (A's code hash is what the agent saw). The
    agent deletes A. Expected: refused: R was never inspected nor acknowledged."""
    tools, path, [source] = tools_for(["shared = 1"])
    ok(call(tools["read_cell"], cell=source))
    assert "no descendants" in ok(call(tools["inspect_graph"], cell=source)).content
    program = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        "    ctx.create_cell('persons_reader = shared * 10')\n"
    )
    assert client.execute(program, notebook=str(path)).success
    person_edits(client, path, source, "shared = 2")
    person_edits(client, path, source, "shared = 1")
    before = path.read_bytes()
    message = call(tools["delete_cell"], cell=source)
    assert message.status == "error", message.content
    assert "persons_reader" in message.content or "inspect_graph" in message.content
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("read_notebook", {"cells": "all"}),
        ("get_variables", {"names": ["x"], "deep": True}),
        ("delete_cell", {"cell": "CELL", "force": True}),
        ("apply_changes", {"changes": [{"op": "delete", "cell": "CELL", "force": True}]}),
        ("apply_changes", {"changes": [{"op": "create", "code": "z = 1", "dry_run": True}]}),
        ("apply_changes", {"changes": [], "dry_run": True}),
        ("create_cell", {"code": "z = 1", "Run": False}),
    ],
    ids=[
        "read_notebook",
        "get_variables",
        "delete",
        "nested-delete",
        "nested-create",
        "batch",
        "case",
    ],
)
def test_unknown_arguments_anywhere_are_refused(
    tools_for: Any, tool: str, args: dict[str, Any]
) -> None:
    """Attack: unknown arguments on other tools, nested in a change, or a known name in the
    wrong case. Expected: refused with the valid ones, nothing changed."""
    tools, path, [cell] = tools_for(["x = 1"])
    ok(call(tools["inspect_graph"], cell=cell))
    import json

    args = json.loads(json.dumps(args).replace("CELL", cell))
    before = path.read_bytes()
    message = call(tools[tool], **args)
    assert message.status == "error", message.content
    text = str(message.content).lower()
    assert "unknown" in text or "not permitted" in text
    assert path.read_bytes() == before


def test_a_delete_in_apply_changes_shows_the_code_and_names(tools_for: Any) -> None:
    """Attack: the delete promise checked for the batch tool, not only delete_cell."""
    tools, _, [cell, _] = tools_for(["alpha = 1\nbeta = 2  # the person's note", "print(1)"])
    ok(call(tools["inspect_graph"], cell=cell))
    done = ok(call(tools["apply_changes"], changes=[{"op": "delete", "cell": cell}]))
    assert "beta = 2  # the person's note" in done.content
    assert "alpha" in done.content and "beta" in done.content


# ================================================================ budgets


def test_a_repr_with_a_bare_except_retry_loop_does_not_strand_the_kernel(
    tools_for: Any,
) -> None:
    """Attack: a person's object whose ``__repr__`` retries with a bare ``except:`` (sloppy
    but common). It swallows the budget's BaseException and marimo's KeyboardInterrupt.
    The person never calls repr; get_variables does. Expected: the kernel answers again."""
    tools, _, ids = tools_for(
        [
            "import time\nclass Flaky:\n    def __repr__(self):\n        while True:\n"
            "            try:\n                time.sleep(0.05)\n                raise OSError('down')\n"
            "            except:\n                pass\n",
            "flaky = Flaky()\nkept = 'person state'",
        ]
    )
    ok(call(tools["apply_changes"], changes=[{"op": "run", "cell": c} for c in ids]))
    notebook = tools["get_variables"].session.notebook
    notebook.timeout = 6
    started = time.monotonic()
    message = call(tools["get_variables"], names=["flaky"])
    notebook.timeout = None
    assert time.monotonic() - started < 60
    after = call(tools["execute_code"], code="print(kept)", timeout=10)
    assert after.status != "error" and "person state" in after.content, (
        message.content,
        after.content,
    )


def test_get_variables_on_large_bytes_stays_within_its_memory_budget(
    tools_for: Any, client: MarimoClient
) -> None:
    """Attack: the person holds a file read into memory (``data = open(f, 'rb').read()``,
    here 120 MB). reprlib has no rule for bytes, so ``repr`` builds the whole escaped text
    (about 4x) in one C call, past the 256 MB budget that a timer cannot stop. Expected:
    the kernel's peak memory grows by less than the budget."""
    tools, path, ids = tools_for(["data = bytes(120 * 2**20)"])
    ok(call(tools["apply_changes"], changes=[{"op": "run", "cell": ids[0]}]))
    pid = int(client.execute("import os; print(os.getpid())", notebook=str(path)).stdout)
    process = psutil.Process(pid)
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        shown = call(tools["get_variables"], names=["data"])
    finally:
        done.set()
        sampler.join(2)
    growth = (peak[0] - baseline) >> 20
    assert shown.status != "error", shown.content
    assert growth < 256, f"the kernel grew by {growth} MB for one repr"


def test_many_slow_reprs_stay_within_the_call_budget(tools_for: Any) -> None:
    """Attack: 30 variables whose repr each takes 0.8 s (under the per-value budget).
    Expected: the per-call budget (8 s) holds; the rest are listed as not shown."""
    cells = [
        "import time\nclass Slow:\n    def __repr__(self):\n        time.sleep(0.8)\n        return 'slow'\n"
    ]
    cells.append("\n".join(f"slow_{i} = Slow()" for i in range(30)))
    tools, _, ids = tools_for(cells)
    ok(call(tools["apply_changes"], changes=[{"op": "run", "cell": c} for c in ids]))
    started = time.monotonic()
    shown = ok(call(tools["get_variables"], limit=50))
    assert time.monotonic() - started < 15
    assert "time budget" in shown.content


@pytest.mark.parametrize(
    "code",
    [
        "import asyncio, time\nawait asyncio.to_thread(time.sleep, 30)\n",
        "import asyncio\nwhile True:\n    try:\n        await asyncio.sleep(0.05)\n"
        "    except asyncio.CancelledError:\n        pass\n",
        # The same with a bare except around the await: every exception is swallowed.
        "import asyncio\nwhile True:\n    try:\n        await asyncio.sleep(0.05)\n"
        "    except:\n        pass\n",
    ],
    ids=["to-thread", "swallows-cancel", "swallows-everything"],
)
def test_async_code_variants_leave_a_kernel_that_answers(tools_for: Any, code: str) -> None:
    """Attack: top-level await of a worker thread, and a loop that swallows
    ``CancelledError``. Expected: after the timeout, the kernel answers again at once."""
    tools, _, _ = tools_for(["x = 1"])
    message = refused(call(tools["execute_code"], code=code, timeout=2), "limit")
    started = time.monotonic()
    ok(call(tools["execute_code"], code="print(x + 1)", timeout=10))
    assert time.monotonic() - started < 10, message.content


# ================================================================ large notebooks


def test_waits_scale_for_a_large_markdown_notebook_too(tmp_path: Path) -> None:
    """Attack: a 3,000-cell notebook saved as Markdown (``marimo edit nb.md``), which marimo
    opens as slowly as the same notebook in Python. Expected: attach and probe waits grow
    with it as they do for ``nb.py``. (The cell count was a regex for ``@app.cell`` lines,
    so a Markdown notebook counted 0 cells; its code fences count now.) No server needed:
    this is the wait the client computes before it asks one."""
    cells = [f"v{i} = {i}" for i in range(3000)]
    as_py = write_notebook(tmp_path / "big.py", cells)
    as_md = tmp_path / "big.md"
    as_md.write_text(
        "---\ntitle: big\n---\n\n" + "".join(f"```python {{.marimo}}\n{c}\n```\n\n" for c in cells),
        encoding="utf-8",
    )
    with MarimoClient(base_url="http://127.0.0.1:9") as client:
        py_wait = client._attach_wait(str(as_py))
        md_wait = client._attach_wait(str(as_md))
    assert py_wait > 40, py_wait  # the Python file does scale
    assert md_wait >= py_wait * 0.8, (md_wait, py_wait)


def test_a_file_replaced_by_rename_that_deletes_a_cell_is_not_overwritten(tools_for: Any) -> None:
    """The same deletion saved by rename (``git checkout``, an editor's atomic save: a new
    inode, so a new document id). Expected: refused, file kept. Observed: applied, the
    deleted cell written back, and "read again" in the same result. attack-11's break 3 was
    fixed by a check for cells the file has and the session lacks, not by the document id."""
    tools, path, [cell, _other, _third] = tools_for(["x = 1", "y = 2", "z = 3"])
    ok(call(tools["read_cell"], cell=cell))
    replacement = path.with_suffix(".tmp")
    replacement.write_text(_drop_cell(path.read_text(), "z = 3"), encoding="utf-8")
    os.replace(replacement, path)
    before = path.read_bytes()
    message = call(tools["edit_cell"], cell=cell, code="x = 2")
    assert "z = 3" not in path.read_text(), f"the deleted cell came back: {message.content[:300]}"
    assert message.status == "error", message.content
    assert path.read_bytes() == before
