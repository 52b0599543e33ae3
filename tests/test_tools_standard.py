"""LangChain's standard tool tests (langchain-tests) on every tool of the toolkit.

`ToolsUnitTests` check the tool contract (schema, init, invoke shape) without a
server. `ToolsIntegrationTests` invoke each tool, sync and async, with and without
a `ToolCall`, on a fresh notebook on a real marimo server; each example is also
checked to succeed there (the standard tests only check the message's shape).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.toolkit import TOOL_CLASSES, MarimoPairToolkit
from marimo_pair_tools.tools import PairSession

EXAMPLES: dict[str, dict[str, Any]] = {
    "list_notebooks": {},
    "read_notebook": {"offset": 0, "limit": 50},
    "read_cell": {"cell": "base"},
    "inspect_graph": {"cell": "base"},
    "execute_code": {"code": "print(base)", "timeout": 5},
    "create_cell": {"code": "_made = 1", "after": "base"},
    "edit_cell": {"cell": "derived", "old": "+ 1", "new": "+ 2"},
    "delete_cell": {"cell": "spare", "acknowledge_descendants": []},
    "move_cell": {"cell": "spare", "after": "base"},
    "run_cell": {"cell": "base"},
    "apply_changes": {
        "changes": [{"op": "create", "code": "_y = 2"}, {"op": "run", "cell": "base"}]
    },
    "install_packages": {"add": ["marimo"]},
    "set_ui_value": {"name": "slider", "value": 3},
    "get_errors": {},
    "get_variables": {"names": ["base"], "limit": 10},
    "interrupt_kernel": {},
}
"""One call per tool, valid on `CELLS` (cells are named so the examples need no ids)."""

EXAMPLES_MORE: dict[str, dict[str, Any]] = {
    "read_cell": {"cells": ["base", "derived", "spare"]},
    "edit_cell": {"cell": "derived", "code": "derived = base * 10"},
}
"""Second examples for tools with two ways to be called, checked to succeed too."""

CELLS = [
    "import marimo as mo",
    "base = 1",
    "derived = base + 1",
    "spare = 0",
    "slider = mo.ui.slider(0, 10)",
]
NAMES = ["imports", "base", "derived", "spare", "ui"]


def _name(cls: type[BaseTool]) -> str:
    return str(cls.model_fields["name"].default)


@pytest.mark.parametrize("tool_cls", TOOL_CLASSES, ids=lambda c: c.__name__)
class TestStandardToolContract(ToolsUnitTests):
    @pytest.fixture(autouse=True)
    def _tool_cls(self, tool_cls: type[BaseTool]) -> None:
        self._cls = tool_cls

    @property
    def tool_constructor(self) -> type[BaseTool]:
        return self._cls

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"session": PairSession(None, None)}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return EXAMPLES[_name(self._cls)]


@pytest.mark.parametrize("tool_cls", TOOL_CLASSES, ids=lambda c: c.__name__)
class TestStandardToolIntegration(ToolsIntegrationTests):
    @pytest.fixture(autouse=True)
    def _toolkit(
        self, tool_cls: type[BaseTool], shared_server: MarimoServer, new_notebook: Any
    ) -> Iterator[None]:
        path = new_notebook(CELLS, NAMES)
        # Raw tools (no policy): the standard tests call one tool alone, without the reads
        # the policy asks for first; the policy has tests of its own.
        self._toolkit = MarimoPairToolkit.from_server(
            shared_server, notebook=str(path), enforce=False, presence=False
        )
        self._cls = tool_cls
        yield
        self._toolkit.close()

    @property
    def tool_constructor(self) -> BaseTool:
        [tool] = [t for t in self._toolkit.get_tools() if t.name == _name(self._cls)]
        return tool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return EXAMPLES[_name(self._cls)]

    def test_examples_succeed(self, tool: BaseTool) -> None:
        for args in (EXAMPLES[tool.name], EXAMPLES_MORE.get(tool.name)):
            if args is None:
                continue
            message = tool.invoke({"type": "tool_call", "name": tool.name, "args": args, "id": "1"})
            assert isinstance(message, ToolMessage)
            assert message.status != "error", (tool.name, message.content)


def test_every_tool_has_an_example() -> None:
    names = {_name(cls) for cls in TOOL_CLASSES}
    assert names == set(EXAMPLES)
    assert set(EXAMPLES_MORE) <= names
