"""Every refusal and error is bounded and names only remedies the model can take."""

from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path
from typing import Any

from marimo_pair_tools import guards
from marimo_pair_tools.guards import DELETE_CELL, RULE_ACKNOWLEDGE_DESCENDANTS, Ledger, Policy

PACKAGE = Path(guards.__file__).parent
SCHEMAS = Path(__file__).parent / "snapshots" / "tool_schemas.json"


def _properties(schema: Any, found: set[str]) -> set[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                found |= set(value)
            _properties(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _properties(value, found)
    return found


def _message_strings(path: Path) -> list[str]:
    """String literals of a module, docstrings left out (they speak to developers)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body:
            continue
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            docs.add(id(body[0].value))
        for first, second in itertools.pairwise(body):
            if isinstance(first, (ast.Assign, ast.AnnAssign)) and isinstance(second, ast.Expr):
                docs.add(id(second.value))
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


# Text that reaches the model: refusals, kernel errors, their remedies, tool results.
MODEL_FACING = ["guards.py", "_kernel_calls.py", "_diagnosis.py", "tools.py", "_tool_errors.py"]
MODEL_FACING += [f"kernel/{p.name}" for p in sorted((PACKAGE / "kernel").glob("*.py"))]
# `name=` that is no argument: a developer's configuration error, or a repr.
NOT_REMEDIES = {("tools.py", "notebook"), ("tools.py", "policy")}


def test_every_argument_a_message_names_is_an_argument_of_a_tool() -> None:
    arguments = _properties(json.loads(SCHEMAS.read_text(encoding="utf-8")), set())
    assert {"acknowledge_descendants", "cell", "offset"} <= arguments
    unknown = {
        (name, match)
        for name in MODEL_FACING
        for text in _message_strings(PACKAGE / name)
        for match in re.findall(r"\b([a-z_]+)=", text)
        if match not in arguments and (name, match) not in NOT_REMEDIES
    }
    assert unknown == set(), "a message tells the model to pass an argument no tool has"


def _graph_of(descendants: int) -> Ledger:
    ledger = guards.record_graph(
        Ledger(),
        "v1",
        "base",
        [f"c{i}" for i in range(descendants)],
        {f"c{i}": ["alpha", "beta", "gamma"] for i in range(descendants)},
    )
    return guards.record_read(ledger, "base", "h1")


def test_a_refused_delete_of_a_cell_with_5000_descendants_is_bounded() -> None:
    ledger = _graph_of(5_000)
    refused = guards.check(Policy(), ledger, DELETE_CELL, {"cell": "base"})
    assert not refused.allowed and refused.rule == RULE_ACKNOWLEDGE_DESCENDANTS
    assert len(refused.reason) < 2_000, len(refused.reason)
    assert "5,000 descendant" in refused.reason and "4,980 more" in refused.reason
    assert "acknowledge_descendants=true" in refused.reason
    # The remedy it names works.
    ok = guards.check(
        Policy(), ledger, DELETE_CELL, {"cell": "base", "acknowledge_descendants": True}
    )
    assert ok.allowed, ok.reason
    # Partly acknowledged: the missing ones are counted, not listed in full.
    partly = guards.check(
        Policy(),
        ledger,
        DELETE_CELL,
        {"cell": "base", "acknowledge_descendants": [f"c{i}" for i in range(10)]},
    )
    assert not partly.allowed and len(partly.reason) < 3_000, len(partly.reason)


def test_a_few_descendants_are_all_named_with_the_list_to_acknowledge() -> None:
    refused = guards.check(Policy(), _graph_of(3), DELETE_CELL, {"cell": "base"})
    assert "acknowledge_descendants=['c0', 'c1', 'c2']" in refused.reason
    assert "'c2' (loses alpha, beta, gamma)" in refused.reason


def test_approval_request_is_bounded() -> None:
    ledger = _graph_of(5_000)
    decision = guards.check(
        Policy(approve_deletes=True),
        ledger,
        DELETE_CELL,
        {"cell": "base", "acknowledge_descendants": True},
    )
    assert decision.needs_approval and len(decision.reason) < 1_000


def _call(tool: Any, **args: Any) -> Any:
    return tool.invoke({"type": "tool_call", "name": tool.name, "args": args, "id": "c1"})


def test_a_kernel_refusal_naming_hundreds_of_cells_is_bounded(tools_for: Any) -> None:
    readers = 400
    cells = ["base = 1"] + [f"r{i} = base + {i}" for i in range(readers)]
    tools, path, ids = tools_for(cells)
    before = path.read_bytes()
    _call(tools["read_cell"], cell=ids[0])
    # A rename removes the last definition of `base`, which 400 cells read.
    refused = _call(tools["edit_cell"], cell=ids[0], code="basis = 1")
    assert refused.status == "error"
    assert "400 cell(s)" in refused.content and "380 more" in refused.content, refused.content[:500]
    assert len(refused.content) < 4_000, len(refused.content)
    assert path.read_bytes() == before


def test_a_huge_reference_or_argument_name_is_never_echoed_back_whole(tools_for: Any) -> None:
    """A 1 MB cell reference, variable name or argument name: a short refusal, nothing sent.

    Found by attack 16 (#10): the error repeated the reference, twice for a guard's text.
    """
    tools, path, ids = tools_for(["x = 1", "y = x + 1"], ["x", "_"])
    huge = "A" * 1_000_000
    before = path.read_bytes()
    calls = [
        ("read_cell", {"cell": huge}),
        ("read_cell", {"cells": [ids[0], huge]}),
        ("inspect_graph", {"cell": huge}),
        ("edit_cell", {"cell": huge, "code": "x = 5"}),
        ("delete_cell", {"cell": huge}),
        ("delete_cell", {"cell": "x", "acknowledge_descendants": [huge]}),
        ("move_cell", {"cell": ids[1], "before": huge}),
        ("run_cell", {"cell": huge}),
        ("create_cell", {"code": "z = 1", "after": huge}),
        ("apply_changes", {"changes": [{"op": "run", "cell": huge}]}),
        ("set_ui_value", {"name": huge, "value": 1}),
        ("get_variables", {"names": [huge]}),
        (
            "edit_cell",
            {"cell": "x", "code": "x = 2", **{f"{huge[:50_000]}{i}": 1 for i in range(30)}},
        ),
    ]
    for name, args in calls:
        result = _call(tools[name], **args)
        assert result.status == "error", (name, result.content[:300])
        assert len(result.content) < 2_000, (name, len(result.content))
        assert "1,000,000 characters" in result.content or "more" in result.content, (
            name,
            result.content[:300],
        )
    assert path.read_bytes() == before
    # A reference as long as a name can be is still looked up (and named in the reply).
    longest = "n" * guards.MAX_REFERENCE_CHARS
    missing = _call(tools["read_cell"], cell=longest)
    assert missing.status == "error" and longest in missing.content
