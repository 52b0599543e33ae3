"""Nothing the person wrote is lost, no rule is skipped: each class of fault on a real server.

Every refusal here also checks that the notebook file is byte for byte what it was.
A person's edit is made the way the browser's arrives: a marimo transaction through
code mode, sent on the same server (not through our tools).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from marimo_pair_tools import MarimoClient, guards
from marimo_pair_tools.eval.trajectory import _CellNames
from marimo_pair_tools.toolkit import MarimoPairToolkit

from .conftest import write_notebook


def call(tool: BaseTool, **args: Any) -> ToolMessage:
    message = tool.invoke({"type": "tool_call", "name": tool.name, "args": args, "id": "c1"})
    assert isinstance(message, ToolMessage)
    return message


def ok(message: ToolMessage) -> ToolMessage:
    assert message.status != "error", message.content
    return message


def refused(message: ToolMessage, *phrases: str) -> ToolMessage:
    assert message.status == "error", message.content
    for phrase in phrases:
        assert phrase in message.content, (phrase, message.content)
    return message


def person_edits(client: MarimoClient, path: Path, cell: str, code: str) -> None:
    program = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({cell!r}, code={code!r})\n"
    )
    assert client.execute(program, notebook=str(path)).success


# ----------------------------------------------------------------------- deletes


def test_a_delete_is_compare_and_swap_on_the_deleted_cells_code(
    tools_for: Any, client: MarimoClient
) -> None:
    tools, path, [cell] = tools_for(["draft = 1"])
    assert "no descendants" in ok(call(tools["inspect_graph"], cell=cell)).content
    person_edits(client, path, cell, "draft = 1\nlots_of_new_work = draft * 2")
    before = path.read_bytes()
    message = refused(call(tools["delete_cell"], cell=cell), "changed since it was read")
    assert "lots_of_new_work" in message.content  # the current code is shown
    assert path.read_bytes() == before
    # Having seen the new code, the agent may inspect again and delete on purpose.
    ok(call(tools["inspect_graph"], cell=cell))
    deleted = ok(call(tools["delete_cell"], cell=cell))
    assert "lots_of_new_work" not in path.read_text()
    # The model sees what it deleted: the code and the names it defined.
    assert "lots_of_new_work = draft * 2" in deleted.content
    assert "it defined: draft, lots_of_new_work" in deleted.content


# ------------------------------------------------------------------- references


def test_a_reference_that_is_one_cells_id_and_anothers_name_is_refused(
    tools_for: Any, client: MarimoClient
) -> None:
    tools, path, ids = tools_for(["a = 1", "b = 2"])
    first, second = ids
    person_names = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({second!r}, code='b = 2', name={first!r})\n"
    )
    assert client.execute(person_names, notebook=str(path)).success
    before = path.read_bytes()
    # The kernel's rule: reading by that reference is refused, naming both cells.
    message = refused(call(tools["read_cell"], cell=first), "ambiguous", first, second)
    ok(call(tools["read_notebook"]))
    ok(call(tools["read_cell"], cell=second))
    # The guard's rule, the same: an edit by that reference never reaches the kernel.
    message = refused(call(tools["edit_cell"], cell=first, code="a = 3"), "ambiguous", second)
    assert "refused" in message.content
    assert path.read_bytes() == before
    # The eval's trajectory audit resolves by the same rule.
    names = _CellNames()
    names.learn({"cells": [{"id": first, "name": None}, {"id": second, "name": first}]})
    assert names.key(first) not in (first, second)
    assert names.key(second) == second


# ------------------------------------------------------------------- documents


def test_a_restarted_kernel_is_a_new_document_and_the_ledger_forgets(tools_for: Any) -> None:
    tools, path, [cell] = tools_for(["x = 1"])
    ok(call(tools["read_cell"], cell=cell))
    tools["read_cell"].session.notebook.client.restart(str(path))  # type: ignore[attr-defined]
    listing = ok(call(tools["read_notebook"]))
    assert "read cells again" in listing.content
    before = path.read_bytes()
    refused(call(tools["edit_cell"], cell=cell, code="x = 2"), "you have not read cell")
    assert path.read_bytes() == before


def test_merging_ledgers_of_two_documents_keeps_the_newer_only() -> None:
    old = guards.record_read(guards.record_document(guards.Ledger(), "k1:f"), "c", "h")
    new = guards.record_document(old, "k2:f")
    assert new.reads == {} and new.document == "k2:f"
    stale_branch = guards.record_read(old, "d", "h2")  # a parallel call still on k1
    merged = guards.merge_ledgers(stale_branch, new)
    assert merged.document == "k2:f" and merged.reads == {}
    assert guards.merge_ledgers(new, stale_branch).reads == {}


# ----------------------------------------------------------------- done = on disk


def _must(ok_: bool, why: str) -> None:
    if not ok_:
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI runs as root and must run this test)")
        pytest.skip(why)


def test_a_save_to_an_immutable_file_is_an_error_never_success(tools_for: Any) -> None:
    tools, path, [cell] = tools_for(["x = 1"])
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    _must(made.returncode == 0, f"chattr +i needs root on ext2/3/4: {made.stderr!r}")
    try:
        before = path.read_bytes()
        message = refused(
            call(tools["create_cell"], code="new_value = 41 + 1"),
            "does not hold it",
            "new code of cell",
            "Do not redo",
        )
        assert path.read_bytes() == before
        # The change is in the session, and the ledger knows its code: editing it works
        # (and is refused the same way while the file stays immutable).
        new_cell = next(
            c for c in call(tools["read_notebook"]).artifact["cells"] if c["id"] != cell
        )
        assert "new_value" in new_cell["defs"]
        assert "saved" not in message.content.replace("not saved", "")
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_save_to_a_full_disk_is_an_error_never_success(start_server: Any, tmp_path: Path) -> None:
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    _must(mounted.returncode == 0, f"mounting a small tmpfs needs root: {mounted.stderr!r}")
    toolkit = server = None
    try:
        path = write_notebook(disk / "nb.py", ["x = 1"])
        server = start_server(path)
        toolkit = MarimoPairToolkit.from_server(server, notebook=str(path))
        tools = {t.name: t for t in toolkit.get_tools()}
        ok(call(tools["read_notebook"]))
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk to the last block
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        before = path.read_bytes()
        message = refused(
            call(tools["create_cell"], code="big = '" + "y" * 20_000 + "'"),
            "does not hold it",
        )
        assert "full" in message.content or "not in the file" in message.content
        assert path.read_bytes() == before  # a cut write is undone
    finally:
        if toolkit is not None:
            toolkit.close()
        if server is not None:
            server.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_saved_change_says_so(tools_for: Any) -> None:
    tools, path, _ = tools_for(["x = 1"])
    created = ok(call(tools["create_cell"], code="y = x + 1"))
    assert "saved: the notebook file holds this change" in created.content
    assert created.artifact["saved"] is True
    assert "y = x + 1" in path.read_text()


# ------------------------------------------------------------------ cut reads


def test_a_cut_read_is_not_a_read_of_the_whole_cell(tools_for: Any) -> None:
    head = "value = 1\n"
    tail = "".join(f"padding_{i} = {i}\n" for i in range(800))  # ~14,000 characters
    tools, path, [cell] = tools_for([head + tail + "last_line = 'the end'"])
    shown = ok(call(tools["read_cell"], cell=cell))
    assert "a part: only what is shown counts as read" in shown.content
    before = path.read_bytes()
    # A full replacement would drop code the agent never saw.
    refused(call(tools["edit_cell"], cell=cell, code="value = 2"), "only part of cell", "offset=")
    # A find/replace inside the part seen still works...
    ok(call(tools["edit_cell"], cell=cell, old="value = 1", new="value = 2"))
    assert "value = 2" in path.read_text()
    before = path.read_bytes()
    # ...but not one whose match lies in the part never shown.
    refused(
        call(tools["edit_cell"], cell=cell, old="last_line = 'the end'", new="last_line = 0"),
        "outside the parts of it you have read",
    )
    assert path.read_bytes() == before
    # Paging through the rest makes it a whole read.
    offset = shown.artifact["code_shown"][1]
    while True:
        page = ok(call(tools["read_cell"], cell=cell, offset=offset))
        end = page.artifact["code_shown"][1]
        if end >= len(page.artifact["code"]):
            break
        offset = end
    ok(call(tools["edit_cell"], cell=cell, code="value = 3"))
    assert "padding_1" not in path.read_text()


# -------------------------------------------------------------- judged by effect


def test_emptying_a_cell_others_read_is_judged_as_a_delete(tools_for: Any) -> None:
    tools, path, [source, reader] = tools_for(["x = 1", "y = x + 1"])
    ok(call(tools["read_cell"], cell=source))
    before = path.read_bytes()
    refused(call(tools["edit_cell"], cell=source, code=""), reader, "reads x")
    refused(call(tools["edit_cell"], cell=source, code="x_renamed = 1"), reader)
    assert path.read_bytes() == before
    # Acknowledging without inspecting: the delete rules ask for inspect_graph first.
    refused(
        call(tools["edit_cell"], cell=source, code="", acknowledge_descendants=[reader]),
        "inspect_graph",
    )
    assert path.read_bytes() == before
    ok(call(tools["inspect_graph"], cell=source))
    ok(call(tools["edit_cell"], cell=source, code="", acknowledge_descendants=[reader]))
    assert "x = 1" not in path.read_text()


def test_an_edit_acknowledging_readers_needs_approval_like_a_delete() -> None:
    ledger = guards.record_read(guards.Ledger(notebook_version="v"), "a", "h")
    ledger = guards.record_graph(ledger, "v", "a", ["b"], {"b": ["x"]}, code_hash="h")
    policy = guards.Policy(approve_deletes=True)
    args = {"cell": "a", "code": "", "acknowledge_descendants": ["b"]}
    decision = guards.check(policy, ledger, guards.EDIT_CELL, args)
    assert decision.allowed and decision.needs_approval
    plain = guards.check(policy, ledger, guards.EDIT_CELL, {"cell": "a", "code": "x = 2"})
    assert plain.allowed and not plain.needs_approval


def test_defining_a_name_others_read_names_those_cells(tools_for: Any) -> None:
    tools, path, [reader] = tools_for(["total = missing_value + 1"])
    before = path.read_bytes()
    refused(call(tools["create_cell"], code="missing_value = 1"), reader, "missing_value")
    assert path.read_bytes() == before
    ok(call(tools["create_cell"], code="missing_value = 1", acknowledge_descendants=[reader]))
    assert "missing_value = 1" in path.read_text()


def test_delete_and_recreate_is_an_edit_of_what_was_read(tools_for: Any) -> None:
    tools, path, [source, reader] = tools_for(["x = 1  # the person's", "y = x + 1"])
    ok(call(tools["inspect_graph"], cell=source))  # inspected, never read
    batch = [
        {"op": "delete", "cell": source, "acknowledge_descendants": [reader]},
        {"op": "create", "code": "x = 2"},
    ]
    before = path.read_bytes()
    refused(call(tools["apply_changes"], changes=batch), "read_cell")
    assert path.read_bytes() == before
    ok(call(tools["read_cell"], cell=source))
    ok(call(tools["inspect_graph"], cell=source))
    ok(call(tools["apply_changes"], changes=batch))
    assert "the person's" not in path.read_text()


# --------------------------------------------------------------- arguments


def test_arguments_a_tool_does_not_know_are_refused_with_the_valid_ones(
    tools_for: Any,
) -> None:
    tools, path, [cell, reader] = tools_for(["x = 1", "y = x"])
    ok(call(tools["read_cell"], cell=cell))
    before = path.read_bytes()
    message = refused(
        call(tools["edit_cell"], cell=cell, code="x = 2", dry_run=True),
        "unknown argument 'dry_run'",
        "Valid arguments: cell, code",
    )
    assert "nothing changed" in message.content
    refused(
        call(
            tools["apply_changes"],
            changes=[{"op": "edit", "cell": cell, "code": "x = 2", "dry_run": True}],
        ),
        "dry_run",
    )
    assert path.read_bytes() == before
    # apply_changes keeps acknowledge_descendants: the delete can pass.
    ok(call(tools["inspect_graph"], cell=cell))
    ok(
        call(
            tools["apply_changes"],
            changes=[{"op": "delete", "cell": cell, "acknowledge_descendants": [reader]}],
        )
    )
    assert "x = 1" not in path.read_text()


# ----------------------------------------------------------- budgets on reads


def test_get_variables_bounds_a_repr_that_never_ends_or_grows_memory(tools_for: Any) -> None:
    tools, _, ids = tools_for(
        [
            "class Stuck:\n    def __repr__(self):\n        while True:\n            pass\n",
            "class Greedy:\n    def __repr__(self):\n        hoard = []\n        while True:\n"
            "            hoard.append(bytearray(1 << 16))\n",
            "stuck = Stuck()\ngreedy = Greedy()\nfine = 42",
        ]
    )
    ok(call(tools["apply_changes"], changes=[{"op": "run", "cell": c} for c in ids]))
    shown = ok(call(tools["get_variables"], names=["stuck", "greedy", "fine"]))
    by_name = {v["name"]: v["repr"] for v in shown.artifact["variables"]}
    assert "took over 1 s" in by_name["stuck"]
    assert "grew memory" in by_name["greedy"] or "took over" in by_name["greedy"]
    assert by_name["fine"] == "42"
    ok(call(tools["read_notebook"]))  # the kernel answers


def test_without_a_usable_timer_a_stuck_read_is_still_interrupted(tools_for: Any) -> None:
    tools, _, ids = tools_for(
        [
            "import signal\nsignal.signal(signal.SIGALRM, lambda *a: None)",  # the notebook's
            "class Stuck:\n    def __repr__(self):\n        while True:\n            pass\n",
            "stuck = Stuck()",
        ]
    )
    ok(call(tools["apply_changes"], changes=[{"op": "run", "cell": c} for c in ids]))
    toolkit_timeout = tools["get_variables"].session.notebook  # type: ignore[attr-defined]
    toolkit_timeout.timeout = 3
    message = refused(call(tools["get_variables"], names=["stuck"]), "limit")
    assert "answers again" in message.content
    toolkit_timeout.timeout = None
    ok(call(tools["read_notebook"]))


@pytest.mark.parametrize(
    "code",
    [
        "import asyncio\nawait asyncio.sleep(0)\nwhile True:\n    pass\n",
        # Code that swallows ordinary exceptions is interrupted again until it stops.
        "import asyncio\nawait asyncio.sleep(0)\nwhile True:\n    try:\n"
        "        sum(range(10**5))\n    except Exception:\n        pass\n",
    ],
    ids=["never-awaits", "swallows-exceptions"],
)
def test_async_code_that_never_awaits_does_not_strand_the_kernel(tools_for: Any, code: str) -> None:
    tools, _, _ = tools_for(["x = 1"])
    message = refused(call(tools["execute_code"], code=code, timeout=2), "limit")
    assert "answers again" in message.content, message.content
    # No restart is advised (the message says so in those words).
    assert "no restart is needed" in message.content and "Only a restart" not in message.content
    ok(call(tools["execute_code"], code="x + 1"))
