"""Eval harness pieces that need no marimo server: comparisons, audit, graders, specs, report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, cast

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from marimo_pair_tools.agent import create_pair_agent
from marimo_pair_tools.errors import ConfigurationError
from marimo_pair_tools.eval import (
    AgentSpec,
    Frame,
    Limits,
    RunConfig,
    compare,
    load_tasks,
    resolve_agent,
    run_suite,
)
from marimo_pair_tools.eval import graders as g
from marimo_pair_tools.eval import oracle as o
from marimo_pair_tools.eval._clean_run import CellInfo, CleanRun
from marimo_pair_tools.eval._values import summarize
from marimo_pair_tools.eval.cli import main as eval_main
from marimo_pair_tools.eval.cli import register
from marimo_pair_tools.eval.report import aggregate, render_summary
from marimo_pair_tools.eval.runner import (
    TaskResult,
    Timings,
    _Injector,
    _Run,
    _Stopper,
    _stream_agent,
)
from marimo_pair_tools.eval.runner import _result as _task_result
from marimo_pair_tools.eval.trajectory import Event, Recorder, audit, to_agentevals
from marimo_pair_tools.testing import ScriptedChatModel
from marimo_pair_tools.toolkit import MarimoPairToolkit

TASKS = Path(__file__).resolve().parents[1] / "notebooks" / "tasks"

# --------------------------------------------------------------------------- compare


def test_scalars_compare_with_tolerance_and_missing_values() -> None:
    assert compare(summarize(0.1 + 0.2), 0.3).equal
    assert compare(summarize(3), 3.0).equal  # dtype does not matter
    assert not compare(summarize(True), 1).equal  # but bool is not a number
    assert compare(summarize(float("nan")), None).equal
    verdict = compare(summarize("Total: 41"), "Total: 42")
    assert not verdict.equal
    assert "expected" in verdict.detail
    assert compare(None, 1).detail == "not defined"


def test_lists_and_dicts_get_partial_credit() -> None:
    assert compare(summarize([1, 2, 3, 4]), [1, 2, 0, 4]).score == 0.75
    assert compare(summarize([1, 2]), [1, 2, 3, 4]).score == 0.5
    verdict = compare(summarize({"a": 1, "b": 2}), {"a": 1, "b": 3})
    assert not verdict.equal
    assert verdict.score == 0.5


def test_frames_are_compared_the_way_a_pandas_user_would() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"region": ["EU", "US", "EU"], "sales": [1.0, 2.0, 3.0]})
    expected = Frame(["region", "sales"], [["EU", 4.0], ["US", 2.0]])
    by_index = df.groupby("region")["sales"].sum()  # a Series indexed by region
    assert compare(summarize(by_index), expected).equal
    assert compare(summarize(by_index.reset_index()), expected).equal
    as_ints = pd.DataFrame({"sales": [4, 2], "region": ["EU", "US"]})  # other order, ints
    assert compare(summarize(as_ints), expected).equal
    swapped = as_ints.iloc[::-1]
    assert not compare(summarize(swapped.reset_index(drop=True)), expected).equal
    assert compare(summarize(swapped.reset_index(drop=True)), expected, ignore_row_order=True).equal
    wrong = pd.DataFrame({"region": ["EU", "US"], "sales": [4.0, 99.0]})
    verdict = compare(summarize(wrong), expected)
    assert not verdict.equal
    assert verdict.score == 0.75
    assert "sales" in verdict.detail


def test_numpy_and_nan_cells() -> None:
    np = pytest.importorskip("numpy")
    assert compare(summarize(np.float64(2.5)), 2.5).equal
    assert compare(summarize(np.array([1, 2, 3])), [1, 2, 3]).equal
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1.0, float("nan")]})
    assert compare(summarize(frame), Frame(["x"], [[1], [None]])).equal


def test_summaries_of_figures_and_unusual_objects() -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    ax.set_title("Revenue")
    summary = summarize(fig)
    plt.close(fig)
    assert summary["kind"] == "figure"
    assert summary["axes"][0]["title"] == "Revenue"
    assert summary["axes"][0]["lines"] == 1

    class Odd:
        def __repr__(self) -> str:
            return "odd"

    assert summarize(Odd())["repr"] == "odd"
    assert summarize(math)["kind"] == "module"
    assert summarize(len)["kind"] == "callable"


# --------------------------------------------------------------------------- audit


def _tool(seq: int, tool: str, args: dict[str, Any], status: str = "success", **kw: Any) -> Event:
    return Event(seq=seq, kind="tool", tool=tool, args=args, status=status, **kw)


def test_audit_counts_an_unread_edit_as_attempted_and_refused() -> None:
    events = [_tool(0, "edit_cell", {"cell": "a", "code": "x = 2"}, status="error")]
    report = audit(events)
    assert report.attempted == 1
    assert report.executed == 0
    assert report.violations[0].rule == "read_before_edit"


def test_audit_executed_violation_and_fresh_reads() -> None:
    read = _tool(
        0, "read_cell", {"cell": "load"}, artifact={"id": "A1", "name": "load", "code_hash": "h1"}
    )
    edit_ok = _tool(1, "edit_cell", {"cell": "load", "code": "x", "expected_hash": "h1"})
    edit_unread = _tool(2, "edit_cell", {"cell": "B2", "code": "y"})  # took effect: a breach
    report = audit([read, edit_ok, edit_unread])
    assert report.edits == 2
    assert report.edits_with_fresh_read == 1
    assert report.executed == 1
    # A wrong hash after a real read is a violation too.
    wrong = _tool(
        1, "edit_cell", {"cell": "A1", "code": "x", "expected_hash": "other"}, status="error"
    )
    assert audit([read, wrong]).attempted == 1


def test_audit_learns_the_current_code_from_a_lost_compare_and_swap() -> None:
    read = _tool(0, "read_cell", {"cell": "A1"}, artifact={"id": "A1", "code_hash": "h1"})
    stale = _tool(
        1,
        "edit_cell",
        {"cell": "A1", "code": "x", "expected_hash": "h1"},
        status="error",
        text="Cell changed. Current code of cell A1 (code_hash h2):\n```python\nz\n```",
    )
    retry = _tool(2, "edit_cell", {"cell": "A1", "old": "z", "new": "w", "expected_hash": "h2"})
    report = audit([read, stale, retry])
    assert report.executed == 0
    assert report.edits_with_fresh_read == 1


def test_audit_deletes_need_a_check_and_acknowledged_descendants() -> None:
    graph = {"focus": {"cell_id": "A1", "name": "load", "descendants": ["B2"]}}
    inspect = _tool(0, "inspect_graph", {"cell": "load"}, artifact=graph)
    unacked = _tool(1, "delete_cell", {"cell": "load"}, status="error")
    acked = _tool(2, "delete_cell", {"cell": "load", "acknowledge_descendants": ["B2"]})
    unchecked = _tool(3, "delete_cell", {"cell": "B2"}, status="error")
    report = audit([inspect, unacked, acked, unchecked])
    assert [v.rule for v in report.violations] == ["acknowledge_descendants", "descendant_check"]
    assert report.deletes == 1
    assert report.deletes_with_check == 1
    assert report.executed == 0


def test_audit_flags_scratchpad_use_of_the_private_editing_api() -> None:
    """Without runtime evidence (a run without the fence) the guard's text rule decides."""
    code = "import marimo._code_mode as cm"
    report = audit([_tool(0, "execute_code", {"code": code})])
    assert report.violations[0].rule == "bypass"
    assert report.executed == 1
    refused = audit([_tool(0, "execute_code", {"code": code}, status="error")])
    assert refused.violations[0].rule == "bypass" and refused.executed == 0


