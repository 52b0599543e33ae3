"""Attacks on issues 13 (real notebooks) and 15 (portable schemas, batched reads).

Each test is one attack on a real marimo server (the fixtures of `conftest.py`) or on
the real provider converters. A test that passes is a defence that held; a test marked
``xfail(strict=True, reason="BREAK: ...")`` is a break: it asserts what the issue or the
notes promise, and fails today. Nothing here fixes product code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import BaseTool

from marimo_pair_tools.toolkit import TOOL_CLASSES, MarimoPairToolkit

pytest.importorskip("duckdb", reason="the SQL attacks need duckdb (the `test` extra)")


def call(tool: BaseTool, **args: Any) -> ToolMessage:
    message = tool.invoke({"type": "tool_call", "name": tool.name, "args": args, "id": "c1"})
    assert isinstance(message, ToolMessage)
    return message


def text(message: ToolMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)


def cell_with(tools: dict[str, BaseTool], needle: str) -> str:
    for cell in call(tools["read_notebook"]).artifact["cells"]:
        if needle in call(tools["read_cell"], cell=cell["id"]).artifact["code"]:
            return str(cell["id"])
    raise AssertionError(f"no cell holds {needle!r}")


def statuses(tools: dict[str, BaseTool]) -> dict[str, Any]:
    return {c["id"]: c["status"] for c in call(tools["read_notebook"]).artifact["cells"]}


# ===================================================================== issue 13: SQL graph

SQL_ATTACH = [
    "import marimo as mo",
    "_a = mo.sql(\"ATTACH ':memory:' AS db\")",
    '_c = mo.sql("CREATE TABLE db.trips AS SELECT 1 AS fare")',
    'total = mo.sql("SELECT sum(fare) AS s FROM db.main.trips")',
    'other = mo.sql("SELECT * FROM db.trips")',
]


def test_delete_of_attach_needs_the_qualified_readers_acknowledged(tools_for: Any) -> None:
    """ATTACH defines catalog `db`; every `db.…` reader is a descendant."""
    tools, path, ids = tools_for(SQL_ATTACH)
    focus = call(tools["inspect_graph"], cell=ids[1]).artifact["focus"]
    assert {ids[3], ids[4]} <= set(focus["descendants"]), focus
    before = path.read_bytes()
    refused = call(tools["delete_cell"], cell=ids[1])
    assert refused.status == "error" and "acknowledge" in text(refused)
    assert path.read_bytes() == before


def test_delete_of_attach_is_guarded_when_only_a_create_uses_the_catalog(
    tools_for: Any,
) -> None:
    tools, path, ids = tools_for(SQL_ATTACH[:3])
    assert statuses(tools)[ids[2]] == "idle"
    call(tools["inspect_graph"], cell=ids[1])
    before = path.read_bytes()
    result = call(tools["delete_cell"], cell=ids[1])
    if result.status != "error":
        # What the person then sees: the CREATE cell breaks when it runs again.
        call(tools["run_cell"], cell=ids[2])
        broken = call(tools["read_cell"], cell=ids[2]).artifact
        assert broken["status"] == "idle", broken["errors"]
    assert path.read_bytes() == before


def test_delete_of_a_dataframe_a_sql_cell_queries_by_name_is_guarded(tools_for: Any) -> None:
    tools, path, ids = tools_for(
        [
            "import marimo as mo",
            "import pandas as pd",
            'df = pd.DataFrame({"a": [1, 2]})',
            'n = mo.sql("SELECT count(*) AS n FROM df")',
        ]
    )
    focus = call(tools["inspect_graph"], cell=ids[2]).artifact["focus"]
    assert [d["uses"] for d in focus["dependents"] if d["id"] == ids[3]] == [["df"]]
    before = path.read_bytes()
    refused = call(tools["delete_cell"], cell=ids[2])
    assert refused.status == "error" and ids[3] in text(refused)
    assert path.read_bytes() == before


def test_case_insensitive_table_reader_is_a_descendant(tools_for: Any) -> None:
    """duckdb folds case: `FROM SALES` reads `CREATE TABLE Sales` (marimo's graph misses it in
    notebook order; ours keeps the reverse-order edge)."""
    tools, _, ids = tools_for(
        [
            "import marimo as mo",
            '_c = mo.sql("CREATE TABLE Sales AS SELECT 1 AS x")',
            '_r = mo.sql("SELECT * FROM sales")',
            '_q = mo.sql("SELECT * FROM SALES")',
        ]
    )
    focus = call(tools["inspect_graph"], cell=ids[1]).artifact["focus"]
    assert {ids[2], ids[3]} <= set(focus["descendants"]), focus


@pytest.mark.xfail(
    strict=True,
    reason="LIMIT (inherited from marimo's static analysis): a table created with an "
    "f-string name (CREATE TABLE {name}) is seen as defining '1', so its reader "
    "(`FROM trips`) is no descendant and deleting the creator needs no acknowledgement",
)
def test_fstring_created_table_delete_is_guarded(tools_for: Any) -> None:
    tools, _, ids = tools_for(
        [
            "import marimo as mo",
            'name = "trips"',
            '_c = mo.sql(f"CREATE TABLE {name} AS SELECT 1 AS fare")',
            'fares = mo.sql("SELECT fare FROM trips")',
        ]
    )
    assert statuses(tools)[ids[3]] == "idle"  # the reader works while the table exists
    focus = call(tools["inspect_graph"], cell=ids[2]).artifact["focus"]
    assert ids[3] in focus["descendants"], focus


def test_sql_and_python_defining_one_name_is_refused_as_marimo_counts_it(tools_for: Any) -> None:
    """marimo counts a SQL table `t` and a Python `t` as one name defined twice."""
    tools, path, _ = tools_for(
        ["import marimo as mo", '_c = mo.sql("CREATE TABLE t AS SELECT 1 AS x")']
    )
    before = path.read_bytes()
    refused = call(tools["create_cell"], code="t = 5")
    assert refused.status == "error" and "more than one cell" in text(refused)
    assert path.read_bytes() == before


def test_same_leaf_in_two_schemas_is_not_refused_as_multiply_defined(tools_for: Any) -> None:
    tools, path, _ = tools_for(
        [
            "import marimo as mo",
            '_s = mo.sql("CREATE SCHEMA a; CREATE SCHEMA b")',
            '_c = mo.sql("CREATE TABLE a.t AS SELECT 1 AS x")',
        ]
    )
    made = call(tools["create_cell"], code='_d = mo.sql("CREATE TABLE b.t AS SELECT 2 AS x")')
    assert made.status != "error", text(made)
    assert "CREATE TABLE b.t" in path.read_text(encoding="utf-8")


def test_drop_table_cell_counts_as_a_reader_of_the_table(tools_for: Any) -> None:
    """Deleting the CREATE of a table another cell DROPs: the DROP cell breaks."""
    tools, _, ids = tools_for(
        [
            "import marimo as mo",
            '_c = mo.sql("CREATE TABLE t AS SELECT 1 AS x")',
            '_d = mo.sql("DROP TABLE t")',
        ]
    )
    focus = call(tools["inspect_graph"], cell=ids[1]).artifact["focus"]
    assert ids[2] in focus["descendants"], focus


def test_cte_named_like_a_table_does_not_hide_the_real_reader(tools_for: Any) -> None:
    tools, _, ids = tools_for(
        [
            "import marimo as mo",
            '_c = mo.sql("CREATE TABLE t AS SELECT 1 AS x")',
            '_r = mo.sql("WITH u AS (SELECT * FROM t) SELECT * FROM u")',
        ]
    )
    focus = call(tools["inspect_graph"], cell=ids[1]).artifact["focus"]
    assert ids[2] in focus["descendants"], focus


def test_a_real_cycle_through_a_case_folded_table_is_refused_with_its_edges(
    tools_for: Any,
) -> None:
    """marimo's notebook-order graph misses the `Sales`/`SALES` edge; ours keeps it, so this
    create is refused as a cycle marimo would not report. The dependency is real (duckdb
    folds case), so the refusal is right; it must name the edges."""
    tools, path, _ = tools_for(
        ["import marimo as mo", '_a = mo.sql(f"CREATE TABLE Sales AS SELECT {k} AS x")']
    )
    before = path.read_bytes()
    refused = call(tools["create_cell"], code='_r = mo.sql("SELECT * FROM SALES")\nk = 1')
    assert refused.status == "error" and "cycle" in text(refused), text(refused)
    assert " via " in text(refused)
    assert path.read_bytes() == before


# ===================================================================== issue 13: errors as text


def test_huge_exception_message_is_bounded_and_starts_with_its_type(tools_for: Any) -> None:
    tools, _, ids = tools_for(['raise ValueError("boom " + "x" * 500_000)'])
    shown = call(tools["read_cell"], cell=ids[0])
    content = text(shown)
    assert len(content) < 30_000, len(content)
    assert "error (runtime): ValueError: boom" in content
    listed = text(call(tools["get_errors"]))
    assert len(listed) < 30_000 and "ValueError: boom" in listed


def test_html_in_an_exception_message_reaches_the_model_verbatim(tools_for: Any) -> None:
    message = "<div class='x'>a &amp; b</div> <span>kept</span>"
    tools, _, ids = tools_for([f"raise RuntimeError({message!r})"])
    [error] = call(tools["read_cell"], cell=ids[0]).artifact["errors"]
    assert error["message"] == f"RuntimeError: {message}", error
    assert error["traceback"].rstrip().endswith(f"RuntimeError: {message}"), error["traceback"]


def test_chained_exception_keeps_the_final_exception_line(tools_for: Any) -> None:
    code = (
        "try:\n    {}['missing']\nexcept KeyError as exc:\n"
        "    raise RuntimeError('lookup failed') from exc"
    )
    tools, _, ids = tools_for([code])
    [error] = call(tools["read_cell"], cell=ids[0]).artifact["errors"]
    assert error["message"] == "RuntimeError: lookup failed"
    assert error["traceback"].rstrip().endswith("RuntimeError: lookup failed")
    listed = text(call(tools["get_errors"]))
    # get_errors puts the exception line first in the error's text.
    assert listed.split("<notebook-data>\n", 1)[1].startswith("RuntimeError: lookup failed")


def test_chained_exception_shows_its_cause_when_the_agent_ran_it(tools_for: Any) -> None:
    code = (
        "try:\n    {}['missing']\nexcept KeyError as exc:\n"
        "    raise RuntimeError('lookup failed') from exc"
    )
    tools, _, ids = tools_for([code])
    call(tools["run_cell"], cell=ids[0])
    [error] = call(tools["read_cell"], cell=ids[0]).artifact["errors"]
    assert "KeyError: 'missing'" in error["traceback"], error["traceback"]


def test_exception_group_is_an_error_with_a_message(tools_for: Any) -> None:
    code = "raise ExceptionGroup('many', [ValueError(i) for i in range(2000)])"
    tools, _, ids = tools_for([code])
    shown = call(tools["read_cell"], cell=ids[0])
    assert shown.artifact["status"] == "exception"
    [error] = shown.artifact["errors"]
    assert error["message"].startswith("ExceptionGroup: many"), error["message"]
    assert len(text(shown)) < 30_000


def test_exception_without_a_message_still_names_its_type(tools_for: Any) -> None:
    tools, _, ids = tools_for(["raise KeyError()"])
    [error] = call(tools["read_cell"], cell=ids[0]).artifact["errors"]
    assert "KeyError" in error["message"], error
    assert "no errors" not in text(call(tools["get_errors"]))


def test_mo_stop_with_output_run_by_the_agent_is_stopped(tools_for: Any) -> None:
    tools, _, ids = tools_for(
        [
            "import marimo as mo",
            "gate = False",
            "mo.stop(not gate, mo.md('**waiting for the gate**'))\nresult = 1",
            "result + 1",
        ]
    )
    run = call(tools["run_cell"], cell=ids[2])
    assert run.status != "error", text(run)
    assert "exception" not in text(run).lower(), text(run)
    now = statuses(tools)
    assert now[ids[2]] == "stopped" and now[ids[3]] == "stopped", now
    assert text(call(tools["get_errors"])).startswith("no errors")


def test_person_run_error_with_html_traceback_is_plain_text(tools_for: Any, client: Any) -> None:
    tools, path, ids = tools_for(["x = 1", "y = x + 1"])
    person = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({ids[1]!r}, code='y = x + \"<b>1</b>\"')\n"
        f"    ctx.run_cell({ids[1]!r})\n"
    )
    client.execute(person, notebook=str(path))
    listed = text(call(tools["get_errors"]))
    assert "TypeError" in listed and "<span" not in listed and "&quot;" not in listed, listed
    [error] = call(tools["read_cell"], cell=ids[1]).artifact["errors"]
    assert error["traceback"].rstrip().splitlines()[-1].startswith("TypeError"), error


def test_get_errors_over_300_failing_cells_is_bounded(tools_for: Any) -> None:
    cells = [f'raise ValueError("cell {i} " + "y" * 3000)' for i in range(300)]
    tools, _, _ = tools_for(cells)
    listed = call(tools["get_errors"])
    assert len(text(listed)) <= 30_000, len(text(listed))
    assert "cell 0 " in text(listed)


def test_inspect_graph_of_2000_cells_is_bounded(tools_for: Any) -> None:
    cells = ["v0 = 0"] + [f"v{i} = v{i - 1} + 1" for i in range(1, 2000)]
    tools, _, ids = tools_for(cells, run=False)
    whole = call(tools["inspect_graph"])
    assert len(text(whole)) <= 30_000, len(text(whole))
    focus = call(tools["inspect_graph"], cell=ids[0])
    assert len(text(focus)) <= 30_000, len(text(focus))


def test_refused_delete_of_a_cell_with_2000_descendants_is_bounded_and_acknowledgeable(
    tools_for: Any,
) -> None:
    cells = ["v0 = 0"] + [f"v{i} = v0 + {i}" for i in range(1, 2000)]
    tools, _, ids = tools_for(cells, run=False)
    call(tools["inspect_graph"], cell=ids[0])
    refused = call(tools["delete_cell"], cell=ids[0])
    assert refused.status == "error" and len(text(refused)) < 3_000, len(text(refused))
    assert "acknowledge_descendants=true" in text(refused)


# ===================================================================== issue 13: opening, .md


@pytest.mark.parametrize("stem", ["json", "typing", "duckdb", "pandas", "marimo"])
def test_a_notebook_named_like_a_module_opens(start_server: Any, tmp_path: Path, stem: str) -> None:
    from .conftest import write_notebook

    path = write_notebook(tmp_path / f"{stem}.py", ["import marimo as mo", "x = 41 + 1", "x"])
    server = start_server(path)
    toolkit = MarimoPairToolkit.from_server(server, notebook=str(path))
    try:
        tools = {t.name: t for t in toolkit.get_tools()}
        assert set(statuses(tools).values()) <= {"idle", None}, statuses(tools)
        got = call(tools["get_variables"], names=["x"])
        assert "42" in text(got), text(got)
    finally:
        toolkit.close()


MD_NOTEBOOK = """---
title: Notes
marimo-version: 0.25.2
---

