"""The LangChain tools against a real marimo server, sync and async."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.errors import SessionNotFoundError
from marimo_pair_tools.eval.trajectory import _SHOWN_CODE
from marimo_pair_tools.toolkit import MarimoPairToolkit
from marimo_pair_tools.tools import OutputLimits

from ._snapshot import assert_snapshot
from .conftest import write_notebook


def call(tool: BaseTool, **args: Any) -> ToolMessage:
    """Invoke a tool as a model would (a tool call) and return its ToolMessage."""
    message = tool.invoke({"type": "tool_call", "name": tool.name, "args": args, "id": "c1"})
    assert isinstance(message, ToolMessage)
    return message


async def acall(tool: BaseTool, **args: Any) -> ToolMessage:
    message = await tool.ainvoke({"type": "tool_call", "name": tool.name, "args": args, "id": "c1"})
    assert isinstance(message, ToolMessage)
    return message


@pytest.fixture
def toolkit_for(shared_server: MarimoServer, new_notebook: Any) -> Any:
    made: list[MarimoPairToolkit] = []

    def make(
        cells: list[str], **options: Any
    ) -> tuple[MarimoPairToolkit, dict[str, BaseTool], Path]:
        path = new_notebook(cells)
        toolkit = MarimoPairToolkit.from_server(shared_server, notebook=str(path), **options)
        made.append(toolkit)
        return toolkit, {t.name: t for t in toolkit.get_tools()}, path

    yield make
    for toolkit in made:
        toolkit.close()


def cell_ids(tools: dict[str, BaseTool]) -> list[str]:
    return [c["id"] for c in call(tools["read_notebook"]).artifact["cells"]]


def test_schemas_snapshot(toolkit_for: Any) -> None:
    _, tools, _ = toolkit_for(["a = 1"])
    schemas = {
        name: {"description": tool.description, "args": tool.tool_call_schema.model_json_schema()}
        for name, tool in tools.items()
    }
    assert_snapshot("tool_schemas.json", json.dumps(schemas, indent=1, sort_keys=True) + "\n")
    for tool in tools.values():
        props = set(tool.tool_call_schema.model_json_schema().get("properties", {}))
        assert not props & {"session", "session_id", "url", "base_url", "token", "client"}


def test_read_edit_run_flow(toolkit_for: Any) -> None:
    toolkit, tools, path = toolkit_for(["x = 1", "y = x + 1\ny"])
    first, second = cell_ids(tools)
    listing = call(tools["read_notebook"])
    assert "2 cells" in listing.content and "defs=x" in listing.content

    refused = call(tools["edit_cell"], cell=first, code="x = 10")
    assert refused.status == "error"
    assert "read" in refused.content.lower()
    before = path.read_bytes()

    read = call(tools["read_cell"], cell=first)
    assert "x = 1" in read.content and read.artifact["code_hash"]
    assert path.read_bytes() == before

    edited = call(tools["edit_cell"], cell=first, code="x = 10")
    assert edited.status != "error", edited.content
    assert "x = 10" in path.read_text()
    ran = call(tools["run_cell"], cell=second)
    assert ran.status != "error", ran.content
    value = call(tools["execute_code"], code="print(y)")
    assert "11" in value.content
    assert toolkit.ledger.reads[first] == edited.artifact["changes"][0]["code_hash"]


def test_edit_after_person_changed_cell_is_refused_with_new_code(
    toolkit_for: Any, client: Any
) -> None:
    toolkit, tools, path = toolkit_for(["data = [1, 2, 3]"])
    [cell] = cell_ids(tools)
    call(tools["read_cell"], cell=cell)
    # "The person" edits the cell through another client between read and edit.
    person = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({cell!r}, code='data = [1, 2, 3, 4]  # person')\n"
    )
    assert client.execute(person, notebook=str(path)).success
    on_disk = path.read_bytes()
    refused = call(tools["edit_cell"], cell=cell, code="data = []")
    assert refused.status == "error"
    assert "# person" in refused.content  # the current code is shown
    # ... labelled as the eval's trajectory audit reads it (a refusal that shows code is a read).
    # The hash is checked through the notebook, not a tool: a tool read would fill the ledger.
    [(shown_cell, shown_hash)] = _SHOWN_CODE.findall(refused.content)
    assert (shown_cell, shown_hash) == (cell, toolkit.session.sync().read_cell(cell).code_hash)
    assert path.read_bytes() == on_disk
    # The error counted as a fresh read: the redo applies on top of the person's code.
    redo = call(tools["edit_cell"], cell=cell, old="]  # person", new=", 5]  # person")
    assert redo.status != "error", redo.content
    assert "data = [1, 2, 3, 4, 5]  # person" in path.read_text()


def test_delete_needs_descendant_check_even_if_never_run(toolkit_for: Any) -> None:
    _, tools, path = toolkit_for(["base = 2", "double = base * 2", "quad = double * 2"])
    base = cell_ids(tools)[0]
    before = path.read_bytes()
    refused = call(tools["delete_cell"], cell=base)
    assert refused.status == "error" and "inspect_graph" in refused.content
    graph = call(tools["inspect_graph"], cell=base)
    assert len(graph.artifact["focus"]["descendants"]) == 2
    refused = call(tools["delete_cell"], cell=base)
    assert refused.status == "error" and "acknowledge" in refused.content
    assert path.read_bytes() == before
    done = call(tools["delete_cell"], cell=base, acknowledge_descendants=True)
    assert done.status != "error", done.content
    assert done.artifact["changes"][0]["deleted_code"] == "base = 2"
    assert "base = 2" not in path.read_text()


def test_fifty_creates_in_one_batch(toolkit_for: Any) -> None:
    _, tools, path = toolkit_for(["seed = 0"])
    changes = [{"op": "create", "code": f"v{i} = {i}", "run": False} for i in range(50)]
    result = call(tools["apply_changes"], changes=changes)
    assert result.status != "error", result.content
    text = path.read_text()
    assert sum(f"v{i} = {i}" in text for i in range(50)) == 50


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("def broken(:\n    pass", "syntax"),
        ("seed = 5", "defined"),
        (None, "cycle"),
    ],
)
def test_invalid_changes_leave_file_identical(
    toolkit_for: Any, code: str | None, expected: str
) -> None:
    _, tools, path = toolkit_for(["seed = 0", "out = seed + 1"])
    before = path.read_bytes()
    if code is not None:
        result = call(tools["create_cell"], code=code)
    else:  # a cycle needs two cells
        result = call(
            tools["apply_changes"],
            changes=[{"op": "create", "code": "p = q"}, {"op": "create", "code": "q = p"}],
        )
    assert result.status == "error"
    assert expected in result.content.lower()
    assert path.read_bytes() == before


def test_unknown_cell_is_a_clear_error(toolkit_for: Any) -> None:
    _, tools, _ = toolkit_for(["z = 0"])
    result = call(tools["read_cell"], cell="nope")
    assert result.status == "error"
    assert "nope" in result.content


def test_image_output_reaches_the_model_as_image(toolkit_for: Any) -> None:
    _, tools, _ = toolkit_for(
        [
            "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([1, 3, 2])\nfig"
        ]
    )
    [cell] = cell_ids(tools)
    assert call(tools["run_cell"], cell=cell).status != "error"
    read = call(tools["read_cell"], cell=cell)
    assert isinstance(read.content, list)
    image = [block for block in read.content if block.get("type") == "image"]
    assert image and image[0]["mime_type"] == "image/png"
    import base64

    assert base64.b64decode(image[0]["base64"]).startswith(b"\x89PNG")


def test_scratchpad_figure_reaches_the_model_as_image(toolkit_for: Any) -> None:
    _, tools, _ = toolkit_for(["n = 1"])
    result = call(
        tools["execute_code"],
        code="import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([3, 1, 2])\nfig",
    )
    assert isinstance(result.content, list), result.content
    [image] = [block for block in result.content if block.get("type") == "image"]
    import base64

    assert base64.b64decode(image["base64"]).startswith(b"\x89PNG")


def test_huge_output_is_cut_with_a_marker(toolkit_for: Any) -> None:
    _, tools, _ = toolkit_for(["n = 1"], limits=OutputLimits(max_chars=2_000))
    result = call(tools["execute_code"], code="print('z' * 100_000)")
    assert len(result.content) < 2_500
    assert "characters of this result cut" in result.content


def test_policy_can_be_turned_off(toolkit_for: Any) -> None:
    _, tools, path = toolkit_for(["k = 1"], enforce=False)
    [cell] = cell_ids(tools)
    assert call(tools["edit_cell"], cell=cell, code="k = 2").status != "error"
    assert "k = 2" in path.read_text()


def test_every_tool_sync_and_async(shared_server: MarimoServer, new_notebook: Any) -> None:
    import asyncio

    path = new_notebook(
        [
            "import marimo as mo",
            "slider = mo.ui.slider(1, 10, value=3)\nslider",
            "total = slider.value * 2",
        ]
    )
    toolkit = MarimoPairToolkit.from_server(shared_server, notebook=str(path))
    tools = {t.name: t for t in toolkit.get_tools()}

    def script(invoke: Any) -> dict[str, ToolMessage]:
        out: dict[str, ToolMessage] = {}
        out["list_notebooks"] = invoke(tools["list_notebooks"])
        out["read_notebook"] = invoke(tools["read_notebook"])
        ids = [c["id"] for c in out["read_notebook"].artifact["cells"]]
        out["read_cell"] = invoke(tools["read_cell"], cell=ids[2])
        out["inspect_graph"] = invoke(tools["inspect_graph"], cell=ids[2])
        out["run_cell"] = invoke(tools["run_cell"], cell=ids[1])
        out["set_ui_value"] = invoke(tools["set_ui_value"], name="slider", value=7)
        out["get_variables"] = invoke(tools["get_variables"], names=["total"])
        out["create_cell"] = invoke(tools["create_cell"], code="extra = total + 1")
        new = out["create_cell"].artifact["changes"][0]["cell_id"]
        out["move_cell"] = invoke(tools["move_cell"], cell=new, before=ids[2])
        out["edit_cell"] = invoke(tools["edit_cell"], cell=new, code="extra = total + 2")
        out["apply_changes"] = invoke(tools["apply_changes"], changes=[{"op": "run", "cell": new}])
        out["inspect_graph2"] = invoke(tools["inspect_graph"], cell=new)
        out["delete_cell"] = invoke(tools["delete_cell"], cell=new)
        out["get_errors"] = invoke(tools["get_errors"])
        out["execute_code"] = invoke(tools["execute_code"], code="print(total)")
        out["interrupt_kernel"] = invoke(tools["interrupt_kernel"])
        return out

    for results in (script(call), asyncio.run(_async_script(tools))):
        for name, message in results.items():
            assert message.status != "error", f"{name}: {message.content}"
        assert results["set_ui_value"].artifact["took"] is True
        for change_tool in ("create_cell", "edit_cell", "move_cell", "delete_cell"):
            [change] = results[change_tool].artifact["changes"]
            assert change["verified"] is True, (change_tool, change["problem"])
        assert "14" in results["execute_code"].content
        # The model sees notebooks, never the server's URL (the artifact has it for code).
        assert shared_server.url not in str(results["list_notebooks"].content)
        assert str(path) in str(results["list_notebooks"].content)
    toolkit.close()


async def _async_script(tools: dict[str, BaseTool]) -> dict[str, ToolMessage]:
    out: dict[str, ToolMessage] = {}
    out["list_notebooks"] = await acall(tools["list_notebooks"])
    out["read_notebook"] = await acall(tools["read_notebook"])
    ids = [c["id"] for c in out["read_notebook"].artifact["cells"]]
    out["read_cell"] = await acall(tools["read_cell"], cell=ids[2])
    out["run_cell"] = await acall(tools["run_cell"], cell=ids[1])
    out["set_ui_value"] = await acall(tools["set_ui_value"], name="slider", value=7)
    out["get_variables"] = await acall(tools["get_variables"], names=["total"])
    out["create_cell"] = await acall(tools["create_cell"], code="extra2 = total + 1")
    new = out["create_cell"].artifact["changes"][0]["cell_id"]
    out["move_cell"] = await acall(tools["move_cell"], cell=new, before=ids[2])
    out["edit_cell"] = await acall(tools["edit_cell"], cell=new, code="extra2 = total + 3")
    out["apply_changes"] = await acall(tools["apply_changes"], changes=[{"op": "run", "cell": new}])
    out["inspect_graph"] = await acall(tools["inspect_graph"], cell=new)
    out["delete_cell"] = await acall(tools["delete_cell"], cell=new)
    out["execute_code"] = await acall(tools["execute_code"], code="print(total)")
    out["get_errors"] = await acall(tools["get_errors"])
    out["interrupt_kernel"] = await acall(tools["interrupt_kernel"])
    # The async pool belongs to this event loop: close it before the loop ends.
    await tools["read_cell"].session.asynchronous().client.aclose()
    return out


def test_person_run_that_reached_the_kernel_before_the_document_is_not_overwritten(
    toolkit_for: Any, client: Any
) -> None:
    """A browser run reaches the kernel about a second before the document update.

    Reproduced without a browser: the scratchpad runs new code for the cell in the
    kernel (as the page's run request does) while the document keeps the old text.
    """
    _, tools, path = toolkit_for(["rows = 10"])
    [cell] = cell_ids(tools)
    assert call(tools["run_cell"], cell=cell).status != "error"
    call(tools["read_cell"], cell=cell)
    person_runs = (
        "from marimo._runtime.commands import ExecuteCellCommand\n"
        "from marimo._runtime.context import get_context\n"
        f"await get_context()._kernel.run([ExecuteCellCommand(cell_id={cell!r}, code='rows = 99')])\n"
    )
    assert client.execute(person_runs, notebook=str(path)).success
    before = path.read_bytes()
    refused = call(tools["edit_cell"], cell=cell, code="rows = 5")
    assert refused.status == "error", refused.content
    # The refusal shows what the person ran (the notebook's text is still the old one),
    # and offers no hash to retry with: the agent must read again.
    assert "rows = 99" in refused.content and "expected_hash=" not in refused.content
    # The refusal taught the ledger no hash, so a blind retry meets the kernel's check again.
    again = call(tools["edit_cell"], cell=cell, code="rows = 5")
    assert again.status == "error" and "read_cell" in again.content, again.content
    assert "the kernel last ran code that differs" in again.content, again.content
    read = call(tools["read_cell"], cell=cell)
    assert read.artifact["kernel_code"] == "rows = 99" and "rows = 99" in str(read.content)
    assert "rows = 99" in call(tools["execute_code"], code="print(f'rows = {rows}')").content
    assert path.read_bytes() == before


def test_code_that_never_ends_is_an_error_the_model_reads(toolkit_for: Any) -> None:
    """A timeout is the model's to fix: an error ToolMessage, and the kernel answers again."""
    _, tools, path = toolkit_for(["base = 1"])
    before = path.read_bytes()
    result = call(tools["execute_code"], code="while True:\n    pass", timeout=1)
    assert result.status == "error"
    assert "limit" in result.content and "The kernel answers again" in result.content
    assert "42" in call(tools["execute_code"], code="print(40 + 2)").content
    assert path.read_bytes() == before


def test_delete_refused_in_the_kernel_when_a_person_added_a_dependent(
    toolkit_for: Any, client: Any
) -> None:
    """The guard passed (the agent inspected); the kernel's own check catches the new reader."""
    _, tools, path = toolkit_for(["base = 3"])
    [cell] = cell_ids(tools)
    inspected = call(tools["inspect_graph"], cell=cell)
    assert "no descendants" in inspected.content
    person_adds_a_reader = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        "    ctx.create_cell('uses_base = base + 1')\n"
    )
    assert client.execute(person_adds_a_reader, notebook=str(path)).success
    before = path.read_bytes()
    refused = call(tools["delete_cell"], cell=cell)
    assert refused.status == "error", refused.content
    assert "descendants that were not checked" in refused.content, refused.content
    assert "reads base" in refused.content and "inspect_graph" in refused.content
    assert path.read_bytes() == before
    # The check that missed the reader no longer counts: the guard asks for a new one.
    again = call(tools["delete_cell"], cell=cell)
    assert again.status == "error" and "inspect_graph" in again.content
    assert "you have not checked what depends on" in again.content, "the guard, not the kernel"
    inspected = call(tools["inspect_graph"], cell=cell)
    [reader] = [c for c in cell_ids(tools) if c != cell]
    assert reader in inspected.content
    deleted = call(tools["delete_cell"], cell=cell, acknowledge_descendants=[reader])
    assert deleted.status != "error", deleted.content
    assert "base = 3" not in path.read_text()


def test_toolkit_from_url_and_from_discovery(start_server: Any, tmp_path: Path) -> None:
    """The README's two ways in: a URL someone gives us, and marimo's own registry."""
    root = tmp_path / "project"
    root.mkdir()
    path = write_notebook(root / "nb.py", ["found = 1"])
    server = start_server(root)
    with pytest.raises(SessionNotFoundError, match="exactly one"):
        MarimoPairToolkit.from_discovery(registry_dir=tmp_path / "nothing-here")
    for toolkit in (
        MarimoPairToolkit.from_url(server.url, notebook=str(path), attach=True),
        MarimoPairToolkit.from_discovery(registry_dir=server.registry_dir, notebook=str(path)),
    ):
        try:
            tools = {t.name: t for t in toolkit.get_tools()}
            listed = call(tools["read_notebook"])
            assert listed.status != "error" and "found = 1" in listed.content
        finally:
            toolkit.close()