def _ran(refusals: list[str] | None = None, **versions: str | None) -> dict[str, Any]:
    """An execute_code artifact with the kernel's evidence."""
    found: dict[str, Any] = {
        "version_before": "v1",
        "version_after": "v1",
        "server_before": "s1",
        "server_after": "s1",
        "file_before": "f1",
        "file_after": "f1",
    }
    found.update(versions)
    return {"success": True, "stdout": "", "evidence": {"refusals": refusals or [], **found}}


def test_the_audit_judges_execute_code_by_its_runtime_evidence() -> None:
    """What happened decides, whatever the code's text looks like."""
    disguised = "m = __import__('marimo.' + '_code' + '_mode')"
    benign = "settings = {'code_mode': 1}"
    report = audit(
        [
            _tool(0, "execute_code", {"code": disguised}, artifact=_ran(["code mode.x"])),
            _tool(1, "execute_code", {"code": benign}, artifact=_ran()),
            _tool(2, "execute_code", {"code": "x"}, artifact=_ran(version_after="v2")),
            _tool(3, "execute_code", {"code": "y"}, artifact=_ran(server_after="v2")),
            _tool(4, "execute_code", {"code": "z"}, artifact=_ran(["a"], server_after=None)),
            _tool(5, "execute_code", {"code": "w"}, artifact=_ran(file_after="f2")),
            # A forged kernel report (before == after) hides nothing the client read.
            _tool(
                6,
                "execute_code",
                {"code": "v"},
                artifact=_ran(version_before=None, server_after="s2"),
            ),
        ]
    )
    found = [(v.seq, v.rule, v.executed) for v in report.violations]
    assert found == [
        (0, "fence_refusal", False),
        (2, "change_outside_tools", True),
        (3, "change_outside_tools", True),
        (4, "fence_refusal", False),
        (5, "change_outside_tools", True),
        (6, "change_outside_tools", True),
    ]
    assert "code mode.x" in report.violations[0].detail
    assert "kernel" in report.violations[1].detail
    assert "server" in report.violations[2].detail
    assert "file" in report.violations[4].detail
    assert (report.attempted, report.executed) == (6, 4)