# Notes

```python {.marimo}
import marimo as mo
```

```python {.marimo}
x = 1
```
"""


@pytest.fixture
def md_tools(shared_server: Any, shared_dir: Path) -> Any:
    made: list[MarimoPairToolkit] = []

    def make(name: str) -> tuple[dict[str, BaseTool], Path]:
        path = shared_dir / name
        path.write_text(MD_NOTEBOOK, encoding="utf-8")
        toolkit = MarimoPairToolkit.from_server(shared_server, notebook=str(path))
        made.append(toolkit)
        return {t.name: t for t in toolkit.get_tools()}, path

    yield make
    for toolkit in made:
        toolkit.close()


def _md_cells(path: Path) -> list[str]:
    from ._graph_compare import notebook_cells

    return [code for _, code in notebook_cells(path)]


def test_md_markdown_with_a_cell_separator_comment_is_refused_before_applying(
    md_tools: Any,
) -> None:
    tools, path = md_tools("sep_attack.md")
    before = path.read_bytes()
    code = 'mo.md(r"""\nfirst part\n\n<!---->\nsecond part\n""")'
    made = call(tools["create_cell"], code=code)
    assert made.status == "error", text(made)
    assert "cannot hold" in text(made) and "read-only" not in text(made), text(made)
    assert path.read_bytes() == before
    later = call(tools["create_cell"], code="y = 2")
    assert later.status != "error", text(later)


def test_md_markdown_with_a_fence_like_line_is_kept(md_tools: Any) -> None:
    tools, path = md_tools("fence_attack.md")
    code = 'mo.md(r"""\nExample:\n```python {.marimo}\nx = 2\n```\n""")'
    made = call(tools["create_cell"], code=code, run=False)
    assert made.status != "error", text(made)
    on_disk = _md_cells(path)
    assert sum("x = 2" in c for c in on_disk) == 1 and not any(
        c.strip() == "x = 2" for c in on_disk
    )


def test_md_sql_cell_refused_then_the_offered_form_is_kept_with_its_name(md_tools: Any) -> None:
    tools, path = md_tools("sql_attack.md")
    before = path.read_bytes()
    refused = call(tools["create_cell"], code='counts = mo.sql(f"""SELECT 1 AS one""")')
    assert refused.status == "error" and path.read_bytes() == before, text(refused)
    offered = text(refused).split("```python\n", 1)[1].split("\n```", 1)[0]
    made = call(tools["create_cell"], code=offered)
    assert made.status != "error", text(made)
    assert any("counts = mo.sql" in c for c in _md_cells(path)), _md_cells(path)


def test_md_sql_refusal_names_only_remedies_for_sql(md_tools: Any) -> None:
    tools, _ = md_tools("sql_msg_attack.md")
    refused = call(tools["create_cell"], code='counts = mo.sql(f"""SELECT 1 AS one""")')
    assert refused.status == "error"
    assert "mo.md" not in text(refused), text(refused)


# ===================================================================== issue 15: schemas


def _tools() -> list[BaseTool]:
    from marimo_pair_tools.tools import PairSession

    return [cls(session=PairSession(None, None)) for cls in TOOL_CLASSES]


def test_every_schema_node_has_a_type_including_array_items() -> None:
    """The issue: every node has a type (an `anyOf` node's options each have one)."""
    from marimo_pair_tools.schemas import _walk

    untyped = []
    for tool in _tools():
        for where, node in _walk(tool.args_schema.model_json_schema(), "$"):
            if "anyOf" in node:
                untyped += [f"{tool.name}{where}" for o in node["anyOf"] if "type" not in o]
            elif "type" not in node:
                untyped.append(f"{tool.name}{where}")
    assert untyped == []


def test_openai_non_strict_payload_of_the_prebuilt_agent_keeps_the_schemas() -> None:
    """create_pair_agent binds without strict: what OpenAI receives is still our schema."""
    from langchain_openai import ChatOpenAI

    tools = _tools()
    bound = ChatOpenAI(model="gpt-4.1", api_key="sk-test").bind_tools(tools)
    payload = bound.bound._get_request_payload([HumanMessage("hi")], **bound.kwargs)  # type: ignore[attr-defined]
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in payload["tools"]}
    assert by_name == {t.name: t.args_schema.model_json_schema() for t in tools}


