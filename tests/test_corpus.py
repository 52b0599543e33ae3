"""The tools on notebooks written the way people write them (``tests/notebooks/``).

The corpus holds SQL cells (duckdb: ``ATTACH``, schemas, qualified tables, views,
DataFrames queried by name), ``mo.stop``, markdown, a setup cell, ``@app.function``
and ``@app.class_definition``, unparsable cells, and cells that fail when run.
"""

from __future__ import annotations

import itertools
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
    # An extra edge only where marimo's own graph has it in the other order.
    assert our_edges - _edges(forward) <= _edges(backward)
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