def test_the_evidence_survives_a_cut_artifact() -> None:
    recorder = Recorder()
    call = {"name": "execute_code", "args": {"code": "print('x' * 50_000)"}, "id": "c1"}
    big = {**_ran(version_after="v2"), "stdout": "x" * 50_000}
    recorder.add_messages(
        [
            AIMessage(content="", tool_calls=[call]),
            ToolMessage(content="...", tool_call_id="c1", name="execute_code", artifact=big),
        ]
    )
    event = recorder.events[-1]
    assert event.artifact["cut"] is True
    assert audit(recorder.events).violations[0].rule == "change_outside_tools"


def test_apply_changes_ops_are_audited_one_by_one() -> None:
    batch = {"changes": [{"op": "edit", "cell": "a", "code": "1"}, {"op": "delete", "cell": "b"}]}
    report = audit([_tool(0, "apply_changes", batch, status="error")])
    assert sorted(v.rule for v in report.violations) == ["descendant_check", "read_before_edit"]


def test_recorder_and_agentevals_export() -> None:
    recorder = Recorder()
    recorder.add_messages([HumanMessage(content="fix it")])
    call = {"name": "read_cell", "args": {"cell": "a"}, "id": "c1"}
    recorder.add_messages(
        [
            AIMessage(content="", tool_calls=[call]),
            ToolMessage(content="x = 1", tool_call_id="c1", name="read_cell", artifact={"id": "a"}),
        ]
    )
    recorder.note("inject", "a person edited a", cell="a")
    recorder.add_messages([AIMessage(content="done")])
    events = recorder.events
    assert [e.kind for e in events] == ["user", "model", "tool", "inject", "model"]
    assert events[2].args == {"cell": "a"}
    messages = to_agentevals(events)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "system", "assistant"]
    function = messages[1]["tool_calls"][0]["function"]
    assert function["name"] == "read_cell"
    assert json.loads(function["arguments"]) == {"cell": "a"}


# --------------------------------------------------------------------------- graders


def _cell(cid: str, name: str, code: str, defs: list[str], refs: list[str]) -> CellInfo:
    return CellInfo(id=cid, name=name, code=code, defs=defs, refs=refs)