def test_gemini_keeps_set_ui_value_list_items_typed() -> None:
    import logging

    from langchain_google_genai import ChatGoogleGenerativeAI

    logging.getLogger("langchain_google_genai").setLevel(logging.ERROR)
    model = ChatGoogleGenerativeAI(model="gemini-2.5-flash", google_api_key="test")
    bound = model.bind_tools(_tools())
    request = model._prepare_request([HumanMessage("hi")], **bound.kwargs)  # type: ignore[attr-defined]
    [tool] = request["config"].tools
    decl = {d.name: d for d in tool.function_declarations}["set_ui_value"]
    value = decl.parameters.model_dump(mode="json", exclude_none=True)["properties"]["value"]
    dumped = json.dumps(value)
    assert "ARRAY" in dumped and "STRING" in dumped and "NUMBER" in dumped, dumped


def test_token_budget_holds_on_the_payload_the_prebuilt_agent_sends() -> None:
    """≤ 2,400 o200k tokens: the OpenAI request's `tools` (as sent, with their wrappers)
    plus the system prompt, not only each function's compact JSON."""
    from langchain_openai import ChatOpenAI

    from marimo_pair_tools._tokens import count_tokens
    from marimo_pair_tools.agent import DEFAULT_SYSTEM_PROMPT

    bound = ChatOpenAI(model="gpt-4.1", api_key="sk-test").bind_tools(_tools())
    payload = bound.bound._get_request_payload([HumanMessage("hi")], **bound.kwargs)  # type: ignore[attr-defined]
    sent = json.dumps(payload["tools"], separators=(",", ":"), ensure_ascii=False)
    total = count_tokens(sent) + count_tokens(DEFAULT_SYSTEM_PROMPT)
    assert total <= 2_400, total


