"""What the model sees of the tools: few tokens, and arguments it can get wrong and recover.

No server: validation runs before any I/O. LangGraph's `ToolNode` and
`create_agent` are driven by a scripted model (`bind_tools` returns itself).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from marimo_pair_tools._tokens import count_tokens, tool_spec_tokens
from marimo_pair_tools.agent import DEFAULT_SYSTEM_PROMPT
from marimo_pair_tools.testing import ScriptedChatModel
from marimo_pair_tools.toolkit import TOOL_CLASSES
from marimo_pair_tools.tools import ApplyChangesInput, PairSession

TOKEN_BUDGET = 2_400
"""o200k tokens for every tool spec plus the prebuilt agent's system prompt (issue 15)."""


@pytest.fixture
def tools() -> dict[str, BaseTool]:
    return {t.name: t for t in (cls(session=PairSession(None, None)) for cls in TOOL_CLASSES)}


def test_o200k_counts_like_tiktoken() -> None:
    # Known o200k encodings; the table is marimo's copy, checked against tiktoken's hash.
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    assert count_tokens("marimo notebook") == 3


def test_tool_specs_and_prompt_fit_the_budget(tools: dict[str, BaseTool]) -> None:
    per_tool = tool_spec_tokens(list(tools.values()))
    total = sum(per_tool.values()) + count_tokens(DEFAULT_SYSTEM_PROMPT)
    assert total <= TOKEN_BUDGET, per_tool
    # No one tool dominates (apply_changes was 39% of the whole).
    assert per_tool["apply_changes"] < 0.2 * total


def _parse(tool: BaseTool, args: dict[str, Any]) -> Any:
    return tool._parse_input(args, None)  # type: ignore[attr-defined]


def test_null_means_left_out_and_json_strings_are_decoded(tools: dict[str, BaseTool]) -> None:
    # A strict provider sends every field, null for the ones not wanted.
    args = _parse(
        tools["edit_cell"],
        {
            "cell": "a",
            "code": None,
            "old": "x",
            "new": "y",
            "replace_all": None,
            "run": None,
            "acknowledge_descendants": None,
        },
    )
    assert args["run"] is True and args["replace_all"] is False
    # A sloppy model sends a list as a JSON string; a string field keeps its text.
    assert _parse(tools["read_cell"], {"cells": '["a", "b"]'})["cells"] == ["a", "b"]
    assert _parse(tools["edit_cell"], {"cell": "a", "code": "[1]"})["code"] == "[1]"
    # A widget value stays as sent: whether '["APAC"]' is a list (a dropdown) or text (a
    # text box) is decided in the kernel, by the widget (test_attack_13_15, test_eval_sloppy).
    ui = tools["set_ui_value"]
    assert _parse(ui, {"name": "d", "value": '["APAC"]'})["value"] == '["APAC"]'
    assert _parse(ui, {"name": "d", "value": ["APAC"]})["value"] == ["APAC"]
    assert _parse(ui, {"name": "t", "value": "APAC"})["value"] == "APAC"
    assert _parse(ui, {"name": "t", "value": '{"a": 1}'})["value"] == '{"a": 1}'
    assert _parse(tools["get_variables"], {"limit": "5"})["limit"] == 5
    batch = _parse(tools["apply_changes"], {"changes": '[{"op": "create", "code": "z = 1"}]'})
    assert batch["changes"][0].given() == {"op": "create", "code": "z = 1"}


def test_gemini_style_filled_fields_are_left_out() -> None:
    """Gemini's converter drops nullability inside array items: every field comes filled."""
    item = {
        "op": "create",
        "cell": "",
        "code": "z = 1",
        "old": "",
        "new": "",
        "replace_all": False,
        "before": "",
        "after": "",
        "run": True,
        "acknowledge_descendants": [],
    }
    [change] = ApplyChangesInput.model_validate({"changes": [item]}).typed()
    assert change.model_dump(exclude_defaults=True) == {"code": "z = 1"}


def test_limits_stated_in_descriptions_are_enforced(tools: dict[str, BaseTool]) -> None:
    spec = tools["execute_code"].tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    assert "600" in spec["properties"]["timeout"]["description"]
    with pytest.raises(ValueError, match="less than or equal to 600"):
        _parse(tools["execute_code"], {"code": "1", "timeout": 601})
    with pytest.raises(ValueError, match="at most 50"):
        _parse(tools["read_cell"], {"cells": [str(i) for i in range(51)]})
    with pytest.raises(ValueError, match="at least 1"):
        _parse(tools["apply_changes"], {"changes": []})


def test_hidden_fields_are_accepted_but_not_shown(tools: dict[str, BaseTool]) -> None:
    schema = tools["edit_cell"].tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    assert "expected_hash" not in schema["properties"]
    assert (
        _parse(tools["edit_cell"], {"cell": "a", "code": "x", "expected_hash": "h"})[
            "expected_hash"
        ]
        == "h"
    )


CROSS_FIELD = [
    ("edit_cell", {"cell": "a", "code": "x = 1", "old": "x"}, "give either `code`"),
    ("edit_cell", {"cell": "a", "old": "x"}, "`old` needs `new`"),
    ("move_cell", {"cell": "a"}, "exactly one of `before` or `after`"),
    ("create_cell", {"code": "x = 1", "before": "a", "after": "b"}, "not both"),
    ("read_cell", {}, "`cell` is required"),
    (
        "apply_changes",
        {"changes": [{"op": "edit", "cell": "a", "old": "x"}]},
        "change 0 (edit): old does not apply to edit",
    ),
    ("apply_changes", {"changes": [{"op": "move", "cell": "a"}]}, "a move needs `before`"),
    ("apply_changes", {"changes": [{"op": "replace", "cell": "a"}]}, "`old` is required"),
]


def _calls() -> list[dict[str, Any]]:
    return [
        {"name": name, "args": args, "id": f"call{i}"}
        for i, (name, args, _) in enumerate(CROSS_FIELD)
    ]


def _check(messages: list[Any]) -> None:
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert len(results) == len(CROSS_FIELD)
    for message, (name, _, expected) in zip(results, CROSS_FIELD, strict=True):
        assert message.status == "error", (name, message.content)
        assert expected in message.content, (name, message.content)
        assert "Fix the arguments" in message.content


def test_cross_field_errors_reach_the_model_in_tool_node(tools: dict[str, BaseTool]) -> None:
    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode(list(tools.values())))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    out = graph.compile().invoke({"messages": [AIMessage(content="", tool_calls=_calls())]})
    _check(out["messages"])


def test_cross_field_errors_reach_the_model_in_create_agent(tools: dict[str, BaseTool]) -> None:
    from langchain.agents import create_agent

    model = ScriptedChatModel([_calls(), "Fixed nothing."])
    agent = create_agent(model, list(tools.values()))
    out = agent.invoke({"messages": [HumanMessage("go")]})
    _check(out["messages"])
