"""Attack 11: hostile-review reproducers against the integrity guarantees, on real servers.

Written by a hostile review of the integrity work; every break it found is fixed and
its test now asserts the fixed behaviour. The one xfail documents a known limit: a
budget enforced by a signal cannot stop one long call inside C code.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from marimo_pair_tools import MarimoClient
from marimo_pair_tools.toolkit import MarimoPairToolkit

from .test_integrity import call, ok, person_edits, refused


def codes_in(path: Path) -> str:
    return path.read_text()


# ------------------------------------------------------- rule 2: acknowledgements


def test_ack_true_on_edit_disables_the_kernel_effects_check(tools_for: Any) -> None:
    tools, path, [source, _reader, stranger] = tools_for(
        ["x = 1", "y = x + 1", "z = missing_value * 2"]
    )
    ok(call(tools["read_cell"], cell=source))
    ok(call(tools["inspect_graph"], cell=source))  # descendants: [reader] only
    before = path.read_bytes()
    # The edit also defines `missing_value`, which `stranger` reads: stranger must be
    # acknowledged (rule 2) -- it is not a descendant the agent was shown.
    message = call(
        tools["edit_cell"],
        cell=source,
        code="x = 1\nmissing_value = 5",
        acknowledge_descendants=True,
    )
    assert message.status == "error", message.content
    assert stranger in message.content
    assert path.read_bytes() == before


def test_ack_on_a_create_lets_an_emptying_edit_skip_inspect_graph(tools_for: Any) -> None:
    tools, path, [source, reader] = tools_for(["x = 1", "y = x + 1"])
    read = ok(call(tools["read_cell"], cell=source))  # read, never inspected
    before = path.read_bytes()
    message = call(
        tools["apply_changes"],
        changes=[
            {"op": "create", "code": "unrelated = 0", "acknowledge_descendants": [reader]},
            {"op": "edit", "cell": source, "code": "", "expected_hash": read.artifact["code_hash"]},
        ],
    )
    assert message.status == "error", message.content
    assert "inspect_graph" in message.content
    assert path.read_bytes() == before


def test_ack_on_a_create_bypasses_delete_approval(tools_for: Any) -> None:
    asked: list[Any] = []

    def never(request: dict[str, Any]) -> bool:
        asked.append(request)
        return False

    from marimo_pair_tools import guards

    tools, path, [source, reader] = tools_for(
        ["x = 1", "y = x + 1"],
        policy=guards.Policy(approve_deletes=True),
        approve=never,
    )
    read = ok(call(tools["read_cell"], cell=source))
    ok(call(tools["inspect_graph"], cell=source))
    before = path.read_bytes()
    message = call(
        tools["apply_changes"],
        changes=[
            {"op": "create", "code": "unrelated = 0", "acknowledge_descendants": [reader]},
            {"op": "edit", "cell": source, "code": "", "expected_hash": read.artifact["code_hash"]},
        ],
    )
    assert not asked or message.status == "error", "asked a person; fine"
    assert message.status == "error", message.content
    assert path.read_bytes() == before


def test_forged_read_hash_lets_delete_and_recreate_replace_unread_code(tools_for: Any) -> None:
    tools, path, [source, reader] = tools_for(["x = 1  # the person's", "y = x + 1"])
    inspected = ok(call(tools["inspect_graph"], cell=source))  # inspected, never read
    # The hash is in inspect_graph's / read_notebook's artifact (and is sha256 of the
    # code: computable from a guess); the model never saw the code.
    shown_hash = inspected.artifact["focus"]["code_hash"]
    batch = [
        {
            "op": "delete",
            "cell": source,
            "acknowledge_descendants": [reader],
            "read_hash": shown_hash,
        },
        {"op": "create", "code": "x = 2"},
    ]
    before = path.read_bytes()
    message = call(tools["apply_changes"], changes=batch)
    assert message.status == "error", message.content
    assert path.read_bytes() == before


# ------------------------------------------------------------- rule 6: on disk


def _chattr(path: Path, flag: str) -> None:
    made = subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr needs root on ext2/3/4: {made.stderr!r}")


def test_comment_only_edit_to_an_immutable_file_is_reported_saved(tools_for: Any) -> None:
    tools, path, [cell] = tools_for(["x = 1  # TODO check units"])
    ok(call(tools["read_cell"], cell=cell))
    _chattr(path, "+i")
    try:
        message = call(tools["edit_cell"], cell=cell, code="x = 1  # units: metres")
        assert "units: metres" not in path.read_text()  # the file does not hold it
        assert message.status == "error", message.content
        assert "does not hold it" in message.content
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_create_duplicating_existing_code_to_an_immutable_file_is_reported_saved(
    tools_for: Any,
) -> None:
    tools, path, [_cell] = tools_for(['print("checkpoint")'])
    _chattr(path, "+i")
    try:
        before = path.read_bytes()
        message = call(tools["create_cell"], code='print("checkpoint")')
        assert path.read_bytes() == before  # nothing reached the file
        assert message.status == "error", message.content
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_emptying_edit_to_an_immutable_file_is_reported_saved(tools_for: Any) -> None:
    tools, path, [cell, _empty] = tools_for(["scratch = 1", ""])
    ok(call(tools["read_cell"], cell=cell))
    _chattr(path, "+i")
    try:
        message = call(tools["edit_cell"], cell=cell, code="")
        assert "scratch = 1" in path.read_text()  # the file does not hold the edit
        assert message.status == "error", message.content
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


# -------------------------------------------------------- rule 3: what was shown


def test_a_read_with_a_long_header_shows_the_whole_code_it_counts(tools_for: Any) -> None:
    long = "a_rather_descriptive_intermediate_quantity_name_for_the_experiment_number_"
    lines = [f"{long}{i:02d}_out = {long}{i:02d}_in" for i in range(30)]
    code = "\n".join(lines) + "\nperson_note = 'keep this: calibrated on 2024-05-01'"
    assert len(code) < 6000  # fits one read_cell window: counted as a whole read
    tools, path, [cell] = tools_for([code])
    shown = ok(call(tools["read_cell"], cell=cell))
    # Fixed: the code window is never cut by the header; what counts as read is shown.
    assert "person_note = 'keep this: calibrated on 2024-05-01'" in shown.content
    assert shown.artifact["code_shown"] == [0, len(code)]
    ok(call(tools["edit_cell"], cell=cell, code="x = 1"))
    assert "person_note" not in path.read_text()


# -------------------------------------------------- rule 1: seen in current form


def test_delete_after_read_then_person_edit_then_inspect_loses_unseen_code(
    tools_for: Any, client: MarimoClient
) -> None:
    tools, path, [cell] = tools_for(["draft = 1"])
    ok(call(tools["read_cell"], cell=cell))
    person_edits(client, path, cell, "draft = 1\nprint('person: do not lose this note')")
    inspected = ok(call(tools["inspect_graph"], cell=cell))
    assert "do not lose" not in inspected.content  # the code was never shown
    before = path.read_bytes()
    message = call(tools["delete_cell"], cell=cell)
    assert message.status == "error", message.content
    assert path.read_bytes() == before


def test_inspect_person_edits_read_notebook_then_delete_is_refused(
    tools_for: Any, client: MarimoClient
) -> None:
    tools, path, [cell] = tools_for(["draft = 1"])
    ok(call(tools["inspect_graph"], cell=cell))
    person_edits(client, path, cell, "draft = 1\nnew_work = 2")
    ok(call(tools["read_notebook"]))
    before = path.read_bytes()
    refused(call(tools["delete_cell"], cell=cell), "inspect_graph")
    assert path.read_bytes() == before


def test_inspect_person_edits_then_apply_changes_delete_is_refused(
    tools_for: Any, client: MarimoClient
) -> None:
    tools, path, [cell] = tools_for(["draft = 1"])
    ok(call(tools["inspect_graph"], cell=cell))
    person_edits(client, path, cell, "draft = 1\nnew_work = 2")
    before = path.read_bytes()
    refused(call(tools["apply_changes"], changes=[{"op": "delete", "cell": cell}]), "changed")
    assert path.read_bytes() == before


def test_forged_expected_hash_on_delete_loses_the_cas(tools_for: Any, client: MarimoClient) -> None:
    tools, path, [cell] = tools_for(["draft = 1"])
    ok(call(tools["inspect_graph"], cell=cell))
    person_edits(client, path, cell, "draft = 1\nnew_work = 2")
    before = path.read_bytes()
    # A sloppy model copies a made-up / old hash: still compare-and-swap on the real code.
    refused(call(tools["delete_cell"], cell=cell, expected_hash="0" * 16), "changed")
    assert path.read_bytes() == before


def test_forged_expected_descendants_cannot_skip_acknowledgement(
    tools_for: Any, client: MarimoClient
) -> None:
    tools, path, [source, other] = tools_for(["x = 1", "w = 0"])
    ok(call(tools["inspect_graph"], cell=source))  # no descendants
    person_edits(client, path, other, "w = x * 10")  # the person starts reading x
    before = path.read_bytes()
    refused(call(tools["delete_cell"], cell=source, expected_descendants=[other]), other)
    assert path.read_bytes() == before


def test_parallel_edits_of_one_read_apply_once(tools_for: Any) -> None:
    import threading

    tools, _path, [cell] = tools_for(["n = 0"])
    ok(call(tools["read_cell"], cell=cell))
    results: list[ToolMessage] = []

    def edit(value: int) -> None:
        results.append(call(tools["edit_cell"], cell=cell, code=f"n = {value}"))

    threads = [threading.Thread(target=edit, args=(v,)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(m.status for m in results) == ["error", "success"], [m.content for m in results]


# -------------------------------------------------------- rule 4: references


def test_ambiguous_reference_in_acknowledge_descendants_is_accepted(
    tools_for: Any, client: MarimoClient
) -> None:
    tools, path, [source, reader, third] = tools_for(["x = 1", "y = x + 1", "z = 3"])
    person_names = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({third!r}, code='z = 3', name={reader!r})\n"
    )
    assert client.execute(person_names, notebook=str(path)).success
    ok(call(tools["read_notebook"]))
    ok(call(tools["inspect_graph"], cell=source))
    before = path.read_bytes()
    message = call(tools["delete_cell"], cell=source, acknowledge_descendants=[reader])
    assert message.status == "error", message.content
    assert "ambiguous" in message.content
    assert path.read_bytes() == before


def test_person_renames_a_cell_to_another_cells_id_between_calls(
    tools_for: Any, client: MarimoClient
) -> None:
    tools, path, [first, second] = tools_for(["a = 1", "b = 2"])
    ok(call(tools["read_cell"], cell=first))
    ok(call(tools["inspect_graph"], cell=first))
    person_names = (
        "import marimo._code_mode as cm\n"
        "async with cm.get_context(skip_staleness_check=True) as ctx:\n"
        f"    ctx.edit_cell({second!r}, code='b = 2', name={first!r})\n"
    )
    assert client.execute(person_names, notebook=str(path)).success
    before = path.read_bytes()
    refused(call(tools["edit_cell"], cell=first, code="a = 3"), "ambiguous")
    refused(call(tools["delete_cell"], cell=first), "ambiguous")
    refused(
        call(tools["apply_changes"], changes=[{"op": "create", "code": "c = 1", "after": first}]),
        "ambiguous",
    )
    assert path.read_bytes() == before


# ------------------------------------------------------------ rule 5: documents


def test_file_replaced_on_disk_then_edit_without_a_new_read(tools_for: Any) -> None:
    """git checkout replaces the file (new inode) between read_cell and edit_cell."""
    import os

    tools, path, [cell] = tools_for(["x = 1"])
    ok(call(tools["read_cell"], cell=cell))
    replaced = path.read_text().replace("x = 1", "x = 1\n    checked_out = 'from git'")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(replaced)
    os.replace(tmp, path)
    before = path.read_bytes()
    message = call(tools["edit_cell"], cell=cell, code="x = 2")
    assert message.status == "error", message.content  # should make the agent read again
    assert path.read_bytes() == before


# ---------------------------------------------------------- rule 8: budgets


def test_async_code_swallowing_base_exception_is_still_interrupted(tools_for: Any) -> None:
    tools, _, _ = tools_for(["x = 1"])
    code = (
        "import asyncio\nawait asyncio.sleep(0)\nwhile True:\n    try:\n"
        "        sum(range(10**5))\n    except BaseException:\n        pass\n"
    )
    message = refused(call(tools["execute_code"], code=code, timeout=2), "limit")
    assert "answers again" in message.content, message.content
    ok(call(tools["execute_code"], code="x + 1", timeout=5))


@pytest.mark.xfail(
    strict=False,
    reason="LIMIT: budget.bounded raises from a SIGALRM handler, which runs only between "
    "bytecodes: a __repr__ stuck in one long C call (sum over a big range) blows the 1 s "
    "budget by an order of magnitude",
)
def test_get_variables_with_a_repr_stuck_in_c_code_returns_promptly(tools_for: Any) -> None:
    tools, _, ids = tools_for(
        [
            "class SlowC:\n    def __repr__(self):\n        return str(sum(range(3 * 10**8)))\n",
            "slow = SlowC()",
        ]
    )
    ok(call(tools["apply_changes"], changes=[{"op": "run", "cell": c} for c in ids]))
    started = time.monotonic()
    call(tools["get_variables"], names=["slow"])
    assert time.monotonic() - started < 5


# ------------------------------------------------------------- the agent path


def test_agent_with_approve_deletes_empties_a_read_definition_without_approval(
    setup: Any,
) -> None:
    from langchain_core.messages import BaseMessage, HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from marimo_pair_tools.agent import create_pair_agent
    from marimo_pair_tools.testing import ScriptedChatModel

    from .conftest import thread, tool_results

    toolkit, path, [source, reader] = setup(["x = 1", "y = x + 1"])

    def batch(messages: list[BaseMessage]) -> Any:
        read = [m for m in messages if isinstance(m, ToolMessage)][-1]
        return [
            {
                "name": "apply_changes",
                "args": {
                    "changes": [
                        {"op": "create", "code": "tmp = 0", "acknowledge_descendants": [reader]},
                        {
                            "op": "edit",
                            "cell": source,
                            "code": "",
                            "expected_hash": read.artifact["code_hash"],
                        },
                    ]
                },
            }
        ]

    model = ScriptedChatModel([[{"name": "read_cell", "args": {"cell": source}}], batch, "done"])
    agent = create_pair_agent(model, toolkit, approve_deletes=True, checkpointer=InMemorySaver())
    before = path.read_bytes()
    result = agent.invoke({"messages": [HumanMessage("clear x")]}, thread("a11"))
    asked = bool(result.get("__interrupt__"))
    results = tool_results(result["messages"])
    assert asked or path.read_bytes() == before, [m.content for m in results]


# ----------------------------------------------------------- more cut reads


def test_replace_all_in_a_cut_read_refuses_a_match_outside_what_was_shown(
    tools_for: Any,
) -> None:
    body = "".join(f"pad_{i} = 'é✓{i}'  # ünïcode\n" for i in range(400))
    code = "token = 'α'\n" + body + "tail_token = 'α'"
    tools, path, [cell] = tools_for([code])
    shown = ok(call(tools["read_cell"], cell=cell))
    assert shown.artifact["code_shown"][1] < len(code)
    before = path.read_bytes()
    refused(
        call(tools["edit_cell"], cell=cell, old="'α'", new="'β'", replace_all=True),
        "outside the parts",
    )
    # A forged seen_ranges covering everything is overwritten by the ledger's.
    refused(
        call(
            tools["edit_cell"],
            cell=cell,
            old="'α'",
            new="'β'",
            replace_all=True,
            seen_ranges=[(0, len(code))],
        ),
        "outside the parts",
    )
    refused(
        call(
            tools["apply_changes"],
            changes=[
                {
                    "op": "replace",
                    "cell": cell,
                    "old": "tail_token",
                    "new": "t",
                    "seen_ranges": [[0, len(code)]],
                }
            ],
        ),
        "outside the parts",
    )
    assert path.read_bytes() == before


def test_deleting_a_setup_cell_needs_its_readers_acknowledged(
    shared_server: Any, shared_dir: Path
) -> None:
    path = shared_dir / "a11_setup.py"
    path.write_text(
        "import marimo\n\napp = marimo.App()\n\nwith app.setup:\n    K = 41\n\n\n"
        "@app.cell\ndef _():\n    y = K + 1\n    return\n\n\n"
        "@app.function\ndef helper(v):\n    return v * K\n\n\n"
        "if __name__ == '__main__':\n    app.run()\n"
    )
    toolkit = MarimoPairToolkit.from_server(shared_server, notebook=str(path))
    try:
        tools = {t.name: t for t in toolkit.get_tools()}
        cells = ok(call(tools["read_notebook"])).artifact["cells"]
        setup_id = cells[0]["id"]
        before = path.read_bytes()
        refused(call(tools["delete_cell"], cell=setup_id), "inspect_graph")
        ok(call(tools["inspect_graph"], cell=setup_id))
        refused(call(tools["delete_cell"], cell=setup_id), "acknowledge")
        ok(call(tools["read_cell"], cell=setup_id))
        refused(call(tools["edit_cell"], cell=setup_id, code="K2 = 41"), "reads K")
        assert path.read_bytes() == before
    finally:
        toolkit.close()


# ------------------------------------------------- rule 6/9: a save that fails midway


def test_a_save_that_fails_on_a_full_disk_leaves_the_file_whole(
    start_server: Any, tmp_path: Path
) -> None:
    """The change is refused (not saved); is the person's file still whole on disk?"""
    import os

    from .conftest import write_notebook

    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"needs root: {mounted.stderr!r}")
    toolkit = None
    try:
        path = write_notebook(disk / "nb.py", ["x = 1", "person_work = 'precious'"])
        server = start_server(path)
        toolkit = MarimoPairToolkit.from_server(server, notebook=str(path))
        tools = {t.name: t for t in toolkit.get_tools()}
        ok(call(tools["read_notebook"]))
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        before = path.read_bytes()
        refused(call(tools["create_cell"], code="big = '" + "y" * 20_000 + "'"), "does not hold")
        assert path.read_bytes() == before, "the failed save truncated the person's file"
    finally:
        if toolkit is not None:
            toolkit.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)
