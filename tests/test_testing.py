"""ScriptedChatModel: replay, binding, streaming of tool calls, and use inside LangGraph."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from marimo_pair_tools.errors import MarimoPairError
from marimo_pair_tools.testing import ScriptedChatModel, ScriptError, last_tool_message


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(response_format="content_and_artifact")
def read_cell(cell: str) -> tuple[str, dict[str, str]]:
    """Read a cell's code; the artifact carries its hash."""
    return f"code of {cell}", {"cell": cell, "hash": f"h-{cell}"}


@tool
def edit_cell(cell: str, code: str, expected_hash: str) -> str:
    """Edit a cell if it still has the expected hash."""
    return f"edited {cell} ({expected_hash}) -> {code}"


TOOLS = [add, read_cell, edit_cell]


def _graph(model: ScriptedChatModel, checkpointer: InMemorySaver | None = None) -> Any:
    bound = model.bind_tools(TOOLS)

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [bound.invoke(state["messages"])]}

    async def aagent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", RunnableLambda(agent, afunc=aagent))  # real async path too
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)


def _edit_with_read_hash(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    artifact = last_tool_message(messages, "read_cell").artifact
    return [
        {
            "name": "edit_cell",
            "args": {"cell": "c1", "code": "x = 2", "expected_hash": artifact["hash"]},
        }
    ]


def _script() -> list[Any]:
    return [
        [{"name": "read_cell", "args": {"cell": "c1"}, "id": "call_read"}],
        _edit_with_read_hash,
        "Done: x is now 2.",
    ]


# --------------------------------------------------------------------------- the model alone


def test_text_turn_is_an_ai_message_with_stand_in_usage() -> None:
    model = ScriptedChatModel(["12345678"])
    reply = model.invoke("abcd")
    assert isinstance(reply, AIMessage)
    assert reply.content == "12345678"
    assert reply.usage_metadata == {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}
    assert reply.response_metadata["model_name"] == "scripted"
    assert model._llm_type == "scripted"


def test_stand_in_usage_counts_the_bound_tool_specs_on_every_call() -> None:
    """Providers bill the tool specs with every request; the eval's numbers must too."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from marimo_pair_tools.toolkit import TOOL_CLASSES
    from marimo_pair_tools.tools import PairSession

    tools = [cls(session=PairSession(None, None)) for cls in TOOL_CLASSES]
    chars = sum(len(json.dumps(convert_to_openai_tool(t), separators=(",", ":"))) for t in tools)
    model = ScriptedChatModel(["12345678", "again"])
    bound = model.bind_tools(tools)
    first = bound.invoke("abcd")
    second = bound.invoke("abcd")
    for reply in (first, second):
        assert reply.usage_metadata is not None
        assert reply.usage_metadata["input_tokens"] == -(-(4 + chars) // 4)
    assert chars > 4_000  # the specs, not the message, are most of the input


def test_tool_call_turn_fills_missing_ids_with_unique_ones() -> None:
    model = ScriptedChatModel(
        [[{"name": "add", "args": {"a": 1, "b": 2}}, {"name": "add", "args": {"a": 3, "b": 4}}]]
    ).bind_tools([add])
    reply = model.invoke("go")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("add", {"a": 1, "b": 2}),
        ("add", {"a": 3, "b": 4}),
    ]
    ids = [c["id"] for c in reply.tool_calls]
    assert all(ids) and len(set(ids)) == 2


def test_ai_message_turn_is_copied_so_replays_share_nothing() -> None:
    scripted = AIMessage(content="hi", tool_calls=[{"name": "add", "args": {"a": 1}, "id": None}])
    model = ScriptedChatModel([scripted]).bind_tools([add])
    reply = model.invoke("go")
    assert reply is not scripted
    assert reply.tool_calls[0]["id"]  # filled
    assert scripted.tool_calls[0]["id"] is None  # the script is untouched
    reply.tool_calls[0]["args"]["a"] = 99
    assert scripted.tool_calls[0]["args"] == {"a": 1}


def test_callable_turn_sees_the_messages_and_reacts_to_a_tool_artifact() -> None:
    model = ScriptedChatModel([_edit_with_read_hash]).bind_tools(TOOLS)
    history: list[BaseMessage] = [
        HumanMessage("edit c1"),
        AIMessage(content="", tool_calls=[{"name": "read_cell", "args": {}, "id": "r"}]),
        ToolMessage("code", tool_call_id="r", name="read_cell", artifact={"hash": "abc"}),
    ]
    reply = model.invoke(history)
    assert reply.tool_calls[0]["args"]["expected_hash"] == "abc"


def test_last_tool_message_fails_loudly_when_there_is_none() -> None:
    with pytest.raises(ScriptError, match="no ToolMessage from tool 'read_cell'"):
        last_tool_message([HumanMessage("hi")], "read_cell")


def test_running_out_names_the_count_and_shows_the_last_message() -> None:
    model = ScriptedChatModel(["one", "two"])
    model.invoke("a")
    model.invoke("b")
    with pytest.raises(ScriptError, match=r"2 turn\(s\) were scripted") as excinfo:
        model.invoke([HumanMessage("first"), HumanMessage("the very last thing")])
    assert "HumanMessage: 'the very last thing'" in str(excinfo.value)
    assert isinstance(excinfo.value, MarimoPairError)
    assert len(model.calls) == 3  # the failed call is recorded too
    assert model.remaining == 0


def test_calls_are_copies_of_what_the_model_saw() -> None:
    model = ScriptedChatModel(["ok"])
    messages: list[BaseMessage] = [HumanMessage("hello")]
    model.invoke(messages)
    messages[0].content = "changed later"
    assert model.calls[0][0].content == "hello"


def test_bind_tools_returns_a_copy_that_shares_the_script() -> None:
    model = ScriptedChatModel(["a", "b"])
    bound = model.bind_tools([add, {"name": "raw_dict_tool"}], tool_choice="any", strict=True)
    assert isinstance(bound, ScriptedChatModel)
    assert bound is not model
    assert model.bound_tools is None
    assert bound.bound_tools == ("add", "raw_dict_tool")
    assert bound.bound_kwargs == {"tool_choice": "any", "strict": True}
    bound.invoke("x")
    model.invoke("y")
    assert model.position == bound.position == 2
    assert len(model.calls) == 2


def test_copies_of_the_model_share_the_script() -> None:
    model = ScriptedChatModel(["a", "b"])
    clone = copy.deepcopy(model)
    assert clone.invoke("x").content == "a"
    assert model.invoke("y").content == "b"
    assert model.remaining == clone.remaining == 0


def test_bind_tools_accepts_openai_dicts_functions_and_builtin_tools() -> None:
    def multiply(a: int, b: int) -> int:
        """Multiply."""
        return a * b

    openai_dict = {"type": "function", "function": {"name": "f", "parameters": {}}}
    bound = ScriptedChatModel().bind_tools([openai_dict, multiply, {"type": "web_search"}])
    assert bound.bound_tools == ("f", "multiply", "web_search")


def test_refuses_a_tool_it_was_not_bound_with() -> None:
    model = ScriptedChatModel([[{"name": "delete_everything", "args": {}}]]).bind_tools([add])
    with pytest.raises(ScriptError, match=r"'delete_everything'.*bound tools: \['add'\]"):
        model.invoke("go")


def test_refuses_tool_calls_when_never_bound_unless_told_not_to() -> None:
    with pytest.raises(ScriptError, match="bind_tools\\(\\) was never called"):
        ScriptedChatModel([[{"name": "add", "args": {}}]]).invoke("go")
    loose = ScriptedChatModel([[{"name": "add", "args": {}}]], require_bound_tools=False)
    assert loose.invoke("go").tool_calls[0]["name"] == "add"


@pytest.mark.parametrize(
    "turn",
    [42, [], ["not a dict"], [{"name": "add", "arguments": {}}], [{"args": {}}]],
    ids=["int", "empty-list", "list-of-str", "typo-key", "no-name"],
)
def test_bad_turns_fail_at_construction(turn: Any) -> None:
    with pytest.raises(TypeError, match="Turn 0"):
        ScriptedChatModel([turn])


def test_callable_returning_a_callable_is_refused() -> None:
    nested: Any = lambda _messages: lambda _m: "x"  # noqa: E731 - the shape under test
    model = ScriptedChatModel([nested])
    with pytest.raises(ScriptError, match="returned another callable"):
        model.invoke("go")


# --------------------------------------------------------------------------- streaming


def _sum(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def test_stream_keeps_tool_calls_intact() -> None:
    calls = [
        {"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"},
        {
            "name": "edit_cell",
            "args": {"cell": "x", "code": "y = {1: 'a'}\n", "expected_hash": "h"},
        },
    ]
    model = ScriptedChatModel([calls]).bind_tools(TOOLS)
    chunks = list(model.stream("go"))
    assert len(chunks) > 3  # really streamed, not one blob
    first_call_parts = [
        c.tool_call_chunks[0]["args"]
        for c in chunks
        if c.tool_call_chunks and c.tool_call_chunks[0]["index"] == 0
    ]
    assert first_call_parts == ['{"a": 1,', ' "b": 2}']  # arguments arrive in pieces
    total = _sum(chunks)
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [
        (c["name"], c["args"]) for c in calls
    ]
    assert total.tool_calls[0]["id"] == "c1"
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] > 0


def test_stream_text_arrives_in_pieces_that_rejoin_exactly() -> None:
    text = "Hello  there,\nworld. "
    chunks = list(ScriptedChatModel([text]).stream("go"))
    assert len([c for c in chunks if c.content]) == 3
    assert _sum(chunks).content == text


async def test_astream_and_ainvoke_replay_the_same_way() -> None:
    model = ScriptedChatModel(
        [[{"name": "add", "args": {"a": 5, "b": 6}, "id": "z"}], "fine"]
    ).bind_tools([add])
    chunks = [chunk async for chunk in model.astream("go")]
    assert _sum(chunks).tool_calls == [
        {"name": "add", "args": {"a": 5, "b": 6}, "id": "z", "type": "tool_call"}
    ]
    reply = await model.ainvoke("again")
    assert reply.content == "fine"


def test_position_counter_is_thread_safe() -> None:
    model = ScriptedChatModel([str(i) for i in range(200)])
    replies: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            reply = model.invoke("go")
            with lock:
                replies.append(str(reply.content))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(replies, key=int) == [str(i) for i in range(200)]
    assert model.remaining == 0


# --------------------------------------------------------------------------- inside LangGraph


def test_drives_a_langgraph_tool_loop_with_a_checkpointer() -> None:
    model = ScriptedChatModel([*_script(), "Still 2."])
    graph = _graph(model, InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}

    result = graph.invoke({"messages": [HumanMessage("set x to 2")]}, config)
    messages = result["messages"]
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert messages[4].content == "edited c1 (h-c1) -> x = 2"
    assert messages[-1].content == "Done: x is now 2."
    assert model.remaining == 1

    # Same thread: the checkpoint brings the whole conversation back.
    again = graph.invoke({"messages": [HumanMessage("and now?")]}, config)
    assert again["messages"][-1].content == "Still 2."
    assert len(model.calls[-1]) == 7
    assert model.remaining == 0


def test_stream_mode_messages_reassembles_tool_calls() -> None:
    model = ScriptedChatModel(_script())
    graph = _graph(model, InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t-stream"}}

    by_id: dict[str, list[AIMessageChunk]] = {}
    for message, metadata in graph.stream(
        {"messages": [HumanMessage("set x to 2")]}, config, stream_mode="messages"
    ):
        if isinstance(message, AIMessageChunk):
            assert metadata["langgraph_node"] == "agent"
            assert message.id is not None
            by_id.setdefault(message.id, []).append(message)

    replies = [_sum(chunks) for chunks in by_id.values()]
    assert [[(c["name"], c["args"]) for c in r.tool_calls] for r in replies] == [
        [("read_cell", {"cell": "c1"})],
        [("edit_cell", {"cell": "c1", "code": "x = 2", "expected_hash": "h-c1"})],
        [],
    ]
    assert replies[0].tool_calls[0]["id"] == "call_read"
    assert replies[2].content == "Done: x is now 2."
    # Each chunk is emitted once (a double dispatch would double the JSON arguments).
    state = graph.get_state(config)
    assert state.values["messages"][1].tool_calls == replies[0].tool_calls


async def test_async_graph_streams_messages_too() -> None:
    model = ScriptedChatModel(_script())
    graph = _graph(model, InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t-async"}}
    tool_calls: list[str] = []
    chunks: dict[str, AIMessageChunk] = {}
    async for message, _ in graph.astream(
        {"messages": [HumanMessage("set x to 2")]}, config, stream_mode="messages"
    ):
        if isinstance(message, AIMessageChunk) and message.id:
            chunks[message.id] = chunks[message.id] + message if message.id in chunks else message
    for chunk in chunks.values():
        tool_calls.extend(call["name"] for call in chunk.tool_calls)
    assert tool_calls == ["read_cell", "edit_cell"]
    final = await graph.aget_state(config)
    assert final.values["messages"][-1].content == "Done: x is now 2."


async def test_concurrent_async_threads_share_one_script_without_losing_turns() -> None:
    model = ScriptedChatModel([f"reply {i}" for i in range(10)])
    graph: CompiledStateGraph[Any, Any, Any, Any] = _graph(model, InMemorySaver())
    results = await asyncio.gather(
        *(
            graph.ainvoke(
                {"messages": [HumanMessage(f"hi {i}")]},
                {"configurable": {"thread_id": f"t{i}"}},
            )
            for i in range(10)
        )
    )
    assert sorted(r["messages"][-1].content for r in results) == sorted(
        f"reply {i}" for i in range(10)
    )


def test_works_with_langchain_create_agent() -> None:
    agents = pytest.importorskip("langchain.agents")
    model = ScriptedChatModel(
        [[{"name": "add", "args": {"a": 2, "b": 3}}], lambda m: f"It is {m[-1].content}."]
    )
    agent = agents.create_agent(model, tools=[add], checkpointer=InMemorySaver())
    result = agent.invoke(
        {"messages": [HumanMessage("2+3?")]}, {"configurable": {"thread_id": "ca"}}
    )
    assert result["messages"][-1].content == "It is 5."
    assert model.remaining == 0
