"""Every tool, converted by each provider's own LangChain package, stays portable.

Offline: the chat models are built with dummy keys and only their request
payloads are read; nothing is sent. A tool outside the common subset fails the
whole request at the provider, so each payload is checked against the rules in
`marimo_pair_tools.schemas`.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import BaseTool

from marimo_pair_tools.schemas import portability_problems, portable_schema
from marimo_pair_tools.toolkit import TOOL_CLASSES
from marimo_pair_tools.tools import ApplyChangesInput, PairSession

HELLO = [HumanMessage("hello")]


@pytest.fixture(scope="module")
def tools() -> list[BaseTool]:
    return [cls(session=PairSession(None, None)) for cls in TOOL_CLASSES]


def _assert_portable(schemas: dict[str, dict[str, Any]]) -> None:
    assert len(schemas) == len(TOOL_CLASSES)
    problems = {name: portability_problems(schema) for name, schema in schemas.items()}
    assert not {name: found for name, found in problems.items() if found}


def test_openai_strict_payload(tools: list[BaseTool]) -> None:
    from langchain_openai import ChatOpenAI

    bound = ChatOpenAI(model="gpt-4.1", api_key="sk-test").bind_tools(tools, strict=True)
    payload = bound.bound._get_request_payload(HELLO, **bound.kwargs)  # type: ignore[attr-defined]
    functions = [tool["function"] for tool in payload["tools"]]
    assert all(function["strict"] is True for function in functions)
    _assert_portable({f["name"]: f["parameters"] for f in functions})
    # What the model reads is our schema, unchanged by the strict conversion.
    by_name = {f["name"]: f["parameters"] for f in functions}
    assert by_name["apply_changes"] == ApplyChangesInput.model_json_schema()


def test_anthropic_strict_payload(tools: list[BaseTool]) -> None:
    from langchain_anthropic import ChatAnthropic
    from langchain_anthropic.chat_models import convert_to_anthropic_tool

    model = ChatAnthropic(model="claude-sonnet-4-5", api_key="sk-ant-test")  # type: ignore[call-arg]
    bound = model.bind_tools(tools, strict=True)
    payload = model._get_request_payload(HELLO, **bound.kwargs)  # type: ignore[attr-defined]
    assert all(tool["strict"] is True for tool in payload["tools"])
    _assert_portable({tool["name"]: tool["input_schema"] for tool in payload["tools"]})
    assert {t.name: convert_to_anthropic_tool(t)["input_schema"] for t in tools} == {
        tool["name"]: tool["input_schema"] for tool in payload["tools"]
    }


def _gemini_declarations(tools: list[BaseTool]) -> dict[str, dict[str, Any]]:
    from langchain_google_genai import ChatGoogleGenerativeAI

    # The converter logs each key Gemini does not take (additionalProperties) and drops it.
    logging.getLogger("langchain_google_genai").setLevel(logging.ERROR)
    model = ChatGoogleGenerativeAI(model="gemini-2.5-flash", google_api_key="test")
    bound = model.bind_tools(tools)
    request = model._prepare_request(HELLO, **bound.kwargs)  # type: ignore[attr-defined]
    [tool] = request["config"].tools
    # A tool without arguments is declared without parameters.
    return {
        d.name: d.parameters.model_dump(mode="json", exclude_none=True)
        if d.parameters
        else {"type": "OBJECT"}
        for d in tool.function_declarations
    }


_GEMINI_TYPES = {
    "string": "STRING",
    "integer": "INTEGER",
    "number": "NUMBER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}


def _same_types(ours: dict[str, Any], theirs: dict[str, Any], path: str) -> list[str]:
    """Where Gemini's declaration lost a type our schema has (e.g. objects as strings)."""
    options = [o for o in ours.get("anyOf", [ours]) if o.get("type") != "null"]
    if len(options) > 1:
        got = theirs.get("any_of") or []
        if len(got) != len(options):
            return [f"{path}: {len(options)} alternatives became {len(got)}"]
        return [
            p
            for i, (o, t) in enumerate(zip(options, got, strict=True))
            for p in _same_types(o, t, f"{path}|{i}")
        ]
    [option] = options
    problems = []
    if _GEMINI_TYPES[option["type"]] != theirs.get("type"):
        problems.append(f"{path}: {option['type']} became {theirs.get('type')}")
    if option["type"] == "array":
        problems += _same_types(option["items"], theirs.get("items") or {}, f"{path}[]")
    for name, sub in (option.get("properties") or {}).items():
        got = (theirs.get("properties") or {}).get(name)
        if got is None:
            problems.append(f"{path}.{name}: dropped")
        else:
            problems += _same_types(sub, got, f"{path}.{name}")
    return problems


def test_gemini_declarations_keep_every_type(tools: list[BaseTool]) -> None:
    declared = _gemini_declarations(tools)
    assert set(declared) == {t.name for t in tools}
    problems = []
    for tool in tools:
        ours = portable_schema(tool.args_schema)  # type: ignore[arg-type]
        problems += _same_types(ours, declared[tool.name], tool.name)
    assert not problems
    # apply_changes reaches Gemini as a list of objects with their fields, not strings.
    items = declared["apply_changes"]["properties"]["changes"]["items"]
    assert items["type"] == "OBJECT"
    assert {"op", "cell", "code", "old", "new", "before", "after"} <= set(items["properties"])
    assert items["properties"]["op"]["enum"] == [
        "create",
        "edit",
        "replace",
        "delete",
        "move",
        "run",
    ]


def test_ollama_payload(tools: list[BaseTool]) -> None:
    from langchain_ollama import ChatOllama

    bound = ChatOllama(model="llama3.1").bind_tools(tools)
    params = bound.bound._chat_params(HELLO, **bound.kwargs)  # type: ignore[attr-defined]
    _assert_portable({t["function"]["name"]: t["function"]["parameters"] for t in params["tools"]})


def test_the_checker_finds_what_providers_refuse() -> None:
    """The rules check is not vacuous: pydantic's own schemas break them."""
    from marimo_pair_tools.models import CreateCell

    raw = CreateCell.model_json_schema()
    found = "\n".join(portability_problems(raw))
    assert "'default'" in found and "'const'" in found
    bad = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "a": {"oneOf": [{"type": "string"}]},
            "b": {"description": "any"},
            "c": {"type": "integer", "minimum": 0},
            "d": {"type": "object", "properties": {"e": {"type": "string"}}},
        },
        "required": ["a", "b", "c"],
    }
    found = "\n".join(portability_problems(bad))
    for expected in (
        "$.a: uses 'oneOf'",
        "$.b: has no type",
        "$.c: uses 'minimum'",
        "$: not every property is required",
        "$.d: object without additionalProperties",
    ):
        assert expected in found
    assert portability_problems(portable_schema(CreateCell)) == []
