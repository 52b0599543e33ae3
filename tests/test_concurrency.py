"""Parallel tool calls on one notebook queue; they never find each other busy.

LangGraph's ToolNode runs the tool calls of one model turn concurrently: in a
thread pool when invoked, with ``asyncio.gather`` when awaited. marimo's kernel
status says ``running`` while any scratchpad code runs, ours included, so each
call used to see the others as a person's run and fail with `KernelBusyError`.
All against a real server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.notebook import AsyncNotebook
from marimo_pair_tools.toolkit import MarimoPairToolkit


def _turn(created: str) -> AIMessage:
    """One model turn: reads, a slow scratchpad call and a change, as parallel tool calls.

    The kernel has not been asked anything yet, so each notebook call first learns that
    the kernel lacks this package and sends again with it: those second requests start
    while the others run, which is when a busy check used to see our own calls.
    """
    calls = [
        ("read_notebook", {}),
        ("read_cell", {"cell": "first"}),
        ("read_cell", {"cell": "second"}),
        ("execute_code", {"code": "import time\ntime.sleep(0.5)\nprint('slept')"}),
        ("get_variables", {}),
        ("inspect_graph", {"cell": "first"}),
        ("create_cell", {"code": f"{created} = 1"}),
    ]
    return AIMessage(
        content="",
        tool_calls=[
            {"name": name, "args": args, "id": f"call_{i}", "type": "tool_call"}
            for i, (name, args) in enumerate(calls)
        ],
    )


class _StatusSampler:
    """Samples the kernel status while a block runs: proof the calls were in flight."""

    def __init__(self, url: str, key: str) -> None:
        self._url, self._key = url, key
        self.states: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client() as http:
            while not self._stop.is_set():
                response = http.get(
                    self._url + "/api/kernel/status", headers={"Marimo-Session-Id": self._key}
                )
                self.states.append(str(response.json()["state"]))
                time.sleep(0.005)

    def __enter__(self) -> _StatusSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def parallel(shared_server: MarimoServer, new_notebook: Any) -> Iterator[Any]:
    """A graph whose one node is LangGraph's ToolNode over a fresh toolkit's tools."""
    toolkits: list[MarimoPairToolkit] = []

    def make() -> tuple[MarimoPairToolkit, Any, str]:
        path = str(new_notebook(["a = 1", "b = a + 1", "c = b * 2"], ["first", "second", "_"]))
        toolkit = MarimoPairToolkit.from_server(shared_server, notebook=path)
        toolkits.append(toolkit)
        session = toolkit.session.sync().client.resolve_session(path)
        builder = StateGraph(MessagesState)
        builder.add_node("tools", ToolNode(toolkit.get_tools()))
        builder.add_edge(START, "tools")
        builder.add_edge("tools", END)
        return toolkit, builder.compile(), session.key

    yield make
    for toolkit in toolkits:
        toolkit.close()


def _assert_all_succeeded(messages: list[Any], expected: int) -> None:
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert len(results) == expected
    failed = [(m.name, m.content) for m in results if m.status != "success"]
    assert not failed, failed


def test_parallel_tool_calls_in_threads_all_succeed(parallel: Any) -> None:
    toolkit, node, key = parallel()
    client = toolkit.session.sync().client
    with _StatusSampler(client.base_url, key) as sampler:
        out = node.invoke({"messages": [_turn("made_sync")]})
    _assert_all_succeeded(out["messages"], 7)
    assert "running" in sampler.states, "the calls never reached the kernel while sampled"
    assert "made_sync" in toolkit.session.sync().execute("print(sorted(globals()))").stdout


async def test_parallel_tool_calls_with_gather_all_succeed(parallel: Any) -> None:
    toolkit, node, _ = parallel()
    out = await node.ainvoke({"messages": [_turn("made_async")]})
    _assert_all_succeeded(out["messages"], 7)
    notebook = toolkit.session.asynchronous()
    ids = [c.id for c in (await notebook.cells()).cells]
    # The raw async layer too: several reads and a change gathered on one notebook.
    results = await asyncio.gather(
        notebook.cells(),
        notebook.read_cell(ids[0]),
        notebook.variables(),
        notebook.create("more = 2"),
        notebook.errors(),
    )
    assert results[1].id == ids[0]
    # Gathered calls run in whatever order the queue gives them; afterwards all is there.
    assert len((await notebook.cells()).cells) == 5  # three cells, then the two created
    assert "more" in (await notebook.execute("print(sorted(globals()))")).stdout


def _tool_call(name: str, args: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return {"type": "tool_call", "name": name, "args": args, "id": f"c{index}_{name}"}


SLOW = "import time\nprint('slow', flush=True)\ntime.sleep(1.5)"


def _later_calls(ids: list[str]) -> list[dict[str, Any]]:
    """Calls that start while a slow one runs: each must wait for it, none may fail."""
    return [
        _tool_call("read_notebook", {}, 1),
        _tool_call("read_cell", {"cell": ids[0]}, 2),
        _tool_call("get_variables", {}, 3),
        _tool_call("create_cell", {"code": "late = 1"}, 4),
    ]


def test_calls_that_start_while_our_code_runs_wait_for_it(setup: Any) -> None:
    """Deterministic: the later calls start only once the kernel reports our slow code."""
    toolkit, path, ids = setup(["a = 1", "b = a + 1"])
    tools = {t.name: t for t in toolkit.get_tools()}
    client = toolkit.session.sync().client
    key = client.resolve_session(str(path)).key
    first: list[ToolMessage] = []
    slow = threading.Thread(
        target=lambda: first.append(
            tools["execute_code"].invoke(_tool_call("execute_code", {"code": SLOW}))
        )
    )
    slow.start()
    _wait_running(client.base_url, key)
    with ThreadPoolExecutor(4) as pool:
        later = list(pool.map(lambda c: tools[c["name"]].invoke(c), _later_calls(ids)))
    slow.join(30)
    _assert_all_succeeded([*first, *later], 5)


async def test_calls_that_start_while_our_code_runs_wait_for_it_async(setup: Any) -> None:
    toolkit, path, ids = setup(["a = 1", "b = a + 1"])
    tools = {t.name: t for t in toolkit.get_tools()}
    key = toolkit.session.sync().client.resolve_session(str(path)).key
    url = toolkit.session.sync().client.base_url
    slow = asyncio.ensure_future(
        tools["execute_code"].ainvoke(_tool_call("execute_code", {"code": SLOW}))
    )
    await asyncio.to_thread(_wait_running, url, key)
    later = await asyncio.gather(*(tools[c["name"]].ainvoke(c) for c in _later_calls(ids)))
    _assert_all_succeeded([await slow, *later], 5)


def _wait_running(url: str, key: str) -> None:
    deadline = time.monotonic() + 10
    while (
        httpx.get(url + "/api/kernel/status", headers={"Marimo-Session-Id": key}).json()["state"]
        != "running"
    ):
        assert time.monotonic() < deadline, "the slow call never reached the kernel"
        time.sleep(0.01)


def test_asyncio_run_twice_and_a_thread_beside_it(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    """One async client across event loops, queued with the sync client of its toolkit."""
    path = str(new_notebook(["x = 1"]))
    toolkit = MarimoPairToolkit.from_server(shared_server, notebook=path)
    try:
        read = {t.name: t for t in toolkit.get_tools()}["read_notebook"]
        execute = {t.name: t for t in toolkit.get_tools()}["execute_code"]

        def call(args: dict[str, Any], name: str) -> dict[str, Any]:
            return {"type": "tool_call", "name": name, "args": args, "id": f"c_{name}"}

        first = asyncio.run(read.ainvoke(call({}, "read_notebook")))
        second = asyncio.run(read.ainvoke(call({}, "read_notebook")))
        assert first.status == second.status == "success"

        # A sync call in a thread while an async one runs on another loop: they queue.
        sync_result: list[ToolMessage] = []
        thread = threading.Thread(
            target=lambda: sync_result.append(
                execute.invoke(call({"code": "import time; time.sleep(0.5); print('s')"}, "e"))
            )
        )

        async def both() -> ToolMessage:
            thread.start()
            await asyncio.sleep(0.05)
            message = await execute.ainvoke(call({"code": "print('a')"}, "execute_code"))
            assert isinstance(message, ToolMessage)
            return message

        async_result = asyncio.run(both())
        thread.join(30)
        assert async_result.status == "success" and "a" in str(async_result.content)
        assert sync_result and sync_result[0].status == "success", sync_result
    finally:
        toolkit.close()


async def test_gather_on_the_async_client_across_two_notebooks(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    """Different notebooks have different kernels: their requests need not wait for each other."""
    first, second = str(new_notebook(["p = 1"])), str(new_notebook(["q = 1"]))
    async with shared_server.async_client() as aclient:
        await aclient.attach(first)
        await aclient.attach(second)
        a, b = AsyncNotebook(aclient, first), AsyncNotebook(aclient, second)
        await a.execute("1")
        await b.execute("1")
        started = time.monotonic()
        outs = await asyncio.gather(
            a.execute("import time; time.sleep(1); print('p')"),
            b.execute("import time; time.sleep(1); print('q')"),
        )
        elapsed = time.monotonic() - started
    assert [o.stdout for o in outs] == ["p\n", "q\n"]
    assert elapsed < 1.9, f"two kernels ran one after the other ({elapsed:.2f} s)"


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("http://127.0.0.1:2718", "http://localhost:2718/", True),
        ("http://[::1]:2718", "http://LOCALHOST:2718", True),
        ("http://0.0.0.0:2718", "http://127.0.0.1:2718", True),
        ("https://example.com/base/", "https://EXAMPLE.com:443/base", True),
        ("http://127.0.0.1:2718", "http://127.0.0.1:2719", False),
        ("http://127.0.0.1:2718/a", "http://127.0.0.1:2718/b", False),
        ("http://example.com", "https://example.com", False),
    ],
)
def test_the_queue_keys_a_server_by_its_address_not_its_spelling(
    one: str, other: str, same: bool
) -> None:
    """Two spellings of one server share a slot; two servers never do. (The real-server
    case is `test_attack_11c.py::test_two_toolkits_spelling_the_server_differently_still_queue`.)"""
    from marimo_pair_tools._queue import slot_for

    assert (slot_for(one, "session-k") is slot_for(other, "session-k")) is same


async def test_a_cancelled_execute_stops_its_code_and_the_next_call_waits_for_that(
    shared_server: MarimoServer, new_notebook: Any
) -> None:
    """A cancelled call (an MCP client's Stop) stops its code, and the next call waits.

    The MCP SDK cancels a handler with an anyio cancel scope; so cancelled, the
    execute stream's end did not make marimo interrupt (a plain ``task.cancel()``
    did), and the code ran on. Endless code with a 600 s limit: only an interrupt
    ends it. The call right after the cancel queues behind the stop and
    runs, instead of being refused as "another client's" code.
    """
    import anyio

    path = str(new_notebook(["x = 1"]))
    async with shared_server.async_client() as aclient:
        await aclient.attach(path)
        key = (await aclient.resolve_session(path)).key
        endless = "import time\nwhile True:\n    time.sleep(0.1)"
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: aclient.execute(endless, notebook=path, timeout=600))
            await asyncio.to_thread(_wait_running, aclient.base_url, key)
            group.cancel_scope.cancel()
        started = time.monotonic()
        after = await aclient.execute("print('next')", notebook=path, timeout=30)
        assert after.success and after.stdout == "next\n", after
        assert time.monotonic() - started < 15
    with shared_server.client() as other:  # a client of its own: the kernel is free
        assert other.execute("1 + 1", notebook=path, timeout=10).success
