"""`MarimoGuardMiddleware` in `langchain.agents.create_agent`: a scripted model, a real server."""

from __future__ import annotations

import importlib
import subprocess
import sys
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from marimo_pair_tools import MarimoClient
from marimo_pair_tools.errors import ConfigurationError
from marimo_pair_tools.middleware import MarimoGuardMiddleware
from marimo_pair_tools.testing import ScriptedChatModel
from marimo_pair_tools.toolkit import MarimoPairToolkit

from .conftest import thread, tool_results


def agent_for(
    toolkit: MarimoPairToolkit, turns: list[Any], **options: Any
) -> tuple[Any, ScriptedChatModel]:
    checkpointer = options.pop("checkpointer", None)
    extra_tools = options.pop("extra_tools", [])
    model = ScriptedChatModel(turns)
    agent = create_agent(
        model,
        tools=[*toolkit.get_tools(enforce=False), *extra_tools],
        middleware=[MarimoGuardMiddleware(**options)],
        checkpointer=checkpointer,
    )
    return agent, model


def test_edit_without_read_is_refused_and_nothing_changes(setup: Any) -> None:
    toolkit, path, [cell] = setup(["x = 1"])
    before = path.read_bytes()
    agent, model = agent_for(
        toolkit,
        [[{"name": "edit_cell", "args": {"cell": cell, "code": "x = 2"}}], "I will read first."],
    )
    state = agent.invoke({"messages": [HumanMessage("set x to 2")]})
    [refusal] = tool_results(state["messages"])
    assert refusal.status == "error"
    assert "read_cell" in refusal.content and "nothing was changed" in refusal.content
    assert [e.rule for e in state["ledger"].events] == ["read_before_edit"]
    assert path.read_bytes() == before
    assert model.remaining == 0


def test_code_that_never_ends_is_an_error_message_not_a_crash(setup: Any) -> None:
    toolkit, path, _ = setup(["v = 1"])
    before = path.read_bytes()
    loop = {"name": "execute_code", "args": {"code": "while True:\n    pass", "timeout": 1}}
    agent, model = agent_for(toolkit, [[loop], "That loop never ends; I will fix it."])
    state = agent.invoke({"messages": [HumanMessage("try it")]})
    [timeout] = tool_results(state["messages"])
    assert timeout.status == "error" and "limit" in timeout.content
    assert model.remaining == 0 and path.read_bytes() == before


def test_read_then_edit_runs_with_the_read_hash(setup: Any) -> None:
    toolkit, path, [cell] = setup(["x = 1"])
    agent, _ = agent_for(
        toolkit,
        [
            [{"name": "read_cell", "args": {"cell": cell}}],
            # No expected_hash: the middleware fills it from the ledger.
            [{"name": "edit_cell", "args": {"cell": cell, "code": "x = 2"}}],
            "x is 2 now.",
        ],
    )
    state = agent.invoke({"messages": [HumanMessage("set x to 2")]})
    read, edit = tool_results(state["messages"])
    assert read.status != "error" and edit.status != "error"
    assert "x = 2" in path.read_text()
    ledger = state["ledger"]
    assert ledger.events == []
    assert ledger.reads[cell] == edit.artifact["changes"][0]["code_hash"]


def test_person_edit_after_read_loses_cas_and_counts_as_a_read(
    setup: Any, client: MarimoClient
) -> None:
    toolkit, path, [cell] = setup(["rows = 10"])
    person = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({cell!r}, code='rows = 20  # person')\n"
    )

    def person_edits_then_agent_edits(messages: list[BaseMessage]) -> Any:
        assert client.execute(person, notebook=str(path)).success
        return [{"name": "edit_cell", "args": {"cell": cell, "code": "rows = 5"}}]

    agent, _ = agent_for(
        toolkit,
        [
            [{"name": "read_cell", "args": {"cell": cell}}],
            person_edits_then_agent_edits,
            "The person changed it; I kept their version.",
        ],
    )
    state = agent.invoke({"messages": [HumanMessage("go")]})
    read, edit = tool_results(state["messages"])
    assert edit.status == "error" and "# person" in edit.content
    assert "rows = 20  # person" in path.read_text()
    # The error showed the current code: the ledger now holds its hash as read.
    assert state["ledger"].reads[cell] != read.artifact["code_hash"]


def test_delete_without_inspect_is_refused(setup: Any) -> None:
    toolkit, path, ids = setup(["base = 3", "derived = base + 1"])
    agent, _ = agent_for(
        toolkit, [[{"name": "delete_cell", "args": {"cell": ids[0]}}], "I will inspect first."]
    )
    state = agent.invoke({"messages": [HumanMessage("remove base")]})
    [refusal] = tool_results(state["messages"])
    assert refusal.status == "error" and "inspect_graph" in refusal.content
    assert [e.rule for e in state["ledger"].events] == ["descendant_check"]
    assert "base = 3" in path.read_text()


def delete_turns(cell: str, descendant: str) -> list[Any]:
    return [
        [{"name": "inspect_graph", "args": {"cell": cell}}],
        [{"name": "delete_cell", "args": {"cell": cell, "acknowledge_descendants": [descendant]}}],
        "done",
    ]


