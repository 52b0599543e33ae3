"""Kernel programs: built safely, parsed strictly, and in agreement with `_hashing`."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from marimo_pair_tools import MarimoClient
from marimo_pair_tools import _kernel_programs as kp
from marimo_pair_tools._hashing import code_hash, notebook_version
from marimo_pair_tools.errors import (
    CellNotFoundError,
    CodeExecutionError,
    EditMatchError,
    StaleCellError,
    ValidationFailedError,
)

NASTY = 'a = """x\'\'\' {} {0} \\n \\\\ "q" \'s\' é ✓ 𝔘"""\nb = f"{a!r}"  # }{ \x00'.replace(
    "\x00", ""
)

ALL_PROGRAMS = [
    kp.cells_program(offset=2, limit=5),
    kp.read_cell_program(NASTY),
    kp.codes_program([NASTY, "x"]),
    kp.graph_program(None),
    kp.graph_program(NASTY),
    kp.errors_program(),
    kp.apply_program([{"op": "create", "code": NASTY, "hide_code": False, "run": True}]),
    kp.verify_program([{"cell_id": "a", "present": True, "code_hash": "0"}], ["a"]),
    kp.packages_list_program(),
    kp.packages_change_program("add", [NASTY]),
    kp.set_ui_value_program(NASTY, {"k": [NASTY]}),
    kp.variables_program([NASTY], limit=3, max_repr=10),
    kp.status_program(),
    kp.snapshot_program(),
]


def _inner_source(program: str) -> str:
    """The program the launcher compiles: the one string literal in the launcher."""
    literals = [
        node.value
        for node in ast.walk(ast.parse(program))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 1000
    ]
    assert len(literals) == 1
    return literals[0]


def _args_of(program: str) -> Any:
    """Decode the `_ARGS = _json.loads(<literal>)` line the way the kernel will."""
    source = _inner_source(program)
    line = next(line for line in source.splitlines() if line.startswith("_ARGS = "))
    literal = line.removeprefix("_ARGS = _json.loads(").removesuffix(")")
    return json.loads(ast.literal_eval(literal))


@pytest.mark.parametrize("program", ALL_PROGRAMS)
def test_every_program_compiles_with_top_level_await(program: str) -> None:
    compile(program, "<launcher>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    compile(
        _inner_source(program), "<kernel program>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    assert len(program.splitlines()) <= 3  # the launcher stays tiny for marimo's analysis


def test_arguments_travel_as_one_literal_never_as_source() -> None:
    program = kp.apply_program([{"op": "create", "code": NASTY, "hide_code": False, "run": True}])
    assert _args_of(program)["changes"][0]["code"] == NASTY
    # The user text appears nowhere verbatim: only inside the escaped JSON literal.
    assert NASTY not in program and NASTY not in _inner_source(program)
    assert sum(line.startswith("_ARGS") for line in _inner_source(program).splitlines()) == 1


def _tagged(payload: dict[str, Any]) -> str:
    return "cell output\n" + kp.RESULT_TAG + json.dumps(payload) + "\n"


def test_parse_result_returns_the_last_tagged_result() -> None:
    stdout = _tagged({"ok": True, "result": 1}) + _tagged({"ok": True, "result": {"x": 2}})
    assert kp.parse_result(stdout) == {"x": 2}


@pytest.mark.parametrize(
    ("kind", "cls", "hint"),
    [
        ("not_found", CellNotFoundError, "exact cell id"),
        ("validation", ValidationFailedError, "Nothing was applied"),
        ("stale", StaleCellError, "expected_hash=abc"),
        ("match", EditMatchError, "Copy `old` exactly"),
        ("internal", CodeExecutionError, "bug in marimo-pair-tools"),
    ],
)
def test_parse_result_maps_error_kinds(kind: str, cls: type[Exception], hint: str) -> None:
    stdout = _tagged(
        {
            "ok": False,
            "error": {
                "kind": kind,
                "message": "boom",
                "current_code": "x = 1",
                "current_hash": "abc",
            },
        }
    )
    with pytest.raises(cls, match=hint) as info:
        kp.parse_result(stdout)
    assert "boom" in str(info.value)
    if kind in ("stale", "match"):  # the model gets the code to base its retry on
        assert "```python\nx = 1\n```" in str(info.value)
    assert info.value.details["current_code"] == "x = 1"  # type: ignore[attr-defined]


def test_parse_result_without_tag_quotes_stderr() -> None:
    with pytest.raises(CodeExecutionError, match="KeyboardInterrupt"):
        kp.parse_result("partial output", "Traceback …\nKeyboardInterrupt\n")


def test_parse_result_with_cut_json_says_so() -> None:
    with pytest.raises(CodeExecutionError, match="cut or garbled"):
        kp.parse_result(kp.RESULT_TAG + '{"ok": true, "result": [1, 2')


def test_collector_keeps_a_huge_result_whole_across_chunks() -> None:
    payload = {"ok": True, "result": "x" * 500_000}
    stream = "printed by a cell\n" + kp.RESULT_TAG + json.dumps(payload) + "\n"
    collector = kp.ResultCollector(console_limit=100)
    for start in range(0, len(stream), 7):  # tags straddle chunk boundaries
        collector("stdout", stream[start : start + 7])
        collector("stderr", "noise")
    assert kp.parse_result(collector.stdout) == "x" * 500_000
    assert collector.console == "printed by a cell\n"


def test_collector_without_tag_keeps_console() -> None:
    collector = kp.ResultCollector()
    collector("stdout", "hello <<marimo-pair:res")
    assert collector.stdout == ""
    assert collector.console == "hello <<marimo-pair:res"


def test_hashing_contract() -> None:
    assert code_hash("x = 1") == hashlib.sha256(b"x = 1").hexdigest()[:16]
    expected = hashlib.sha256("a\0b\0c\0é\0".encode()).hexdigest()[:16]
    assert notebook_version([("a", "b"), ("c", "é")]) == expected
    assert notebook_version([("a", "b")]) != notebook_version([("ab", "")])


def test_kernel_hashes_agree_with_hashing_module(client: MarimoClient, attached: Any) -> None:
    cells = ["x = 1", NASTY, "", 'print("é ✓")']
    path: Path = attached(cells)
    collector = kp.ResultCollector()
    result = client.execute(kp.cells_program(), notebook=str(path), on_chunk=collector)
    page = kp.parse_result(collector.stdout, result.stderr)
    assert [c["code_hash"] for c in page["cells"]] == [code_hash(c) for c in cells]
    ids = [c["id"] for c in page["cells"]]
    assert page["notebook_version"] == notebook_version(zip(ids, cells, strict=True))