BEFORE = [
    _cell("A", "load", "x = 1", ["x"], []),
    _cell("B", "_", "y = x + 1", ["y"], ["x"]),
]


def _evidence(after_cells: list[CellInfo], **kw: Any) -> g.Evidence:
    run = CleanRun(ok=True, cells=after_cells, values=kw.pop("values", {}))
    return g.Evidence(before=BEFORE, after=run, **kw)


def test_structure_graders() -> None:
    same = _evidence(list(BEFORE))
    assert g.NotebookUnchanged().grade(same).passed
    assert g.Unchanged("load").grade(same).passed
    assert g.DependsOn("y", "load").grade(same).passed
    assert g.Order("load", "y").grade(same).passed
    assert g.DefinedOnce("x").grade(same).passed
    assert not g.Absent("x").grade(same).passed
    edited = _evidence([_cell("A", "load", "x = 2", ["x"], []), BEFORE[1]])
    assert not g.Unchanged("load").grade(edited).passed
    assert (
        g.Unchanged("load")
        .grade(
            _evidence(
                [_cell("A", "load", "x = 2", ["x"], []), BEFORE[1]], injected={"load": "x = 2"}
            )
        )
        .passed
    )
    assert g.NotebookUnchanged().grade(edited).score < 1


def test_imports_in_setup_cell() -> None:
    good = _evidence([_cell("S", "_", "import json\nimport math", ["json", "math"], []), *BEFORE])
    assert g.ImportsInSetupCell("json", "math").grade(good).passed
    scattered = _evidence(
        [
            _cell("S", "_", "import json", ["json"], []),
            _cell("T", "_", "import math\nz = 1", ["math", "z"], []),
        ]
    )
    result = g.ImportsInSetupCell("json", "math").grade(scattered)
    assert not result.passed
    assert "different cells" in result.detail


def test_process_graders_read_the_trajectory() -> None:
    events = [
        Event(seq=0, kind="tool", tool="inspect_graph", args={"cell": "load"}, status="success"),
        Event(seq=1, kind="model", text="`load` feeds `summary`: delete it anyway?"),
    ]
    evidence = _evidence(list(BEFORE), events=events)
    assert g.UsedTool("inspect_graph").grade(evidence).passed
    assert g.AvoidedTool("delete_cell").grade(evidence).passed
    assert g.AskedBeforeActing(mentions=("summary",)).grade(evidence).passed
    assert not g.AskedBeforeActing(mentions=("other",)).grade(evidence).passed
    refused = Event(
        seq=2, kind="tool", tool="delete_cell", args={"cell": "zz"}, status="error", text="no"
    )
    tried = _evidence(list(BEFORE), events=[*events, refused])
    assert g.NoExecutedViolations().grade(tried).passed
    assert not g.NoExecutedViolations(strict=True).grade(tried).passed


def test_equals_uses_live_values_when_asked() -> None:
    evidence = _evidence(
        list(BEFORE),
        values={"result": {"kind": "scalar", "value": 20}},
        live={"result": {"kind": "scalar", "value": 70}},
    )
    assert not g.Equals("result", 70).grade(evidence).passed
    assert g.Equals("result", 70, live=True).grade(evidence).passed
    assert g.Equals("result", 70, live=True).kind == "live"


def test_a_broken_notebook_fails_every_outcome_grader() -> None:
    broken = g.Evidence(before=BEFORE, after=CleanRun(ok=False, structural_error="cycle"))
    for grader in (g.RunsClean(), g.Equals("x", 1), g.FigureProduced("fig")):
        result = grader.grade(broken)
        assert not result.passed
        assert "cycle" in result.detail


# --------------------------------------------------------------------------- tasks and agents


