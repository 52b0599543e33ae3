"""Faults against real marimo servers: nothing may be lost, retried blindly, or hang.

Every case here is produced by a real server (killed, wedged, reconnected, fed
huge or binary output, run as an app). No fakes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from marimo_pair_tools import MarimoClient, MarimoServer, discover_servers
from marimo_pair_tools.errors import (
    AuthenticationError,
    ExecuteTimeoutError,
    KernelBusyError,
    OutcomeUnknownError,
    ReadOnlyServerError,
)

from .conftest import write_notebook

RUN_ALL_CELLS = """
import marimo._code_mode as cm
async with cm.get_context() as ctx:
    for _c in list(ctx.cells):
        ctx.run_cell(_c.id)
"""

WEDGE = """
import time
while True:
    try:
        time.sleep(1)
    except KeyboardInterrupt:
        pass
"""


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), so a killed server leaves nothing behind."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _wait_running(url: str, key: str) -> None:
    deadline = time.monotonic() + 5
    while (
        httpx.get(url + "/api/kernel/status", headers={"Marimo-Session-Id": key}).json()["state"]
        != "running"
    ):
        assert time.monotonic() < deadline, "the person's run never started"
        time.sleep(0.01)


def _server_token(url: str) -> str:
    match = re.search(r'data-token="([^"]*)"', httpx.get(url + "/").text)
    assert match is not None
    return match.group(1)


@contextlib.contextmanager
def _browser_like_consumer(url: str, key: str, file: str | None) -> Iterator[None]:
    """Hold ``/sse`` open with a new session id, as a reconnecting browser tab does."""
    stop = threading.Event()
    holder: dict[str, httpx.Response] = {}

    def hold() -> None:
        params = {"session_id": key, **({"file": file} if file else {})}
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", url + "/sse", params=params, timeout=None) as response,
        ):
            holder["r"] = response
            for _ in response.iter_raw():
                if stop.is_set():
                    return

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        if "r" in holder:
            sock = holder["r"].extensions["network_stream"].get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.shutdown(2)
        thread.join(timeout=5)


def test_sigkill_mid_execute_is_outcome_unknown_never_retried_then_port_reuse(
    start_server: Any, tmp_path: Path
) -> None:
    path = write_notebook(tmp_path / "killed.py", ["k = 1"])
    server: MarimoServer = start_server(path)
    port, registry = server.port, server.registry_dir
    assert registry is not None and (registry / f"127.0.0.1_{port}.json").exists()
    marker = "# user-code-marker"
    sent: list[str] = []

    def count(request: httpx.Request) -> None:
        if request.url.path == "/api/kernel/execute" and marker.encode() in request.content:
            sent.append(request.url.path)

    leftovers: list[int] = []
    http = httpx.Client(event_hooks={"request": [count]})
    try:
        with MarimoClient(base_url=server.url, http_client=http) as client:
            client.attach()

            def kill_on_first_chunk(channel: str, text: str) -> None:
                if server.pid is not None:
                    leftovers.extend(_descendants(server.pid))
                    server.kill()

            code = f"{marker}\nimport time\nprint('started', flush=True)\ntime.sleep(30)"
            started = time.monotonic()
            with pytest.raises(OutcomeUnknownError, match="do not re-run it blindly") as info:
                client.execute(code, timeout=60, on_chunk=kill_on_first_chunk)
            assert time.monotonic() - started < 10
            assert info.value.cause == "server_down" and "no longer answers" in str(info.value)
        assert sent == ["/api/kernel/execute"], "the non-idempotent code was sent again"

        # The killed server's registry entry is stale; a token server now holds its port.
        entry = registry / f"127.0.0.1_{port}.json"
        assert entry.exists()
        impostor: MarimoServer = start_server(path, token="other-secret", port=port)
        records = discover_servers(registry, include_unhealthy=True)
        assert [r.status for r in records] == ["unresponsive"]
        assert "different server holds the port" in (records[0].reason or "")
        assert discover_servers(registry) == []  # not offered as live
        assert entry.exists(), "an answering port must not be cleaned up as dead"
        with (
            MarimoClient(base_url=impostor.url, token=None) as stranger,
            pytest.raises(AuthenticationError),
        ):
            stranger.sessions()

        impostor.stop()
        records = discover_servers(registry, include_unhealthy=True)
        assert [r.status for r in records] == ["stale"]
        assert not entry.exists(), "discovery should drop the stale entry"
    finally:
        http.close()
        for pid in leftovers:  # the kernel of a SIGKILLed server may outlive it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_wedged_kernel_times_out_unresponsive_then_restart_reports_losses(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    path = str(new_notebook(["a = 1", "b = a + 1"]))
    with shared_server.client(probe_timeout=2.0) as client:
        client.attach(path)
        assert client.execute(RUN_ALL_CELLS, notebook=path).success

        # A responsive kernel: restart lists exactly what it held.
        old_pid = int(client.execute("import os; print(os.getpid())", notebook=path).stdout)
        restarted = client.restart(path)
        assert restarted.variables_lost is not None
        assert {"a", "b"} <= set(restarted.variables_lost)
        assert "input" not in restarted.variables_lost  # marimo's own globals are not "lost"
        assert "a, b" in restarted.message and "Lost 2 variable(s)" in restarted.message
        assert restarted.session is not None and restarted.session.path == path
        assert _wait_gone(old_pid, 10), "the old kernel process outlived the restart"
        assert client.execute("print('a' in globals())", notebook=path).stdout == "False\n"

        # A kernel that swallows KeyboardInterrupt: timeout, diagnosis, clear advice.
        started = time.monotonic()
        with pytest.raises(ExecuteTimeoutError) as info:
            client.execute(WEDGE, notebook=path, timeout=1)
        elapsed = time.monotonic() - started
        assert info.value.kernel_responsive is False
        assert info.value.cause == "busy_ours"
        assert "restart" in str(info.value).lower() and "wedged" in str(info.value)
        # The limit, the wait for marimo's interrupt to work (probe_timeout), a look at what
        # runs, a second interrupt and its shorter wait, and some slack for a loaded machine.
        assert elapsed < 1 + 2 + 1 + 2 + 2, f"timeout + diagnosis took {elapsed:.1f} s"

        # While it is wedged, nothing more is sent, and the error says it is our own code;
        # an interrupt does not free it.
        with pytest.raises(KernelBusyError, match="still running code this agent sent") as busy:
            client.execute("print('queued?')", notebook=path)
        assert busy.value.cause == "busy_ours" and "nothing was sent" in str(busy.value)
        client.interrupt(path)
        with pytest.raises(KernelBusyError):
            client.execute("print('queued?')", notebook=path)

        wedged = client.restart(path)
        assert wedged.variables_lost is None
        assert "could not be listed" in wedged.message
        assert client.execute("print('fresh')", notebook=path).stdout == "fresh\n"


def test_person_running_a_cell_is_not_interrupted_by_our_timeout(
    client: MarimoClient, attached: Any
) -> None:
    path = str(attached(["import time\ntime.sleep(2.5)\nslow_done = True"]))
    session = client.resolve_session(path)
    cells = json.loads(
        client.execute(
            "import json, marimo._code_mode as cm\n"
            "async with cm.get_context() as ctx:\n"
            "    print(json.dumps([[c.id, c.code] for c in ctx.cells]))",
            notebook=path,
        ).stdout
    )
    # The browser's "run cell" request, sent by hand: the person starts a slow cell.
    response = httpx.post(
        client.base_url + "/api/kernel/run",
        json={"cellIds": [cells[0][0]], "codes": [cells[0][1]]},
        headers={
            "Marimo-Session-Id": session.key,
            "Marimo-Server-Token": _server_token(client.base_url),
        },
    )
    assert response.status_code == 200
    _wait_running(client.base_url, session.key)
    with pytest.raises(KernelBusyError, match="nothing was sent") as busy:
        client.execute("print('agent')", notebook=path, timeout=0.5)
    assert busy.value.cause == "busy_person" and cells[0][0] in str(busy.value)
    deadline = time.monotonic() + 10
    while True:  # the person's run completes untouched
        try:
            out = client.execute("print(globals().get('slow_done'))", notebook=path)
            break
        except KernelBusyError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert out.stdout == "True\n"

    # With interrupt_others=True the caller accepts the risk, and the error says what happened.
    httpx.post(
        client.base_url + "/api/kernel/run",
        json={"cellIds": [cells[0][0]], "codes": [cells[0][1] + "\nslow_again = True"]},
        headers={
            "Marimo-Session-Id": session.key,
            "Marimo-Server-Token": _server_token(client.base_url),
        },
    )
    _wait_running(client.base_url, session.key)
    with pytest.raises(ExecuteTimeoutError, match="interrupt hit that run too") as info:
        client.execute("print('agent')", notebook=path, timeout=0.5, interrupt_others=True)
    assert info.value.kernel_responsive is True
    out = client.execute("print(globals().get('slow_again'))", notebook=path)
    assert out.stdout == "None\n"  # the person's run was interrupted, and we said so


def test_reconnect_renames_the_key_and_the_next_call_re_resolves(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    path = str(new_notebook(["r = 1"]))
    with shared_server.client() as first, shared_server.client() as agent:
        old = first.attach(path)
        assert agent.execute("print('before')", notebook=path).stdout == "before\n"
        assert agent.resolve_session(path).key == old.key  # cached from now on
        first.close()  # the tab goes away ...
        with _browser_like_consumer(shared_server.url, "tab-reconnected", path):  # ... and back
            deadline = time.monotonic() + 10
            while "tab-reconnected" not in httpx.get(shared_server.url + "/api/sessions").json():
                assert time.monotonic() < deadline, "marimo did not resume the session"
                time.sleep(0.05)
            stale = httpx.post(
                shared_server.url + "/api/kernel/execute",
                json={"code": "1"},
                headers={"Marimo-Session-Id": old.key},
            )
            assert stale.status_code == 500 and "Invalid session id" in stale.text
            assert agent.execute("print('after')", notebook=path).stdout == "after\n"
            assert agent.resolve_session(path).key == "tab-reconnected"
            agent.interrupt(path)  # key-routed control requests follow the rename too


async def test_huge_and_binary_output_stays_bounded(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    path = str(new_notebook(["h = 1"]))
    async with shared_server.async_client(max_output_chars=10_000) as aclient:
        await aclient.attach(path)
        tracemalloc.start()
        try:
            printed = await aclient.execute(
                "line = 'y' * 999\nfor _ in range(50_000):\n    print(line)", notebook=path
            )
            returned = await aclient.execute("'z' * (8 * 1024 * 1024)", notebook=path)
            below_cap = await aclient.execute("'w' * 3_000_000", notebook=path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        binary = await aclient.execute(
            "import sys\nsys.stdout.flush()\nsys.stdout.buffer.write(bytes(range(256)))\n"
            "sys.stdout.flush()\nsys.stderr.buffer.write(b'\\xff\\xfe\\x80 tail')\n"
            "sys.stderr.flush()\nprint('after binary')",
            notebook=path,
        )
    assert printed.success and printed.stdout_cut > 49_000_000
    assert len(printed.stdout) < 11_000
    assert returned.success and returned.output is not None
    assert len(returned.output.data) < 20_000  # marimo replaces it by a notice
    assert below_cap.output is not None and below_cap.output_cut > 2_900_000
    assert (
        len(below_cap.output.data) < 11_000 and "characters of output cut" in below_cap.output.data
    )
    assert peak < 60_000_000, f"client memory peaked at {peak / 1e6:.1f} MB"
    assert binary.success and binary.stdout.endswith("after binary\n")
    assert len(binary.stdout) + len(binary.stderr) < 2_000


def test_input_fails_fast_and_kernel_stays_usable(client: MarimoClient, attached: Any) -> None:
    path = str(attached(["i = 1"]))
    for code in (
        "name = input('Your name? ')\nprint(name)",
        "def ask():\n    return input()\nask()",
        "import sys\nsys.stdin.readline()",
    ):
        started = time.monotonic()
        result = client.execute(code, notebook=path, timeout=30)
        assert time.monotonic() - started < 3, f"{code!r} waited for input"
        assert not result.success
        assert "input() cannot be answered" in result.stderr
    assert client.execute("print(i if 'i' in globals() else 'ok')", notebook=path).success
    assert client.execute("print('usable')", notebook=path).stdout == "usable\n"


async def test_marimo_run_is_read_only(start_server: Any, tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "app.py", ["x = 1"])
    server = MarimoServer(path, mode="run", registry_dir=tmp_path / "state").start()
    try:
        with server.client() as client:
            for call in (client.sessions, client.attach, lambda: client.execute("1")):
                with pytest.raises(ReadOnlyServerError, match="marimo run"):
                    call()
        async with server.async_client() as aclient:
            with pytest.raises(ReadOnlyServerError, match="marimo edit"):
                await aclient.execute("1")
    finally:
        server.stop()


async def test_async_interrupt_and_restart(shared_server: MarimoServer, new_notebook: Any) -> None:
    path = str(new_notebook(["kept = 1", "also = kept + 1"]))
    async with shared_server.async_client(probe_timeout=2.0) as aclient:
        old = await aclient.attach(path)
        assert (await aclient.execute(RUN_ALL_CELLS, notebook=path)).success
        await aclient.interrupt(path)  # an idle kernel: harmless
        restarted = await aclient.restart(path)
        assert restarted.variables_lost is not None
        assert {"kept", "also"} <= set(restarted.variables_lost)
        assert restarted.session is not None and restarted.session.key != old.key
        out = await aclient.execute("print('kept' in globals())", notebook=path)
        assert out.stdout == "False\n"


def test_interrupt_right_after_attach_leaves_the_kernel_alive(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    """marimo 0.25.2 passes SIGINT to a kernel that is still starting, which kills it.

    Found while testing: ``interrupt()`` right after ``attach()`` left a dead kernel
    (status ``stopped``). An idle kernel has nothing to interrupt, so nothing is sent.
    """
    path = str(new_notebook(["fresh = 1"]))
    with shared_server.client() as client:
        client.attach(path)
        client.interrupt(path)
        assert client.execute("print('alive')", notebook=path).stdout == "alive\n"
