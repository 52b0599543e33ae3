"""LangChain's standard tool unit tests (langchain-tests) on every tool of the toolkit.

These check the tool contract (schema, init, invoke-shape) without a server: the
session has no notebook, and no test here performs I/O.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.tools import BaseTool
from langchain_tests.unit_tests import ToolsUnitTests

from marimo_pair_tools.toolkit import TOOL_CLASSES
from marimo_pair_tools.tools import PairSession

EXAMPLES: dict[str, dict[str, Any]] = {
    "list_notebooks": {},
    "read_notebook": {"offset": 0, "limit": 50},
    "read_cell": {"cell": "Hbol"},
    "inspect_graph": {"cell": "Hbol"},
    "execute_code": {"code": "print(1)", "timeout": 5},
    "create_cell": {"code": "x = 1", "after": "Hbol"},
    "edit_cell": {"cell": "Hbol", "old": "x = 1", "new": "x = 2"},
    "delete_cell": {"cell": "Hbol", "acknowledge_descendants": ["MJUe"]},
    "move_cell": {"cell": "Hbol", "after": "MJUe"},
    "run_cell": {"cell": "Hbol"},
    "apply_changes": {"changes": [{"op": "create", "code": "y = 2"}]},
    "install_packages": {"add": ["rich"]},
    "set_ui_value": {"name": "slider", "value": 3},
    "get_errors": {},
    "get_variables": {"names": ["df"], "limit": 10},
    "interrupt_kernel": {},
}


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
        name = self._cls.model_fields["name"].default
        return EXAMPLES[name]


def test_every_tool_has_an_example() -> None:
    names = {cls.model_fields["name"].default for cls in TOOL_CLASSES}
    assert names == set(EXAMPLES)
