"""`read_cell(cells=[...])`: several cells in one call and one execute, each a read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.toolkit import MarimoPairToolkit
from marimo_pair_tools.tools import OutputLimits


def call(tool: BaseTool, **args: Any) -> ToolMessage:
    message = tool.invoke({"type": "tool_call", "name": tool.name, "args": args, "id": "c1"})
    assert isinstance(message, ToolMessage)
    return message


@pytest.fixture
def kit(shared_server: MarimoServer, new_notebook: Any) -> Iterator[Any]:
    made: list[MarimoPairToolkit] = []

    def make(cells: list[str], **options: Any) -> tuple[MarimoPairToolkit, dict[str, BaseTool]]:
        path = new_notebook(cells)
        options.setdefault("presence", False)  # one request per call: the read itself
        toolkit = MarimoPairToolkit.from_server(shared_server, notebook=str(path), **options)
        made.append(toolkit)
        return toolkit, {t.name: t for t in toolkit.get_tools()}

    yield make
    for toolkit in made:
        toolkit.close()


def _count_executes(toolkit: MarimoPairToolkit) -> list[str]:
    """Record every execute the notebook sends (the client is real; only counted)."""
    notebook = toolkit.session.sync()
    sent: list[str] = []
    real = notebook.client.execute

    def counted(code: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(code)
        return real(code, *args, **kwargs)

    notebook.client.execute = counted  # type: ignore[method-assign]
    return sent


def test_many_cells_in_one_execute_each_counted_as_a_read(kit: Any) -> None:
    cells = [f"v{i} = {i}" for i in range(31)]
    toolkit, tools = kit(cells)
    ids = [c["id"] for c in call(tools["read_notebook"]).artifact["cells"]]
    sent = _count_executes(toolkit)

    read = call(tools["read_cell"], cells=ids)

    assert read.status != "error", read.content
    assert len(sent) == 1, f"{len(sent)} executes for one batched read"
    got = read.artifact["cells"]
    assert [c["id"] for c in got] == ids
    for i, cell_id in enumerate(ids):
        assert f"v{i} = {i}" in read.content
        assert toolkit.ledger.reads[cell_id] == got[i]["code_hash"]
    assert not toolkit.ledger.partial_reads
    # Every cell read in the batch may be edited, as after a single read.
    edited = call(tools["edit_cell"], cell=ids[30], code="v30 = 300")
    assert edited.status != "error", edited.content


def test_unknown_cells_are_listed_and_the_rest_is_read(kit: Any) -> None:
    toolkit, tools = kit(["a = 1", "b = a + 1"])
    first, second = (c["id"] for c in call(tools["read_notebook"]).artifact["cells"])
    read = call(tools["read_cell"], cells=[first, "nope", second])
    assert read.status != "error", read.content
    assert [c["id"] for c in read.artifact["cells"]] == [first, second]
    assert read.artifact["missing"][0]["cell"] == "nope"
    assert "not read: 'nope'" in read.content and "No cell 'nope'" in read.content
    assert set(toolkit.ledger.reads) == {first, second}


def test_a_cut_cell_in_a_batch_is_a_partial_read_like_a_single_one(kit: Any) -> None:
    long_code = "\n".join(f"x{i} = {i}  # {'pad ' * 10}" for i in range(120))
    limits = OutputLimits(batch_chars=3_000)
    toolkit, tools = kit(["short = 1", long_code], limits=limits)
    short, long_ = (c["id"] for c in call(tools["read_notebook"]).artifact["cells"])

    read = call(tools["read_cell"], cells=[short, long_])

    assert len(read.content) <= limits.batch_chars
    shown_short, shown_long = read.artifact["cells"]
    assert shown_short["code_shown"] == [0, len("short = 1")]
    start, end = shown_long["code_shown"]
    assert start == 0 and 0 < end < len(long_code)
    assert long_code[:end] in read.content  # the window the ledger counts is all there
    # The guard ledger holds what a single read of that window records.
    assert toolkit.ledger.reads == {short: shown_short["code_hash"]}
    partial = toolkit.ledger.partial_reads[long_]
    assert partial.ranges == [(0, end)] and partial.total == len(long_code)
    # So a full replacement is refused; a find/replace inside what was shown is not.
    whole = call(tools["edit_cell"], cell=long_, code="x0 = 0")
    assert whole.status == "error" and "part" in whole.content
    inside = call(tools["edit_cell"], cell=long_, old="x1 = 1 ", new="x1 = 11 ")
    assert inside.status != "error", inside.content
    outside = call(tools["edit_cell"], cell=long_, old="x119 = 119", new="x119 = 0")
    assert outside.status == "error"


def test_cell_or_cells_not_both(kit: Any) -> None:
    toolkit, tools = kit(["a = 1"])
    [cell] = (c["id"] for c in call(tools["read_notebook"]).artifact["cells"])
    both = call(tools["read_cell"], cell=cell, cells=[cell])
    assert both.status == "error" and "not both" in both.content
    paged = call(tools["read_cell"], cells=[cell], offset=5)
    assert paged.status == "error" and "offset" in paged.content
    assert cell not in toolkit.ledger.reads


async def test_async_batch_reads_record_every_cell(kit: Any) -> None:
    toolkit, tools = kit(["a = 1", "b = 2", "c = 3"])
    ids = [c["id"] for c in call(tools["read_notebook"]).artifact["cells"]]
    read = await tools["read_cell"].ainvoke(
        {"type": "tool_call", "name": "read_cell", "args": {"cells": ids}, "id": "c2"}
    )
    assert read.status != "error", read.content
    assert set(toolkit.ledger.reads) == set(ids)
