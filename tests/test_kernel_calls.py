"""Calls into the kernel package: built safely, parsed strictly, shipped once per kernel."""

from __future__ import annotations

import ast
import hashlib
import json
import signal
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from marimo_pair_tools import MarimoClient
from marimo_pair_tools import _kernel_calls as kc
from marimo_pair_tools.errors import (
    CellNotFoundError,
    CodeExecutionError,
    EditMatchError,
    ExecuteTimeoutError,
    StaleCellError,
    ValidationFailedError,
)
from marimo_pair_tools.kernel import loader
from marimo_pair_tools.kernel.hashing import code_hash, notebook_version
from marimo_pair_tools.notebook import Notebook

NASTY = 'a = """x\'\'\' {} {0} \\n \\\\ "q" \'s\' é ✓ 𝔘"""\nb = f"{a!r}"  # }{ \x00'.replace(
    "\x00", ""
)

READS = [
    kc.cells(offset=2, limit=5),
    kc.read_cell(NASTY),
    kc.read_cells([NASTY, "x"]),
    kc.codes([NASTY, "x"]),
    kc.graph(None),
    kc.graph(NASTY),
    kc.errors(),
    kc.verify([{"cell_id": "a", "present": True, "code_hash": "0"}], ["a"]),
    kc.packages_list(),
    kc.variables([NASTY], limit=3, max_repr=10),
    kc.status(),
    kc.snapshot(),
    kc.version(),
]
CHANGES = [
    kc.apply([{"op": "create", "code": NASTY, "hide_code": False, "run": True}]),
    kc.packages_change("add", [NASTY]),
    kc.set_ui_value(NASTY, {"k": [NASTY]}),
]
KERNEL_DIR = Path(kc.__file__).parent / "kernel"


def _compiled(source: str) -> types.CodeType:
    return compile(source, "<call>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _args_of(source: str) -> Any:
    """Decode the call's one JSON literal the way the kernel will."""
    call = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("call", "acall")
    )
    op, literal = (ast.literal_eval(arg) for arg in call.args)
    return op, json.loads(literal)


@pytest.mark.parametrize("call", READS + CHANGES, ids=lambda c: c.op)
def test_every_call_compiles_and_stays_short(call: kc.KernelCall) -> None:
    _compiled(call.source())
    _compiled(call.source(install=True))
    overhead = len(call.source().encode()) - len(json.dumps(dict(call.args)).encode())
    assert overhead <= 400  # the call itself; the arguments are what the caller sends
    assert len(kc.read_cell("x").source().encode()) <= 2048


@pytest.mark.parametrize("call", READS, ids=lambda c: c.op)
def test_reads_are_synchronous_so_an_interrupt_stops_them(call: kc.KernelCall) -> None:
    # marimo cancels an async scratchpad run only at its next await (handlers.py).
    assert not _compiled(call.source()).co_flags & 0x80  # CO_COROUTINE
    assert not _compiled(call.source(install=True)).co_flags & 0x80


@pytest.mark.parametrize("call", CHANGES, ids=lambda c: c.op)
def test_changes_await_code_mode(call: kc.KernelCall) -> None:
    assert _compiled(call.source()).co_flags & 0x80


def test_arguments_travel_as_one_literal_never_as_source() -> None:
    call = kc.apply([{"op": "create", "code": NASTY, "hide_code": False, "run": True}])
    op, args = _args_of(call.source())
    assert op == "apply"
    assert args["changes"][0]["code"] == NASTY
    # The user text appears nowhere verbatim: only inside the escaped JSON literal.
    assert NASTY not in call.source()