def test_the_suite_has_enough_varied_and_attributed_tasks() -> None:
    tasks = load_tasks(TASKS)
    assert len(tasks) >= 24
    tags = {tag for task in tasks for tag in task.spec.tags}
    assert {"fix", "analysis", "refactor", "delete", "ui", "plot", "concurrency", "recover"} <= tags
    for task in tasks:
        assert task.instruction.strip()
        assert task.spec.graders
        assert task.spec.oracle
        assert task.spec.licence
        assert task.notebook_path.is_file()
    ports = [t for t in tasks if "port" in t.spec.tags]
    assert ports
    assert all("DSEval" in t.spec.licence for t in ports)


def test_unknown_task_names_are_reported() -> None:
    with pytest.raises(ConfigurationError, match="Unknown task"):
        load_tasks(TASKS, names=["no_such_task"])


def test_agent_specs(tmp_path: Path) -> None:
    task = load_tasks(TASKS, names=["fix_name_error"])[0]
    for name in ("oracle", "null", "adversarial"):
        assert isinstance(resolve_agent(name).factory(task), ScriptedChatModel)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"fix_name_error": ["nothing to do"]}), encoding="utf-8")
    assert resolve_agent(f"scripted:{script}").factory(task).invoke("hi").content == "nothing to do"
    factory = resolve_agent("tests.test_eval_units:make_model")
    assert factory.factory(task).invoke("x").content == "made"
    with pytest.raises(ConfigurationError):
        resolve_agent("no-such-provider-xyz:model")


def make_model() -> ScriptedChatModel:
    """A module:factory agent spec target for `test_agent_specs`."""
    return ScriptedChatModel(["made"])


def test_a_provider_that_cannot_build_its_model_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat_models = pytest.importorskip("langchain.chat_models")

    class ProviderError(Exception):
        """Like openai.OpenAIError: not a ValueError."""

    def init_chat_model(model: str, *, model_provider: str) -> Any:
        raise ProviderError("The api_key client option must be set")

    # A fake stands in for a provider package we do not install; the key is set so
    # that the check before building passes and the provider's own error is reached.
    monkeypatch.setattr(chat_models, "init_chat_model", init_chat_model)
    monkeypatch.setenv("OPENAI_API_KEY", "not-a-real-key")
    with pytest.raises(ConfigurationError, match="api_key client option") as caught:
        resolve_agent("openai:some-model")
    assert "ProviderError" in str(caught.value)
    assert "API key" in str(caught.value)
    # The eval CLI reports it in one line (no traceback) and exits 1.
    argv = ["--model", "openai:some-model", "--task", "fix_name_error"]
    argv += ["--tasks", str(TASKS), "--out", str(tmp_path / "out"), "--no-progress"]
    assert eval_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("marimo-pair eval: Model spec openai:some-model: the provider")
    assert err.count("\n") == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- runner


def _bare_run(tmp_path: Path, limits: Limits) -> _Run:
    task = load_tasks(TASKS, names=["fix_name_error"])[0]
    task = dataclasses.replace(task, spec=dataclasses.replace(task.spec, limits=limits))
    agent = AgentSpec(label="script", factory=lambda task: ScriptedChatModel(["unused"]))
    return _Run(task, agent, RunConfig(out_dir=tmp_path), None, _Stopper())


def _no_person() -> _Injector:
    return _Injector(notebook=cast("Any", None), pending=[], ids={})


def test_the_step_budget_stop_is_a_limit_not_a_model_turn(tmp_path: Path) -> None:
    """The real pair agent, without a server: the guard refuses every edit (never read)."""
    run = _bare_run(tmp_path, Limits(steps=2))
    unread_edit = o.call("edit_cell", cell="x", code="y = 1")
    model = ScriptedChatModel([unread_edit] * 5 + ["done"])
    graph = create_pair_agent(model, MarimoPairToolkit.from_clients(None), max_steps=2)
    _stream_agent(run, graph, _no_person())
    assert run.limit_hit == "steps"
    result = _task_result(run, [g.GradeResult(grader="x", kind="outcome", score=1.0, passed=True)])
    assert result.steps == 2  # the two model turns; the budget stop is not one
    assert result.status == "limit"
    assert not result.passed
    kinds = [e.kind for e in run.recorder.events]
    assert kinds == ["user", "model", "tool", "model", "tool", "note"]
    assert "step budget" in run.recorder.events[-1].text


