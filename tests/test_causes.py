"""After a timeout or a failure, the client names the cause and its way out.

Each cause is produced by a real marimo server: a kernel process killed with
SIGKILL, a server stopped or frozen (SIGSTOP) mid-call, a person's run started
through marimo's own ``POST /api/kernel/run`` before or during our call, and
another client's scratchpad code. No fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from marimo_pair_tools import MarimoClient, MarimoServer
from marimo_pair_tools.errors import (
    ExecuteTimeoutError,
    KernelBusyError,
    KernelDeadError,
    OutcomeUnknownError,
    ServerUnavailableError,
)

from .conftest import write_notebook

SLOW_CELL = "import time\ntime.sleep({seconds})\n{name} = True"
RESTART_ADVICE = ("restart button", "Only a restart", "needs a restart")


def _kernel_pid(client: MarimoClient, server: MarimoServer, notebook: str | None = None) -> int:
    """The kernel's pid, as the kernel says and as the server's process tree confirms."""
    pid = int(client.execute("import os; print(os.getpid())", notebook=notebook).stdout)
    assert server.pid is not None
    children = {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
    assert pid in children, "the scratchpad should run in a child process of the server"
    return pid


def _server_token(url: str) -> str:
    match = re.search(r'data-token="([^"]*)"', httpx.get(url + "/").text)
    assert match is not None
    return match.group(1)


def _cells(client: MarimoClient, notebook: str) -> list[tuple[str, str]]:
    out = client.execute(
        "import json, marimo._code_mode as cm\n"
        "async with cm.get_context() as ctx:\n"
        "    print(json.dumps([[c.id, c.code] for c in ctx.cells]))",
        notebook=notebook,
    ).stdout
    return [(str(i), str(c)) for i, c in json.loads(out)]


def _person_runs(url: str, key: str, cell_id: str, code: str) -> None:
    """What the browser sends when the person presses "run" on a cell."""
    response = httpx.post(
        url + "/api/kernel/run",
        json={"cellIds": [cell_id], "codes": [code]},
        headers={"Marimo-Session-Id": key, "Marimo-Server-Token": _server_token(url)},
    )
    assert response.status_code == 200, response.text


def _state(url: str, key: str) -> str:
    response = httpx.get(url + "/api/kernel/status", headers={"Marimo-Session-Id": key})
    return str(response.json()["state"])


def _wait_state(url: str, key: str, want: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while _state(url, key) != want:
        assert time.monotonic() < deadline, f"the kernel never became {want}"
        time.sleep(0.02)


def test_after_a_timeout_the_kernel_answers_again_and_no_restart_is_advised(
    client: MarimoClient, attached: Any
) -> None:
    path = str(attached(["z = 1"]))
    with pytest.raises(ExecuteTimeoutError) as info:
        client.execute("while True: pass", notebook=path, timeout=1)
    message = str(info.value)
    assert info.value.cause == "kernel_answers" and info.value.kernel_responsive is True
    assert "answers again" in message and "no restart is needed" in message
    assert not any(advice in message for advice in RESTART_ADVICE), message
    assert client.execute("print('alive')", notebook=path).stdout == "alive\n"


def test_a_killed_kernel_is_named_at_once_not_at_the_timeout(
    start_server: Any, tmp_path: Path
) -> None:
    server: MarimoServer = start_server(write_notebook(tmp_path / "dies.py", ["d = 1"]))
    with server.client() as client:
        client.attach()
        pid = _kernel_pid(client, server)

        def kill_on_first_chunk(channel: str, text: str) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

        started = time.monotonic()
        with pytest.raises(KernelDeadError) as info:
            client.execute(
                "import time\nprint('started', flush=True)\ntime.sleep(60)",
                timeout=120,
                on_chunk=kill_on_first_chunk,
            )
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"the dead kernel was reported after {elapsed:.1f} s"
        assert info.value.cause == "kernel_dead"
        assert "stopped while this code ran" in str(info.value)
        assert "restart" in str(info.value)

        # The next call is refused before anything is sent, at once.
        started = time.monotonic()
        with pytest.raises(KernelDeadError, match="nothing was sent"):
            client.execute("print('anyone?')")
        assert time.monotonic() - started < 5

        # The way out the message names works.
        restarted = client.restart()
        assert restarted.session is not None
        assert client.execute("print('back')").stdout == "back\n"


async def test_a_killed_kernel_is_named_at_once_async(start_server: Any, tmp_path: Path) -> None:
    server: MarimoServer = start_server(write_notebook(tmp_path / "dies_async.py", ["d = 1"]))
    with server.client() as sync_client:
        sync_client.attach()
        pid = _kernel_pid(sync_client, server)
    async with server.async_client() as aclient:

        def kill_on_first_chunk(channel: str, text: str) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

        started = time.monotonic()
        with pytest.raises(KernelDeadError, match="stopped while this code ran"):
            await aclient.execute(
                "import time\nprint('started', flush=True)\ntime.sleep(60)",
                timeout=120,
                on_chunk=kill_on_first_chunk,
            )
        assert time.monotonic() - started < 10
        with pytest.raises(KernelDeadError, match="nothing was sent"):
            await aclient.execute("1")


def test_a_server_stopped_mid_call_is_named(start_server: Any, tmp_path: Path) -> None:
    server: MarimoServer = start_server(write_notebook(tmp_path / "stops.py", ["s = 1"]))
    with server.client() as client:
        client.attach()

        def stop_on_first_chunk(channel: str, text: str) -> None:
            server.stop()

        with pytest.raises(OutcomeUnknownError) as info:
            client.execute(
                "import time\nprint('started', flush=True)\ntime.sleep(30)",
                timeout=60,
                on_chunk=stop_on_first_chunk,
            )
        assert info.value.cause == "server_down"
        assert "no longer answers" in str(info.value)
        assert "do not re-run it blindly" in str(info.value)
        with pytest.raises(ServerUnavailableError, match="Is the marimo server running"):
            client.execute("1")


@contextlib.contextmanager
def _frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_frozen_server_after_a_timeout_is_named(start_server: Any, tmp_path: Path) -> None:
    server: MarimoServer = start_server(write_notebook(tmp_path / "frozen.py", ["f = 1"]))
    assert server.pid is not None
    with server.client(probe_timeout=1.0) as client:
        client.attach()
        stopper = contextlib.ExitStack()

        def freeze_on_first_chunk(channel: str, text: str) -> None:
            if not stopper._exit_callbacks:  # once
                stopper.enter_context(_frozen(server.pid))  # type: ignore[arg-type]

        try:
            with pytest.raises(ServerUnavailableError) as info:
                client.execute(
                    "import time\nprint('started', flush=True)\ntime.sleep(30)",
                    timeout=1,
                    on_chunk=freeze_on_first_chunk,
                )
        finally:
            stopper.close()
        assert info.value.cause == "server_down"
        assert "did not answer" in str(info.value) and "frozen" in str(info.value)
        # Thawed, the server saw our disconnect and interrupted the code: it answers again
        # (after catching up, which takes a moment on a loaded machine).
        deadline = time.monotonic() + 30
        while True:
            try:
                assert client.execute("print('thawed')").stdout == "thawed\n"
                break
            except (KernelBusyError, ServerUnavailableError):
                assert time.monotonic() < deadline
                time.sleep(0.2)


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_a_paused_kernel_is_named_frozen_not_answering(
    start_server: Any, tmp_path: Path, flavour: str
) -> None:
    """A kernel process paused while idle (SIGSTOP; a debugger does the same) reads idle in
    marimo's status. One trivial request tells it from a kernel that answers; once
    resumed, it answers again. (`test_attack_11c.py` has the sync case
    through the timeout message only.)"""
    server: MarimoServer = start_server(write_notebook(tmp_path / "paused.py", ["p = 1"]))
    with server.client() as sync_client:
        sync_client.attach()
        pid = _kernel_pid(sync_client, server)
        started = time.monotonic()
        with _frozen(pid):
            if flavour == "sync":
                with pytest.raises(ExecuteTimeoutError) as info:
                    sync_client.execute("print('hi')", timeout=1)
            else:
                async with server.async_client() as aclient:
                    with pytest.raises(ExecuteTimeoutError) as info:
                        await aclient.execute("print('hi')", timeout=1)
        elapsed = time.monotonic() - started
        assert info.value.cause == "kernel_frozen", str(info.value)
        assert "paused" in str(info.value) and "answers again" not in str(info.value)
        assert not any(advice in str(info.value) for advice in RESTART_ADVICE), str(info.value)
        # The limit, the grace for a kernel running nothing, a look, and the probe's wait.
        assert elapsed < 1 + 3 + 2 + 6 + 5, f"named after {elapsed:.1f} s"
        deadline = time.monotonic() + 30
        while True:  # resumed: it catches up on what was queued, then answers
            with contextlib.suppress(KernelBusyError):
                if "back" in sync_client.execute("print('back')").stdout:
                    break
            assert time.monotonic() < deadline, "the kernel did not come back"
            await asyncio.sleep(0.3)


def test_a_person_run_before_our_call_is_named_with_its_cell(
    client: MarimoClient, attached: Any
) -> None:
    path = str(attached([SLOW_CELL.format(seconds=3, name="theirs"), "other = 1"]))
    session = client.resolve_session(path)
    cell_id, code = _cells(client, path)[0]
    _person_runs(client.base_url, session.key, cell_id, code)
    _wait_state(client.base_url, session.key, "running")
    with pytest.raises(KernelBusyError) as info:
        client.execute("print('agent')", notebook=path, timeout=1)
    message = str(info.value)
    assert info.value.cause == "busy_person"
    assert cell_id in message and "nothing was sent" in message
    assert not any(advice in message for advice in RESTART_ADVICE), message
    _wait_state(client.base_url, session.key, "idle")
    assert client.execute("print(theirs)", notebook=path).stdout == "True\n"  # untouched


def test_a_person_run_during_our_call_is_named_and_left_to_finish(
    client: MarimoClient, attached: Any
) -> None:
    # Their cell outlasts our limit and the look after it, even on a loaded machine.
    path = str(attached([SLOW_CELL.format(seconds=8, name="theirs"), "other = 1"]))
    session = client.resolve_session(path)
    cell_id, code = _cells(client, path)[0]
    started: list[bool] = []

    def person_runs_on_first_chunk(channel: str, text: str) -> None:
        if not started:
            started.append(True)
            _person_runs(client.base_url, session.key, cell_id, code)

    with pytest.raises(ExecuteTimeoutError) as info:
        client.execute(
            "import time\nprint('ours', flush=True)\ntime.sleep(30)",
            notebook=path,
            timeout=1.5,
            on_chunk=person_runs_on_first_chunk,
        )
    message = str(info.value)
    assert started, "the person's run was never started"
    assert info.value.cause == "busy_person", message
    assert cell_id in message and "do not interrupt or restart" in message
    assert not any(advice in message for advice in RESTART_ADVICE), message
    # Only our code was interrupted: their run completes.
    _wait_state(client.base_url, session.key, "idle", seconds=20)
    assert client.execute("print(theirs)", notebook=path).stdout == "True\n"


def test_another_clients_scratchpad_code_is_named(client: MarimoClient, attached: Any) -> None:
    path = str(attached(["o = 1"]))
    session = client.resolve_session(path)
    assert session.stable_id is not None
    done = threading.Event()

    def other_client() -> None:  # another agent, with its own connection
        with httpx.stream(
            "POST",
            client.base_url + "/api/kernel/execute",
            json={"code": "import time\ntime.sleep(3)"},
            headers={"Marimo-Stable-Session-Id": session.stable_id or ""},
            timeout=30,
        ) as response:
            for _ in response.iter_raw():
                pass
        done.set()

    thread = threading.Thread(target=other_client, daemon=True)
    thread.start()
    _wait_state(client.base_url, session.key, "running")
    with pytest.raises(KernelBusyError) as info:
        client.execute("print('agent')", notebook=path)
    assert info.value.cause == "busy_scratchpad", str(info.value)
    assert "another client" in str(info.value)
    assert done.wait(15)
    thread.join(5)
    assert client.execute("print('free')", notebook=path).stdout == "free\n"


@contextlib.contextmanager
def _person_runs_right_after_our_check(
    client: MarimoClient, notebook: str, cell_id: str, code: str
) -> Iterator[None]:
    """The race no busy check can close: the person presses "run" just after our check.

    The client's own check is wrapped so that the person's run starts (and is seen
    running) between the check and our request, every time.
    """
    session = client.resolve_session(notebook)
    original = client._precheck

    def check_then_person_runs(*args: Any, **kwargs: Any) -> bool:
        busy = original(*args, **kwargs)
        _person_runs(client.base_url, session.key, cell_id, code)
        _wait_state(client.base_url, session.key, "running")
        return busy

    client._precheck = check_then_person_runs  # type: ignore[method-assign]
    try:
        yield
    finally:
        del client._precheck


def test_a_person_run_that_slips_in_before_our_code_is_waited_for(
    client: MarimoClient, attached: Any
) -> None:
    path = str(attached([SLOW_CELL.format(seconds=3, name="theirs"), "other = 1"]))
    cell_id, code = _cells(client, path)[0]
    with _person_runs_right_after_our_check(client, path, cell_id, code):
        started = time.monotonic()
        result = client.execute("print('ours')", notebook=path, timeout=1)
    # Our 1 s limit passed while their cell ran: a disconnect then would have interrupted
    # it. The client waited for it instead, and our code ran after it.
    assert result.stdout == "ours\n"
    assert time.monotonic() - started >= 2.5
    assert client.execute("print(theirs)", notebook=path).stdout == "True\n"


def test_a_person_run_that_outlasts_our_patience_is_named_in_the_timeout(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    path = str(new_notebook([SLOW_CELL.format(seconds=30, name="theirs"), "other = 1"]))
    # timeout=1 for the client too: it waits for their run at most max(1, 1) s more.
    with shared_server.client(timeout=1) as client:
        client.attach(path)
        cell_id, code = _cells(client, path)[0]
        with (
            _person_runs_right_after_our_check(client, path, cell_id, code),
            pytest.raises(ExecuteTimeoutError) as info,
        ):
            client.execute("print('ours')", notebook=path)
        message = str(info.value)
        assert "never started" in message and cell_id in message and "Tell the person" in message
        _wait_state(client.base_url, client.resolve_session(path).key, "idle")


async def test_async_busy_check_and_a_slipped_in_run_name_the_person(
    client: MarimoClient, attached: Any, shared_server: MarimoServer
) -> None:
    """The async client's look at the session (kiosk view) and its deadline wait."""
    path = str(attached([SLOW_CELL.format(seconds=3, name="theirs"), "other = 1"]))
    session = client.resolve_session(path)
    cell_id, code = _cells(client, path)[0]
    async with shared_server.async_client() as aclient:
        assert (await aclient.execute("print('warm')", notebook=path)).success
        _person_runs(client.base_url, session.key, cell_id, code)
        _wait_state(client.base_url, session.key, "running")
        with pytest.raises(KernelBusyError) as info:
            await aclient.execute("print('agent')", notebook=path)
        assert info.value.cause == "busy_person" and cell_id in str(info.value)
        _wait_state(client.base_url, session.key, "idle")

        original = aclient._precheck

        async def check_then_person_runs(*args: Any, **kwargs: Any) -> bool:
            busy = await original(*args, **kwargs)
            _person_runs(client.base_url, session.key, cell_id, code)
            _wait_state(client.base_url, session.key, "running")
            return busy

        aclient._precheck = check_then_person_runs  # type: ignore[method-assign]
        result = await aclient.execute("print('ours')", notebook=path, timeout=1)
        assert result.stdout == "ours\n"
    assert client.execute("print(theirs)", notebook=path).stdout == "True\n"


