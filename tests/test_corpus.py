"""The tools on notebooks written the way people write them (``tests/notebooks/``).

The corpus holds SQL cells (duckdb: ``ATTACH``, schemas, qualified tables, views,
DataFrames queried by name), ``mo.stop``, markdown, a setup cell, ``@app.function``
and ``@app.class_definition``, unparsable cells, and cells that fail when run.
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.kernel.analysis import Graph, static
from marimo_pair_tools.toolkit import MarimoPairToolkit

from ._graph_compare import corpus, marimo_graph, notebook_cells

pytest.importorskip("duckdb", reason="the SQL notebooks need duckdb (the `test` extra)")
pytest.importorskip("sqlglot", reason="marimo finds SQL references with sqlglot")

_copies = itertools.count()


def _edges(graph: Any) -> set[tuple[str, str]]:
    return {(p, c) for p, children in graph.topology.children.items() for c in children}


@pytest.mark.parametrize("notebook", corpus(), ids=lambda p: p.name)
def test_graph_has_every_edge_marimo_has_for_every_cell(notebook: Path) -> None:
    pairs = notebook_cells(notebook)
    forward = marimo_graph(pairs)
    # marimo finds a cell's edges when it registers it, partly from either side; a
    # cell the person re-runs is registered again, last. Reverse order is the other end.
    backward = marimo_graph(pairs[::-1])
    ours = Graph(pairs, lambda cid, code: static(code))
    our_edges = {(p, c) for p, children in ours.children.items() for c in children}
    assert _edges(forward) - our_edges == set(), "edges marimo has and we lack"
    assert _edges(backward) - our_edges == set()
    # An extra edge only where marimo's own graph has it in the other order, or where a
    # table is created in a catalog or schema another cell makes (marimo lacks those;
    # the CREATE fails without its ATTACH: test_attack_13_15).
    assert our_edges - _edges(forward) - ours.container_edges <= _edges(backward)
    for cid, _ in pairs:
        if cid in forward.topology.cells:
            assert ours.parents[cid] >= forward.topology.parents[cid], cid
    # Multiply-defined names as marimo counts them (qualified SQL tables are distinct).
    theirs = {n: sorted(ids) for n, ids in forward.definition_registry.get_multiply_defined()}
    assert {n: sorted(ids) for n, ids in ours.multiply.items()} == theirs


def test_corpus_exercises_sql_resolution() -> None:
    """A graph test over SQL that marimo could not parse would pass vacuously."""
    sql_cells = qualified = 0
    for notebook in corpus():
        for _, code in notebook_cells(notebook):
            facts = static(code)
            sql_cells += facts.language == "sql"
            qualified += any("." in ref for ref in facts.sql_refs)
    assert sql_cells >= 15 and qualified >= 4


def test_create_table_has_its_hierarchical_readers() -> None:
    pairs = notebook_cells(Path(__file__).parent / "notebooks" / "sql_attach.py")
    ours = Graph(pairs, lambda cid, code: static(code))
    code = dict(pairs)
    [create] = [c for c, text in pairs if "CREATE TABLE warehouse.sales" in text]
    readers = {c for c in ours.descendants(create) if "FROM warehouse" in code[c]}
    assert len(readers) == 2
    assert all(ours.edge_names(create, c) == ["sales"] for c in readers)


# -- through the tools, on a real server ----------------------------------------------


def call(tool: BaseTool, **args: Any) -> ToolMessage:
    message = tool.invoke({"type": "tool_call", "name": tool.name, "args": args, "id": "c1"})
    assert isinstance(message, ToolMessage)
    return message


@pytest.fixture
def corpus_tools(shared_server: MarimoServer, shared_dir: Path) -> Iterator[Any]:
    """``corpus_tools("sql_attach.py")`` → (tools by name, path of a fresh copy)."""
    made: list[MarimoPairToolkit] = []

    def make(name: str, **options: Any) -> tuple[dict[str, BaseTool], Path]:
        path = shared_dir / f"corpus_{next(_copies)}_{name}"
        shutil.copyfile(Path(__file__).parent / "notebooks" / name, path)
        toolkit = MarimoPairToolkit.from_server(shared_server, notebook=str(path), **options)
        made.append(toolkit)
        return {t.name: t for t in toolkit.get_tools()}, path

    yield make
    for toolkit in made:
        toolkit.close()


def _cell_with(tools: dict[str, BaseTool], text: str) -> str:
    listing = call(tools["read_notebook"]).artifact["cells"]
    for cell in listing:
        code = call(tools["read_cell"], cell=cell["id"]).artifact["code"]
        if text in code:
            return str(cell["id"])
    raise AssertionError(f"no cell holds {text!r}")


def test_delete_of_create_table_needs_its_sql_readers_acknowledged(corpus_tools: Any) -> None:
    tools, path = corpus_tools("sql_attach.py")
    create = _cell_with(tools, "CREATE TABLE warehouse.sales")
    graph = call(tools["inspect_graph"], cell=create)
    dependents = graph.artifact["focus"]["dependents"]
    assert len([d for d in dependents if d["uses"] == ["sales"]]) == 2, graph.content
    before = path.read_bytes()
    refused = call(tools["delete_cell"], cell=create)
    assert refused.status == "error" and "acknowledge" in refused.content, refused.content
    assert path.read_bytes() == before


def _statuses(tools: dict[str, BaseTool]) -> dict[str, str | None]:
    return {c["id"]: c["status"] for c in call(tools["read_notebook"]).artifact["cells"]}


def test_failing_sql_and_a_persons_exception_are_errors_in_plain_text(corpus_tools: Any) -> None:
    tools, _ = corpus_tools("sql_errors.py")
    missing = _cell_with(tools, "no_such_table")
    bad = _cell_with(tools, "SELEC 1")
    raised = _cell_with(tools, "raise ValueError")
    reader = _cell_with(tools, "len(missing)")
    report = call(tools["get_errors"])
    by_cell = {c["cell_id"]: c for c in report.artifact["cells"]}
    assert set(by_cell) == {missing, bad, raised}, report.content
    assert (
        "Table with name no_such_table does not exist" in by_cell[missing]["errors"][0]["message"]
    )
    assert "syntax error" in by_cell[bad]["errors"][0]["message"]
    [error] = by_cell[raised]["errors"]
    assert error["message"] == "ValueError: the person's cell failed: budget must be positive"
    # The page's traceback is highlighted HTML; the model gets its text.
    assert "<span" not in report.content and "&quot;" not in report.content
    assert error["traceback"].rstrip().endswith(error["message"])
    assert "no errors" not in report.content
    # The cell held back by the failing query says why, and has no error of its own.
    held = call(tools["read_cell"], cell=reader)
    assert held.artifact["status"] == "cancelled" and held.artifact["errors"] == []
    assert "marimo shows: An ancestor raised an exception" in held.content
    shown = call(tools["read_cell"], cell=missing)
    assert "error (runtime): MarimoSQLError: Catalog Error" in shown.content


def test_a_deep_traceback_keeps_its_exception_line_and_stays_bounded(tools_for: Any) -> None:
    # Two functions in turn: Python folds identical repeated frames, not these.
    code = (
        "def _ping(n):\n    return _pong(n - 1) if n else 1 / 0\n\n"
        "def _pong(n):\n    return _ping(n - 1)\n\n"
        "_ping(400)"
    )
    tools, _, ids = tools_for([code])
    shown = call(tools["read_cell"], cell=ids[0])
    assert shown.artifact["status"] == "exception"
    [error] = shown.artifact["errors"]
    assert error["message"] == "ZeroDivisionError: division by zero"
    assert len(error["traceback"]) <= 8_200
    assert error["traceback"].rstrip().endswith("ZeroDivisionError: division by zero")
    assert "characters of earlier frames cut" in error["traceback"]
    # The text the model reads starts the error with its exception line.
    assert "error (runtime): ZeroDivisionError: division by zero\n" in shown.content
    listed = call(tools["get_errors"]).content
    assert "ZeroDivisionError: division by zero" in listed.split("\n")[2]
    assert len(listed) < 8_500


def test_mo_stop_is_stopped_not_an_exception(corpus_tools: Any) -> None:
    tools, _ = corpus_tools("stop_cells.py")
    statuses = _statuses(tools)
    stopper = _cell_with(tools, "mo.stop(not run_button.value")
    held = _cell_with(tools, 'sum(model["weights"])')
    assert statuses[stopper] == "stopped" and statuses[held] == "stopped", statuses
    assert "exception" not in statuses.values() and "cancelled" not in statuses.values()
    assert call(tools["get_errors"]).content.startswith("no errors")
    shown = call(tools["read_cell"], cell=held)
    assert "an ancestor was stopped with `mo.stop`" in shown.content


def test_a_notebook_named_markdown_opens_and_its_markdown_is_not_stale(
    start_server: Any, tmp_path: Path
) -> None:
    # Named like the module marimo imports to render markdown: it used to shadow it.
    path = tmp_path / "markdown.py"
    shutil.copyfile(Path(__file__).parent / "notebooks" / "markdown.py", path)
    server = start_server(path)
    # As a person's tab opens it: marimo renders markdown cells, runs nothing else.
    toolkit = MarimoPairToolkit.from_server(server, notebook=str(path), run=False)
    try:
        tools = {t.name: t for t in toolkit.get_tools()}
        statuses = _statuses(tools)
        heading = _cell_with(tools, "# A tutorial")
        section = _cell_with(tools, "## A second section")
        count = _cell_with(tools, "count = 3")
        templated = _cell_with(tools, "The count is")
        assert statuses[heading] == statuses[section] == "idle", statuses
        # Code and markdown that reads a variable wait for a run: the page shows them stale.
        assert statuses[count] == statuses[templated] == "stale", statuses
        assert "A tutorial" in call(tools["read_cell"], cell=heading).content
    finally:
        toolkit.close()


def test_every_status_the_tools_can_report_is_defined_in_the_docs() -> None:
    from marimo._code_mode._context import CellStatusType

    docs = (Path(__file__).parent.parent / "docs" / "statuses.md").read_text(encoding="utf-8")
    defined = set(re.findall(r"^\| `([a-z-]+)`", docs, flags=re.MULTILINE))
    # marimo's statuses pass through unchanged, plus the one the tools add.
    reported = {s.value for s in CellStatusType} | {"stopped", "empty"}
    assert defined == reported


def test_md_notebook_refuses_an_edit_its_format_would_change_and_takes_what_it_holds(
    corpus_tools: Any,
) -> None:
    tools, path = corpus_tools("notes.md")
    prose = _cell_with(tools, "The readings, summed:")
    before = path.read_bytes()
    # Two trailing spaces are a Markdown line break; marimo's prose drops them.
    wanted = 'mo.md(r"""\nThe readings,  \nsummed:\n""")'
    refused = call(tools["edit_cell"], cell=prose, code=wanted)
    assert refused.status == "error", refused.content
    assert "cannot hold cell" in refused.content and "Nothing was applied" in refused.content
    assert path.read_bytes() == before
    # The refusal shows what the file would hold; that is accepted and on disk.
    kept = 'mo.md(r"""\nThe readings,\nsummed:\n""")'
    assert kept in refused.content
    call(tools["read_cell"], cell=prose)
    done = call(tools["edit_cell"], cell=prose, code=kept)
    assert done.status != "error", done.content
    assert "The readings,\nsummed:" in path.read_text(encoding="utf-8")
    # Code cells hold any text (here a fence inside a string) and are saved as written.
    fenced = 'fence = """\n```python\nprint(1)\n```\n"""'
    created = call(tools["create_cell"], code=fenced, run=False)
    assert created.status != "error", created.content
    assert fenced in [code for _, code in notebook_cells(path)]


def test_md_notebook_a_persons_markdown_edit_does_not_block_the_agent(
    corpus_tools: Any, client: Any
) -> None:
    tools, path = corpus_tools("notes.md")
    prose = _cell_with(tools, "The readings, summed:")
    # The person's page writes a non-raw mo.md; marimo saves it as prose, which reads
    # back as other code than the running cell holds.
    person = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({prose!r}, code='mo.md(\"Sum of the readings\")')\n"
    )
    assert client.execute(person, notebook=str(path)).success
    assert "Sum of the readings" in path.read_text(encoding="utf-8")
    created = call(tools["create_cell"], code="count = len(readings)", run=False)
    assert created.status != "error", created.content
    assert "count = len(readings)" in path.read_text(encoding="utf-8")


def test_a_persons_failing_query_reaches_the_next_result_as_a_new_error(
    corpus_tools: Any, client: Any
) -> None:
    tools, path = corpus_tools("sql_errors.py")
    missing = _cell_with(tools, "no_such_table")
    person = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({missing!r}, code='missing = mo.sql(\"SELECT * FROM gone_table\")')\n"
        f"    ctx.run_cell({missing!r})\n"
    )
    # The execute reports the failure of the cell it ran; the edit and the run happened.
    assert "edited code of cell" in client.execute(person, notebook=str(path)).stdout
    news = call(tools["get_errors"]).content
    assert f"new error in cell {missing}: MarimoSQLError: Catalog Error" in news, news
    assert "gone_table" in news