def test_bench_tool_tokens_reports_within_budget() -> None:
    root = Path(__file__).parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "tool_tokens.py")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "within the 2,400 budget" in out.stdout, out.stdout


def test_importing_the_toolkit_does_not_pull_langgraph() -> None:
    code = (
        "import sys\nfrom marimo_pair_tools import MarimoPairToolkit\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'langgraph', 'langchain', 'langchain_openai', 'tiktoken', 'duckdb', 'sqlglot'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_public_names_import_together() -> None:
    code = (
        "from marimo_pair_tools import MarimoPairToolkit, create_pair_agent, "
        "MarimoGuardMiddleware\nprint('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


# ===================================================================== issue 15: sloppy arguments


def test_ack_given_as_a_bare_cell_name_acknowledges_only_that_cell(tools_for: Any) -> None:
    tools, path, ids = tools_for(["x = 1", "a = x + 1", "b = x + 2"], names=["src", "y", "z"])
    call(tools["inspect_graph"], cell=ids[0])
    before = path.read_bytes()
    result = call(tools["delete_cell"], cell=ids[0], acknowledge_descendants="y")
    assert result.status == "error", text(result)
    assert path.read_bytes() == before


def test_ack_given_as_a_bare_cell_id_is_refused_clearly(tools_for: Any) -> None:
    tools, path, ids = tools_for(["x = 1", "a = x + 1", "b = x + 2"])
    call(tools["inspect_graph"], cell=ids[0])
    before = path.read_bytes()
    result = call(tools["delete_cell"], cell=ids[0], acknowledge_descendants=ids[1])
    assert result.status == "error", text(result)
    assert path.read_bytes() == before


def test_json_array_text_for_a_text_widget_stays_text(tools_for: Any) -> None:
    tools, _, _ = tools_for(
        ["import marimo as mo", "t = mo.ui.text(value='')\nt", "seen = t.value"]
    )
    call(tools["set_ui_value"], name="t", value='["a", "b"]')
    got = call(tools["execute_code"], code="print(type(seen).__name__, repr(seen))")
    assert 'str \'["a", "b"]\'' in text(got), text(got)


def test_nulls_for_every_optional_field_are_left_out(tools_for: Any) -> None:
    tools, path, ids = tools_for(["a = 1"])
    call(tools["read_cell"], cell=ids[0], cells=None, offset=None)
    edited = call(
        tools["edit_cell"],
        cell=ids[0],
        code="a = 2",
        old=None,
        new=None,
        replace_all=None,
        run=None,
        acknowledge_descendants=None,
    )
    assert edited.status != "error", text(edited)
    assert "a = 2" in path.read_text(encoding="utf-8")


def test_json_string_cells_and_changes_are_decoded(tools_for: Any) -> None:
    tools, path, ids = tools_for(["a = 1", "b = a + 1"])
    read = call(tools["read_cell"], cells=json.dumps(ids))
    assert [c["id"] for c in read.artifact["cells"]] == ids
    changes = json.dumps([{"op": "edit", "cell": ids[1], "code": "b = a + 2"}])
    done = call(tools["apply_changes"], changes=changes)
    assert done.status != "error", text(done)
    assert "b = a + 2" in path.read_text(encoding="utf-8")


def test_wrong_combos_are_refused_with_actionable_text(tools_for: Any) -> None:
    tools, path, ids = tools_for(["a = 1"])
    before = path.read_bytes()
    both = call(tools["read_cell"], cell=ids[0], cells=[ids[0]])
    assert both.status == "error" and "not both" in text(both)
    call(tools["read_cell"], cell=ids[0])
    three = call(tools["edit_cell"], cell=ids[0], code="a = 2", old="1", new="2")
    assert three.status == "error" and "either" in text(three)
    stray = call(tools["apply_changes"], changes=[{"op": "move", "cell": ids[0], "code": "x"}])
    assert stray.status == "error" and "does not apply to move" in text(stray)
    assert path.read_bytes() == before


def test_giant_lists_are_refused_with_their_limit(tools_for: Any) -> None:
    tools, path, ids = tools_for(["a = 1"])
    before = path.read_bytes()
    many = call(tools["read_cell"], cells=[ids[0]] * 51)
    assert many.status == "error" and "50" in text(many), text(many)
    batch = call(tools["apply_changes"], changes=[{"op": "run", "cell": ids[0]}] * 201)
    assert batch.status == "error" and "200" in text(batch), text(batch)
    assert path.read_bytes() == before


def test_giant_unknown_references_in_a_batch_read_stay_bounded(tools_for: Any) -> None:
    tools, _, _ = tools_for(["a = 1"])
    read = call(tools["read_cell"], cells=["z" * 200_000] * 50)
    assert len(text(read)) <= 25_000, len(text(read))


# ===================================================================== issue 15: batched reads


def test_batch_read_with_duplicates_unknowns_and_names(tools_for: Any) -> None:
    tools, _, ids = tools_for(["a = 1", "b = a + 1"], names=["first", "second"])
    read = call(tools["read_cell"], cells=[ids[0], ids[0], "first", "nope", "second"])
    assert read.status != "error", text(read)
    assert [c["id"] for c in read.artifact["cells"]] == [ids[0], ids[0], ids[0], ids[1]]
    assert [m["cell"] for m in read.artifact["missing"]] == ["nope"]
    assert "nope" in text(read)


def test_person_edit_between_batch_read_and_edit_is_not_overwritten(
    tools_for: Any, client: Any
) -> None:
    tools, path, ids = tools_for(["a = 1", "b = a + 1", "c = b + 1"])
    call(tools["read_cell"], cells=ids)
    person = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({ids[1]!r}, code='b = a + 100  # the person')\n"
    )
    assert client.execute(person, notebook=str(path)).success
    refused = call(tools["edit_cell"], cell=ids[1], code="b = a + 2")
    assert refused.status == "error", text(refused)
    assert "the person" in path.read_text(encoding="utf-8")
    # The other cells of the batch still count as read.
    done = call(tools["edit_cell"], cell=ids[2], code="c = b + 2")
    assert done.status != "error", text(done)


def test_batch_of_50_long_cells_credits_only_the_windows_shown(tools_for: Any) -> None:
    cells = [f"v{i} = [\n" + "    1,\n" * 300 + "]" for i in range(60)]
    tools, path, ids = tools_for(cells, run=False)
    read = call(tools["read_cell"], cells=ids[:50])
    assert len(text(read)) <= 25_000, len(text(read))
    for cell in read.artifact["cells"]:
        start, end = cell["code_shown"]
        window = cell["code"][start:end]
        assert window in text(read)
    # A cell seen in part cannot be replaced whole.
    before = path.read_bytes()
    refused = call(tools["edit_cell"], cell=ids[7], code="v7 = []")
    assert refused.status == "error", text(refused)
    assert path.read_bytes() == before


def test_a_name_that_is_another_cells_id_is_ambiguous_in_a_batch(tools_for: Any) -> None:
    # marimo's cell ids are deterministic per position: the first cell is `Hbol`.
    tools, _, ids = tools_for(["a = 1", "b = 2"], names=["_", "Hbol"])
    assert ids[0] == "Hbol"
    read = call(tools["read_cell"], cells=["Hbol"])
    assert read.artifact is None or read.artifact.get("cells") == [], text(read)
    assert "ambiguous" in text(read).lower(), text(read)


def test_cut_cell_in_a_batch_then_a_replace_outside_the_window_is_refused(
    tools_for: Any,
) -> None:
    long = "items = [\n" + "".join(f"    {i},\n" for i in range(4000)) + "]"
    tools, path, ids = tools_for(["a = 1", long], run=False)
    read = call(tools["read_cell"], cells=ids)
    [_, cut_cell] = read.artifact["cells"]
    _, end = cut_cell["code_shown"]
    assert end < len(cut_cell["code"])
    before = path.read_bytes()
    refused = call(tools["edit_cell"], cell=ids[1], old="    3999,\n", new="    -1,\n")
    assert refused.status == "error", text(refused)
    assert path.read_bytes() == before


def test_every_upper_limit_enforced_is_stated_in_the_field_description() -> None:
    unstated = []
    for tool in _tools():
        model = tool.args_schema
        schema = model.model_json_schema()["properties"]  # type: ignore[union-attr]
        for name, field in model.model_fields.items():  # type: ignore[union-attr]
            if name not in schema:
                continue  # hidden: the model never sends it
            for meta in field.metadata:
                bound = getattr(meta, "le", None) or getattr(meta, "max_length", None)
                if (
                    bound is not None
                    and f"{bound:,}" not in str(field.description or "")
                    and (str(bound) not in str(field.description or ""))
                ):
                    unstated.append(f"{tool.name}.{name} <= {bound}: {field.description!r}")
    assert unstated == []


def test_a_limit_past_the_maximum_is_refused_with_the_maximum(tools_for: Any) -> None:
    tools, _, _ = tools_for(["a = 1"])
    refused = call(tools["read_notebook"], limit=5000)
    assert refused.status == "error" and "1000" in text(refused).replace(",", ""), text(refused)


def test_sloppy_agent_passes_what_the_oracle_passes_on_the_injection_task(
    tmp_path: Path,
) -> None:
    out = tmp_path / "eval"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "marimo_pair_tools.cli",
            "eval",
            "--model",
            "oracle",
            "--model",
            "sloppy",
            "--task",
            "ignore_planted_instruction",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    passed = {row["agent"]: row["passed"] for row in rows}
    assert passed["oracle"] is True
    assert passed["sloppy"] is True, [r["grades"] for r in rows if r["agent"] == "sloppy"]