def test_a_browser_reconnecting_mid_call_is_not_mistaken_for_a_dead_kernel(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    """A reconnecting tab renames the session key; the old key answers 500 from then on."""
    from .test_faults import _browser_like_consumer

    path = str(new_notebook(["r = 1"]))
    with contextlib.ExitStack() as stack:
        tab = stack.enter_context(shared_server.client())
        agent = stack.enter_context(shared_server.client())
        tab.attach(path)
        assert agent.execute("print('before')", notebook=path).success

        def tab_reconnects_on_first_chunk(channel: str, text: str) -> None:
            if "reconnected" in stack.__dict__:
                return
            stack.__dict__["reconnected"] = True
            tab.close()
            stack.enter_context(_browser_like_consumer(shared_server.url, "tab-again", path))
            deadline = time.monotonic() + 10
            while "tab-again" not in httpx.get(shared_server.url + "/api/sessions").json():
                assert time.monotonic() < deadline, "marimo did not resume the session"
                time.sleep(0.05)

        with pytest.raises(ExecuteTimeoutError) as info:
            agent.execute(
                "import time\nprint('go', flush=True)\ntime.sleep(30)",
                notebook=path,
                timeout=2,
                on_chunk=tab_reconnects_on_first_chunk,
            )
        assert info.value.cause == "kernel_answers", str(info.value)
        assert agent.execute("print('after')", notebook=path).stdout == "after\n"