def test_approval_reject_keeps_the_cell_and_approve_deletes_it(setup: Any) -> None:
    toolkit, path, ids = setup(["base = 3", "derived = base + 1", "unrelated = 0"])
    saver = InMemorySaver()

    agent, _ = agent_for(
        toolkit, delete_turns(ids[0], ids[1]), approve_deletes=True, checkpointer=saver
    )
    before = path.read_bytes()
    state = agent.invoke({"messages": [HumanMessage("remove base")]}, thread("reject"))
    [pending] = state["__interrupt__"]
    [action] = pending.value["action_requests"]
    assert action["name"] == "delete_cell"
    assert "base = 3" in action["description"] and ids[1] in action["description"]
    assert pending.value["review_configs"] == [
        {"action_name": "delete_cell", "allowed_decisions": ["approve", "edit", "reject"]}
    ]
    assert path.read_bytes() == before
    state = agent.invoke(
        Command(resume={"decisions": [{"type": "reject", "message": "keep it"}]}),
        thread("reject"),
    )
    rejected = tool_results(state["messages"])[-1]
    assert rejected.status == "error" and "keep it" in rejected.content
    assert "base = 3" in path.read_text()

    agent, _ = agent_for(
        toolkit, delete_turns(ids[0], ids[1]), approve_deletes=True, checkpointer=saver
    )
    agent.invoke({"messages": [HumanMessage("remove base")]}, thread("approve"))
    state = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), thread("approve"))
    deleted = tool_results(state["messages"])[-1]
    assert deleted.status != "error"
    assert "base = 3" not in path.read_text()
    assert ids[0] not in state["ledger"].descendant_checks
    assert state["ledger"].events == []


def test_edit_decision_is_checked_by_the_policy(setup: Any) -> None:
    toolkit, path, ids = setup(["base = 3", "derived = base + 1"])
    agent, _ = agent_for(
        toolkit,
        delete_turns(ids[0], ids[1]),
        approve_deletes=True,
        checkpointer=InMemorySaver(),
    )
    agent.invoke({"messages": [HumanMessage("remove base")]}, thread("edit"))
    # The person redirects the delete to a cell the agent never inspected: refused.
    edited = {"name": "delete_cell", "args": {"cell": ids[1]}}
    state = agent.invoke(
        Command(resume={"decisions": [{"type": "edit", "edited_action": edited}]}),
        thread("edit"),
    )
    refused = tool_results(state["messages"])[-1]
    assert refused.status == "error" and "inspect_graph" in refused.content
    assert "base = 3" in path.read_text() and "derived = base + 1" in path.read_text()


def test_other_tools_pass_through_and_enforcing_tools_are_a_setup_error(setup: Any) -> None:
    toolkit, _, [cell] = setup(["y = 1"])

    @tool
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    agent, _ = agent_for(
        toolkit, [[{"name": "shout", "args": {"text": "hi"}}], "ok"], extra_tools=[shout]
    )
    state = agent.invoke({"messages": [HumanMessage("x")]})
    assert tool_results(state["messages"])[0].content == "HI"

    enforcing = create_agent(
        ScriptedChatModel([[{"name": "read_cell", "args": {"cell": cell}}], "ok"]),
        tools=toolkit.get_tools(),
        middleware=[MarimoGuardMiddleware()],
    )
    with pytest.raises(ConfigurationError, match="enforce=False"):
        enforcing.invoke({"messages": [HumanMessage("x")]})


async def test_async_read_then_edit(setup: Any) -> None:
    toolkit, path, [cell] = setup(["z = 1"])
    agent, _ = agent_for(
        toolkit,
        [
            [{"name": "edit_cell", "args": {"cell": cell, "code": "z = 2"}}],
            [{"name": "read_cell", "args": {"cell": cell}}],
            [{"name": "edit_cell", "args": {"cell": cell, "code": "z = 2"}}],
            "ok",
        ],
    )
    state = await agent.ainvoke({"messages": [HumanMessage("x")]})
    statuses = [m.status for m in tool_results(state["messages"])]
    assert statuses == ["error", "success", "success"]
    assert "z = 2" in path.read_text()
    await toolkit.aclose()


def test_import_without_langchain_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "langchain" or name.startswith("langchain."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "langchain", None)  # None makes `import langchain` fail
    monkeypatch.delitem(sys.modules, "marimo_pair_tools.middleware")
    with pytest.raises(ImportError, match=r"pip install 'marimo-pair-tools\[middleware\]'"):
        importlib.import_module("marimo_pair_tools.middleware")


def test_the_package_never_imports_the_middleware() -> None:
    code = (
        "import sys, marimo_pair_tools, marimo_pair_tools.agent, marimo_pair_tools.toolkit\n"
        "assert 'marimo_pair_tools.middleware' not in sys.modules\n"
        "assert 'langchain' not in sys.modules, 'langchain is an optional extra'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_approvals_without_a_checkpointer_refuse_to_start(setup: Any) -> None:
    toolkit, path, [cell] = setup(["gone = 1"])
    before = path.read_bytes()
    agent, model = agent_for(
        toolkit, [[{"name": "inspect_graph", "args": {"cell": cell}}]], approve_deletes=True
    )
    with pytest.raises(ConfigurationError, match="needs a checkpointer"):
        agent.invoke({"messages": [HumanMessage("delete it")]})
    assert model.remaining == 1, "refused before the model was asked anything"
    assert path.read_bytes() == before
    # With one, the same configuration runs.
    agent, model = agent_for(
        toolkit,
        ["Nothing to do."],
        approve_deletes=True,
        checkpointer=InMemorySaver(),
    )
    agent.invoke({"messages": [HumanMessage("hello")]}, thread())
    assert model.remaining == 0