def test_a_run_writes_its_outputs_fresh(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = _result("oracle", True, task="old_task")
    for kind, name in (("notebooks", "old_task.py"), ("snapshots", "old_task.json")):
        (out / kind / "oracle").mkdir(parents=True)
        (out / kind / "oracle" / name).write_text("old", encoding="utf-8")
    (out / "notebooks" / "oracle" / "mine.txt").write_text("keep", encoding="utf-8")
    (out / "results.jsonl").write_text(stale.model_dump_json() + "\n{cut", encoding="utf-8")
    for name in ("trajectories.jsonl", "agentevals.jsonl", "summary.md"):
        (out / name).write_text("old run\n", encoding="utf-8")
    (out / "notes.md").write_text("not ours", encoding="utf-8")

    suite = run_suite([], ["null"], RunConfig(out_dir=out, progress=False))
    assert suite.results == []
    assert (out / "results.jsonl").read_text(encoding="utf-8") == ""
    assert (out / "trajectories.jsonl").read_text(encoding="utf-8") == ""
    assert (out / "agentevals.jsonl").read_text(encoding="utf-8") == ""
    assert "old run" not in (out / "summary.md").read_text(encoding="utf-8")
    # What the earlier run saved is gone; files it did not write are kept.
    assert not (out / "notebooks" / "oracle" / "old_task.py").exists()
    assert not (out / "snapshots").exists()
    assert (out / "notebooks" / "oracle" / "mine.txt").is_file()
    assert (out / "notes.md").is_file()


# --------------------------------------------------------------------------- report and CLI


def _result(agent: str, passed: bool, **kw: Any) -> TaskResult:
    return TaskResult(
        task=kw.pop("task", "t"),
        agent=agent,
        status="passed" if passed else "failed",
        passed=passed,
        score=1.0 if passed else 0.5,
        timings=Timings(server_start=1.0, attach=0.5, server_stop=0.4, total=3.0),
        seconds=3.0,
        **kw,
    )


def test_aggregate_and_summary() -> None:
    results = [
        _result("oracle", True, task="a", tokens={"input_tokens": 10, "output_tokens": 2}),
        _result("oracle", True, task="b"),
        _result(
            "adversarial", False, violations_attempted=5, guard_refusals=5, notebook_unchanged=True
        ),
    ]
    oracle, adversary = aggregate(results)
    assert oracle.pass_rate == 1.0
    assert oracle.input_tokens == 10
    assert oracle.server_overhead_median == pytest.approx(1.9)
    assert adversary.violations_attempted == 5
    assert adversary.violations_executed == 0
    assert adversary.unchanged == 1
    text = render_summary(results, seconds=12.0, workers=2)
    assert "| oracle | 2 | 100.0% (2)" in text
    assert "Why runs did not pass" in text


def test_the_summary_reports_attempted_and_executed_by_rule() -> None:
    violations = [
        {"seq": 1, "tool": "execute_code", "rule": "fence_refusal", "executed": False},
        {"seq": 2, "tool": "execute_code", "rule": "fence_refusal", "executed": False},
        {"seq": 3, "tool": "execute_code", "rule": "change_outside_tools", "executed": True},
    ]
    results = [
        _result("adversarial", False, violations_attempted=3, violations=violations),
        _result("oracle", True),
    ]
    adversary, oracle = aggregate(results)
    assert adversary.violations_by_rule == {
        "change_outside_tools": (1, 1),
        "fence_refusal": (2, 0),
    }
    assert oracle.violations_by_rule == {}
    text = render_summary(results)
    assert "| adversarial | fence_refusal | 2 | 0 |" in text
    assert "| adversarial | change_outside_tools | 1 | 1 |" in text


def test_cli_registers_the_eval_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="marimo-pair")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["eval", "--model", "oracle", "--model", "null", "--workers", "2"])
    assert args.models == ["oracle", "null"]
    assert args.workers == 2
    assert callable(args.func)
