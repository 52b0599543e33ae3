"""The prebuilt pair agent: a real graph, a scripted model, a real marimo server."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from marimo_pair_tools.agent import DEFAULT_SYSTEM_PROMPT, budget_stop, create_pair_agent
from marimo_pair_tools.errors import ConfigurationError
from marimo_pair_tools.testing import ScriptedChatModel

from ._snapshot import assert_snapshot
from .conftest import thread, tool_results


def test_graph_diagram_and_prompt_snapshots(setup: Any) -> None:
    toolkit, _, _ = setup(["a = 1"])
    agent = create_pair_agent(
        ScriptedChatModel([]), toolkit, approve_deletes=True, checkpointer=InMemorySaver()
    )
    mermaid = agent.get_graph().draw_mermaid()
    for node in ("model", "guard", "approval", "tools"):
        assert node in mermaid
    assert_snapshot("agent_graph.mmd", mermaid)
    assert_snapshot("system_prompt.txt", DEFAULT_SYSTEM_PROMPT)


def test_edit_without_read_is_refused_by_the_graph(setup: Any) -> None:
    toolkit, path, [cell] = setup(["x = 1"])
    before = path.read_bytes()
    model = ScriptedChatModel(
        [
            [{"name": "edit_cell", "args": {"cell": cell, "code": "x = 2"}}],
            "I will read first next time.",
        ]
    )
    agent = create_pair_agent(model, toolkit)
    result = agent.invoke({"messages": [HumanMessage("set x to 2")]})
    [refusal] = tool_results(result["messages"])
    assert refusal.status == "error" and "read_cell" in refusal.content
    assert [e.rule for e in result["ledger"].events] == ["read_before_edit"]
    assert path.read_bytes() == before


def test_person_edit_between_read_and_edit_is_refused_by_cas(setup: Any, client: Any) -> None:
    toolkit, path, [cell] = setup(["rows = 10"])
    person = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({cell!r}, code='rows = 20  # person')\n"
    )

    def person_edits_then_agent_edits(messages: list[BaseMessage]) -> Any:
        assert client.execute(person, notebook=str(path)).success
        return [{"name": "edit_cell", "args": {"cell": cell, "code": "rows = 5"}}]

    model = ScriptedChatModel(
        [
            [{"name": "read_cell", "args": {"cell": cell}}],
            person_edits_then_agent_edits,
            "The person changed it; I kept their version.",
        ]
    )
    result = create_pair_agent(model, toolkit).invoke({"messages": [HumanMessage("go")]})
    read, edit = tool_results(result["messages"])
    assert read.status != "error"
    assert edit.status == "error" and "# person" in edit.content
    assert "rows = 20  # person" in path.read_text()
    assert "rows = 5" not in path.read_text()


def test_delete_flow_with_approval_reject_then_approve(setup: Any) -> None:
    toolkit, path, ids = setup(["base = 3", "derived = base + 1", "unrelated = 0"])
    base = ids[0]
    saver = InMemorySaver()

    def turns(ack: bool) -> list[Any]:
        return [
            [{"name": "delete_cell", "args": {"cell": base}}],  # refused: not inspected
            [{"name": "inspect_graph", "args": {"cell": base}}],
            [{"name": "delete_cell", "args": {"cell": base, "acknowledge_descendants": [ids[1]]}}],
            "done",
        ]

    model = ScriptedChatModel(turns(True))
    agent = create_pair_agent(model, toolkit, approve_deletes=True, checkpointer=saver)
    before = path.read_bytes()
    state = agent.invoke({"messages": [HumanMessage("remove base")]}, thread("reject"))
    [pending] = state["__interrupt__"]
    request = pending.value
    assert request["action_requests"][0]["name"] == "delete_cell"
    assert "base = 3" in request["action_requests"][0]["description"]
    assert ids[1] in request["action_requests"][0]["description"]
    assert path.read_bytes() == before
    state = agent.invoke(
        Command(resume={"decisions": [{"type": "reject", "message": "keep it"}]}), thread("reject")
    )
    assert "keep it" in tool_results(state["messages"])[-1].content
    assert "base = 3" in path.read_text()

    model2 = ScriptedChatModel(turns(True))
    agent2 = create_pair_agent(model2, toolkit, approve_deletes=True, checkpointer=saver)
    agent2.invoke({"messages": [HumanMessage("remove base")]}, thread("approve"))
    state = agent2.invoke(Command(resume={"decisions": [{"type": "approve"}]}), thread("approve"))
    assert tool_results(state["messages"])[-1].status != "error"
    assert "base = 3" not in path.read_text()
    rules = [e.rule for e in state["ledger"].events]
    assert rules == ["descendant_check"]


def test_two_refused_and_one_allowed_in_one_turn(setup: Any) -> None:
    toolkit, path, ids = setup(["a = 1", "b = a + 1"])
    before = path.read_bytes()
    model = ScriptedChatModel(
        [
            [
                {"name": "edit_cell", "args": {"cell": ids[0], "code": "a = 5"}},
                {"name": "delete_cell", "args": {"cell": ids[1]}},
                {"name": "read_cell", "args": {"cell": ids[0]}},
            ],
            "ok",
        ]
    )
    result = create_pair_agent(model, toolkit).invoke({"messages": [HumanMessage("x")]})
    statuses = {m.name: m.status for m in tool_results(result["messages"])}
    assert statuses == {"edit_cell": "error", "delete_cell": "error", "read_cell": "success"}
    assert len(result["ledger"].events) == 2
    assert ids[0] in result["ledger"].reads
    assert path.read_bytes() == before


def test_resume_after_checkpoint_keeps_the_ledger(setup: Any) -> None:
    toolkit, path, [cell] = setup(["m = 1"])
    saver = InMemorySaver()
    first = create_pair_agent(
        ScriptedChatModel([[{"name": "read_cell", "args": {"cell": cell}}], "read it"]),
        toolkit,
        checkpointer=saver,
    )
    first.invoke({"messages": [HumanMessage("read m")]}, thread("keep"))
    # A new graph object (as after a process restart) with the same checkpointer.
    second = create_pair_agent(
        ScriptedChatModel([[{"name": "edit_cell", "args": {"cell": cell, "code": "m = 2"}}], "ok"]),
        toolkit,
        checkpointer=saver,
    )
    state = second.invoke({"messages": [HumanMessage("now set m to 2")]}, thread("keep"))
    assert tool_results(state["messages"])[-1].status != "error"
    assert "m = 2" in path.read_text()


def test_streaming_updates_and_messages(setup: Any) -> None:
    toolkit, _, [cell] = setup(["s = 1"])
    model = ScriptedChatModel([[{"name": "read_cell", "args": {"cell": cell}}], "fine"])
    agent = create_pair_agent(model, toolkit)
    nodes = [
        next(iter(u))
        for u in agent.stream({"messages": [HumanMessage("x")]}, stream_mode="updates")
    ]
    assert nodes == ["model", "guard", "tools", "model"]
    model2 = ScriptedChatModel([[{"name": "read_cell", "args": {"cell": cell}}], "fine"])
    agent2 = create_pair_agent(model2, toolkit)
    chunks = list(agent2.stream({"messages": [HumanMessage("x")]}, stream_mode="messages"))
    calls = [c for msg, _ in chunks if isinstance(msg, AIMessage) for c in msg.tool_call_chunks]
    assert any(c.get("name") == "read_cell" for c in calls)


async def test_async_invoke(setup: Any) -> None:
    toolkit, _, [cell] = setup(["q = 1"])
    model = ScriptedChatModel([[{"name": "read_cell", "args": {"cell": cell}}], "ok"])
    agent = create_pair_agent(model, toolkit)
    result = await agent.ainvoke({"messages": [HumanMessage("x")]})
    assert tool_results(result["messages"])[0].status != "error"
    await toolkit.aclose()


def test_approval_without_checkpointer_is_a_clear_error(setup: Any) -> None:
    toolkit, _, _ = setup(["w = 1"])
    with pytest.raises(ConfigurationError, match="checkpointer"):
        create_pair_agent(ScriptedChatModel([]), toolkit, approve_deletes=True)


def test_step_budget_stops_the_agent(setup: Any) -> None:
    toolkit, _, [cell] = setup(["u = 1"])
    turns = [[{"name": "read_cell", "args": {"cell": cell}}]] * 5
    agent = create_pair_agent(ScriptedChatModel(turns), toolkit, max_steps=3)
    result = agent.invoke({"messages": [HumanMessage("loop")]})
    assert "step budget" in result["messages"][-1].content
    assert budget_stop(result["messages"][-1]) == "steps"
    assert [budget_stop(m) for m in result["messages"][:-1]] == [None] * 7


def test_failures_the_model_can_fix_come_back_as_error_messages(setup: Any) -> None:
    """Code that never ends and arguments that miss the schema: the run goes on."""
    toolkit, path, _ = setup(["v = 1"])
    before = path.read_bytes()
    model = ScriptedChatModel(
        [
            [
                {"name": "execute_code", "args": {"code": "while True:\n    pass", "timeout": 1}},
                {"name": "read_cell", "args": {}},
            ],
            "I will write code that ends, and name the cell.",
        ]
    )
    result = create_pair_agent(model, toolkit).invoke({"messages": [HumanMessage("go")]})
    timeout, bad_args = tool_results(result["messages"])
    assert timeout.status == "error" and "limit" in timeout.content
    assert bad_args.status == "error" and "cell" in bad_args.content
    assert "`cell` is required" in bad_args.content, bad_args.content
    assert "schema" in bad_args.content
    assert result["messages"][-1].content.startswith("I will write code")
    assert path.read_bytes() == before


def test_interrupt_on_with_an_edit_decision_runs_the_persons_version(setup: Any) -> None:
    toolkit, path, _ = setup(["p = 1"])
    model = ScriptedChatModel([[{"name": "create_cell", "args": {"code": "q = p + 1"}}], "created"])
    agent = create_pair_agent(
        model,
        toolkit,
        interrupt_on={"create_cell": ["edit", "reject"]},
        checkpointer=InMemorySaver(),
    )
    state = agent.invoke({"messages": [HumanMessage("add q")]}, thread("edit"))
    [pending] = state["__interrupt__"]
    assert pending.value["review_configs"][0]["allowed_decisions"] == ["edit", "reject"]
    assert "q = p + 1" not in path.read_text()
    # An answer outside the allowed decisions is asked again, not applied and not fatal.
    state = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), thread("edit"))
    [again] = state["__interrupt__"]
    assert "not an allowed decision" in again.value["action_requests"][0]["description"]
    assert "q = p + 1" not in path.read_text()
    edited = {"name": "create_cell", "args": {"code": "q = p + 100"}}
    state = agent.invoke(
        Command(resume={"decisions": [{"type": "edit", "edited_action": edited}]}), thread("edit")
    )
    assert tool_results(state["messages"])[-1].status != "error"
    assert "q = p + 100" in path.read_text() and "q = p + 1\n" not in path.read_text()


def test_an_edit_decision_naming_an_unknown_tool_is_refused_not_a_crash(setup: Any) -> None:
    toolkit, path, [cell] = setup(["r = 1"])
    model = ScriptedChatModel(
        [
            [{"name": "inspect_graph", "args": {"cell": cell}}],
            [{"name": "delete_cell", "args": {"cell": cell}}],
            "kept it",
        ]
    )
    agent = create_pair_agent(model, toolkit, approve_deletes=True, checkpointer=InMemorySaver())
    agent.invoke({"messages": [HumanMessage("remove r")]}, thread("unknown"))
    odd = {"type": "edit", "edited_action": {"name": "format_disk", "args": {}}}
    state = agent.invoke(Command(resume={"decisions": [odd]}), thread("unknown"))
    refusal = tool_results(state["messages"])[-1]
    assert refusal.status == "error" and "unknown tool" in refusal.content
    assert "r = 1" in path.read_text()


def test_execute_code_can_need_a_persons_approval(setup: Any) -> None:
    """docs/fence.md: where running Python in the person's kernel needs a yes, ask for it."""
    toolkit, _, _ = setup(["secret = 41"])
    code = "print('ran', secret + 1)"
    model = ScriptedChatModel([[{"name": "execute_code", "args": {"code": code}}], "done"])
    agent = create_pair_agent(
        model, toolkit, interrupt_on=["execute_code"], checkpointer=InMemorySaver()
    )
    state = agent.invoke({"messages": [HumanMessage("look")]}, thread("exec"))
    [pending] = state["__interrupt__"]
    assert pending.value["action_requests"][0]["args"]["code"] == code
    state = agent.invoke(
        Command(resume={"decisions": [{"type": "reject", "message": "not now"}]}), thread("exec")
    )
    [result] = tool_results(state["messages"])
    assert result.status == "error" and "not now" in result.content
    assert "ran" not in result.content


def test_an_approval_setting_that_cannot_apply_is_refused_when_built(setup: Any) -> None:
    toolkit, _, _ = setup(["z = 1"])
    model = ScriptedChatModel([])
    saver = InMemorySaver()
    with pytest.raises(ConfigurationError, match="names no tool of this agent: delete_cells"):
        create_pair_agent(model, toolkit, interrupt_on=["delete_cells"], checkpointer=saver)
    with pytest.raises(ConfigurationError, match="one string"):
        create_pair_agent(model, toolkit, interrupt_on="delete_cell", checkpointer=saver)
    with pytest.raises(ConfigurationError, match="no tool of this agent: install_packages"):
        create_pair_agent(
            model,
            toolkit,
            tools=["read_notebook"],
            interrupt_on=["install_packages"],
            checkpointer=saver,
        )
    with pytest.raises(ConfigurationError, match="non-empty subset"):
        create_pair_agent(
            model, toolkit, interrupt_on={"create_cell": ["approve", "maybe"]}, checkpointer=saver
        )