def test_kernel_sources_import_only_stdlib_marimo_and_earlier_modules() -> None:
    stdlib = set(sys.stdlib_module_names)
    for i, module in enumerate(kc.KERNEL_MODULES):
        tree = ast.parse((KERNEL_DIR / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                names = [node.module] if node.module else [a.name for a in node.names]
                for name in names:
                    assert name in kc.KERNEL_MODULES[:i], f"{module} imports {name} too early"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                roots = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for root in (r.split(".")[0] for r in roots):
                    assert root in stdlib or root == "marimo", f"{module} imports {root}"


def test_loader_installs_every_module_in_process_and_is_idempotent() -> None:
    sources = {m: (KERNEL_DIR / f"{m}.py").read_text() for m in kc.KERNEL_MODULES}
    name = "_marimo_pair_kernel_test_inprocess"
    sigint = signal.getsignal(signal.SIGINT)  # entry wraps it, as in a kernel
    try:
        package = loader.install(name, sources)
        assert set(package.entry.OPERATIONS) | set(package.entry.ASYNC_OPERATIONS) == {
            c.op for c in READS + CHANGES
        }
        assert loader.install(name, {}) is package
        # Kernel code is real code: its own analysis runs here against the real marimo.
        graph = package.analysis.Graph(
            [("a", "x = 1"), ("b", "y = x + 1"), ("c", "x = y")],
            lambda _, code: package.analysis.static(code),
        )
        assert graph.cycles == [["a", "b", "c"]] or graph.multiply == {"x": ["a", "c"]}
    finally:
        signal.signal(signal.SIGINT, sigint)
        for key in [k for k in sys.modules if k.startswith(name)]:
            del sys.modules[key]


def test_a_failed_install_leaves_nothing_behind() -> None:
    name = "_marimo_pair_kernel_test_broken"
    with pytest.raises(ZeroDivisionError):
        loader.install(name, {"hashing": "", "text": "1 / 0"})
    assert not [k for k in sys.modules if k.startswith(name)]


def test_package_name_carries_the_sources_hash() -> None:
    name = kc.package_name()
    assert name.startswith("_marimo_pair_kernel_") and len(name) == len("_marimo_pair_kernel_") + 16
    assert name in kc.apply([]).source()


def test_the_client_side_never_imports_marimo() -> None:
    code = (
        "import sys, marimo_pair_tools, marimo_pair_tools.toolkit, marimo_pair_tools.notebook\n"
        "from marimo_pair_tools import _kernel_calls as kc\n"
        "kc.read_cell('x').source(install=True)\n"
        "bad = sorted(m for m in sys.modules if m == 'marimo' or m.startswith('marimo.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _tagged(payload: dict[str, Any]) -> str:
    return "cell output\n" + kc.RESULT_TAG + json.dumps(payload) + "\n"


def test_parse_result_returns_the_last_tagged_result() -> None:
    stdout = _tagged({"ok": True, "result": 1}) + _tagged({"ok": True, "result": {"x": 2}})
    assert kc.parse_result(stdout) == {"x": 2}


@pytest.mark.parametrize(
    ("kind", "cls", "hint"),
    [
        ("not_found", CellNotFoundError, "exact cell id"),
        ("validation", ValidationFailedError, "Nothing was applied"),
        ("stale", StaleCellError, "its hash is abc"),
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
        kc.parse_result(stdout)
    assert "boom" in str(info.value)
    if kind in ("stale", "match"):  # the model gets the code to base its retry on
        assert "```python\nx = 1\n```" in str(info.value)
    assert info.value.details["current_code"] == "x = 1"  # type: ignore[attr-defined]


def test_parse_result_without_tag_quotes_stderr() -> None:
    with pytest.raises(CodeExecutionError, match="KeyboardInterrupt"):
        kc.parse_result("partial output", "Traceback …\nKeyboardInterrupt\n")


def test_parse_result_with_cut_json_says_so() -> None:
    with pytest.raises(CodeExecutionError, match="cut or garbled"):
        kc.parse_result(kc.RESULT_TAG + '{"ok": true, "result": [1, 2')


def test_collector_keeps_a_huge_result_whole_across_chunks() -> None:
    payload = {"ok": True, "result": "x" * 500_000}
    stream = "printed by a cell\n" + kc.RESULT_TAG + json.dumps(payload) + "\n"
    collector = kc.ResultCollector(console_limit=100)
    for start in range(0, len(stream), 7):  # tags straddle chunk boundaries
        collector("stdout", stream[start : start + 7])
        collector("stderr", "noise")
    assert kc.parse_result(collector.stdout) == "x" * 500_000
    assert collector.console == "printed by a cell\n"


def test_collector_without_tag_keeps_console() -> None:
    collector = kc.ResultCollector()
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
    collector = kc.ResultCollector()
    result = client.execute(kc.cells().source(install=True), notebook=str(path), on_chunk=collector)
    page = kc.parse_result(collector.stdout, result.stderr)
    assert [c["code_hash"] for c in page["cells"]] == [code_hash(c) for c in cells]
    ids = [c["id"] for c in page["cells"]]
    assert page["notebook_version"] == notebook_version(zip(ids, cells, strict=True))


def _counting(client: MarimoClient) -> list[str]:
    sent: list[str] = []
    original = client.execute

    def execute(code: str, **kwargs: Any) -> Any:
        sent.append(code)
        return original(code, **kwargs)

    client.execute = execute  # type: ignore[method-assign]
    return sent


def test_the_package_is_shipped_once_per_kernel_then_short_calls(
    client: MarimoClient, attached: Any
) -> None:
    path: Path = attached(["x = 1", "y = x + 1"])
    sent = _counting(client)
    notebook = Notebook(client, str(path))
    notebook.cells()
    # A fresh kernel: the short call answers not_installed, then the package comes with it.
    assert len(sent) == 2 and len(sent[1]) > 20_000
    for _ in range(3):
        notebook.read_cell(notebook.cells().cells[0].id)
    assert len(sent) == 8
    assert all(len(code.encode()) <= 2048 for code in sent[2:])


def test_a_restarted_kernel_gets_the_package_again_without_an_error(
    client: MarimoClient, attached: Any
) -> None:
    path: Path = attached(["x = 1"])
    notebook = Notebook(client, str(path))
    assert notebook.cells().total == 1
    client.restart(str(path))
    sent = _counting(client)
    assert notebook.cells().total == 1
    assert len(sent) == 2  # not_installed, then installed with the call


def test_nothing_of_ours_lands_in_notebook_globals(client: MarimoClient, attached: Any) -> None:
    # Cells that define the names our call and loader use keep their values.
    path: Path = attached(['entry = "mine"', 'call = "also mine"', "json = 3", "sys = 4"])
    notebook = Notebook(client, str(path))
    notebook.apply([{"op": "run", "cell": c.id} for c in notebook.cells().cells])
    probe = "print(sorted(k for k in globals() if not k.startswith('__')))"
    before = client.execute(probe, notebook=str(path)).stdout
    notebook.apply([{"op": "create", "code": "z = 1", "hide_code": False, "run": True}])
    report = notebook.variables(["entry", "call", "json", "sys"])
    assert [v.repr for v in report.variables] == ["'mine'", "'also mine'", "3", "4"]
    after = client.execute(probe, notebook=str(path)).stdout
    assert set(json.loads(after.replace("'", '"'))) - set(json.loads(before.replace("'", '"'))) == {
        "z"
    }


def test_a_read_stuck_in_a_users_repr_is_interrupted_and_the_kernel_answers(
    client: MarimoClient, attached: Any
) -> None:
    # The notebook takes SIGALRM for itself, so the read's own budget stands aside;
    # the read is synchronous, so the client's timeout still interrupts it.
    path: Path = attached(
        [
            "import signal\nsignal.signal(signal.SIGALRM, lambda *a: None)",
            "class Stuck:\n    def __repr__(self):\n        while True:\n            pass\n",
            "stuck = Stuck()",
        ]
    )
    notebook = Notebook(client, str(path), timeout=3)
    # Running the cells also ships the package, so the timed call is only the read.
    notebook.apply([{"op": "run", "cell": c.id} for c in notebook.cells().cells])
    with pytest.raises(ExecuteTimeoutError) as info:
        notebook.variables(["stuck"])
    assert info.value.kernel_responsive is True
    assert notebook.cells().total == 3


def test_the_fence_evidence_line_is_taken_out_of_stdout_and_the_last_one_wins() -> None:
    """Only a line with the call's nonce is ours; a forged one (before or after it) is the
    code's own text, and of our lines the last wins."""
    from marimo_pair_tools.client import ExecuteResult

    forged = kc.FENCE_TAG + json.dumps({"refusals": [], "version_before": "a"})
    guessed = kc.FENCE_TAG + json.dumps({"nonce": "other", "refusals": []})
    ours = kc.FENCE_TAG + json.dumps(
        {"nonce": "n1", "refusals": ["x"], "version_before": "a", "version_after": "b"}
    )
    raw = ExecuteResult(
        success=True,
        stdout=f"hello\n{forged}\n{ours}\n{guessed}\n{forged}\n",
        stderr="",
        output=None,
        elapsed=0.1,
    )
    result = kc.with_evidence(raw, "n1")
    assert result.evidence is not None
    assert result.evidence.refusals == ["x"] and result.evidence.changed
    assert result.stdout == f"hello\n{forged}\n{guessed}\n{forged}\n"
    # The line in the source the kernel runs carries the nonce.
    assert "'n1'" in kc.scratchpad_source("1", nonce="n1")
    # No line (a run without the fence, or a kernel that died): no evidence, not "clean".
    bare = ExecuteResult(success=True, stdout="hi\n", stderr="", output=None, elapsed=0.1)
    assert kc.with_evidence(bare).evidence is None
