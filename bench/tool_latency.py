"""Latency of every toolkit tool vs a bare `client.execute` of the same kernel program.

Three parts, all against real `marimo edit --headless` servers in one run:

1. Per tool: median of ``tool.invoke(ToolCall)`` vs ``client.execute(program)``,
   where ``program`` comes from the builder the notebook itself uses
   (``notebook._*_call(...).request.source()``: the short call into the kernel
   package); the two are interleaved call by call. Each row also shows the tool's
   median against a bare execute of ``None`` (the floor) and the request size.
   Each tool call also counts the ``client.execute`` calls and the HTTP requests
   it made (goal: one execute per tool call). Change tools run twice: with the
   toolkit's default ``verify=False`` (the apply program checks each change in the
   same execute) and with ``verify=True`` (a second execute re-reads the server's
   document). The pairing policy is on (the toolkit default). Every call
   does real work: delete_cell gets a fresh cell (created and inspected untimed),
   each create_cell's cell is deleted afterwards (untimed), edits write new code,
   moves alternate sides; so the notebook never grows.
2. ``apply_changes`` with 1 vs 50 creates.
3. ``read_notebook`` and ``inspect_graph`` on 10/100/1000-cell notebooks, and the
   width of read_notebook's per-cell lines.

Skipped: install_packages (network), interrupt_kernel (would interrupt the kernel).
The toolkit runs with ``presence=False``; what presence adds is ``bench/presence.py``.

Usage: python bench/tool_latency.py [--repeat N] [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_seconds, write_notebook

from marimo_pair_tools import MarimoServer
from marimo_pair_tools import _kernel_calls as kernel_calls
from marimo_pair_tools import notebook as nbmod
from marimo_pair_tools.client import MarimoClient
from marimo_pair_tools.models import CellsPage, CellSummary, CreateCell, DeleteCell
from marimo_pair_tools.toolkit import MarimoPairToolkit

SKIPPED = {
    "install_packages": "network (package index)",
    "interrupt_kernel": "interrupts the kernel; not a request/response tool",
}

SMALL_CELLS = [
    "import marimo as mo",
    "slider = mo.ui.slider(0, 100, value=1)",
    "doubled = slider.value * 2",
    "base = 1",
    "derived = base + 1",
    "edit_target = 0",
    "edit_target_bare = 0",
    "apply_target = 0",
    "apply_target_bare = 0",
    "run_target = 1",
    "move_a = 1",
    "move_b = 2",
    "move_c = 3",
    "move_d = 4",
    "import math\nvalues = [math.sqrt(i) for i in range(100)]",
]


# ----------------------------------------------------------------------------- counting


@dataclass
class Counter:
    """Counts `client.execute` calls (and the time inside them) and HTTP requests."""

    executes: int = 0
    execute_seconds: float = 0.0
    requests: int = 0
    programs: list[str] = field(default_factory=list)

    def install(self, client: MarimoClient) -> None:
        original = client.execute

        def execute(code: str, **kwargs: Any) -> Any:
            self.executes += 1
            self.programs.append(code)
            start = time.perf_counter()
            try:
                return original(code, **kwargs)
            finally:
                self.execute_seconds += time.perf_counter() - start

        client.execute = execute  # type: ignore[method-assign]
        client._http.event_hooks["request"].append(self._on_request)

    def _on_request(self, request: Any) -> None:
        self.requests += 1

    def state(self) -> tuple[int, float, int, int]:
        return self.executes, self.execute_seconds, self.requests, len(self.programs)


@dataclass
class Sample:
    seconds: float
    executes: int
    in_execute: float
    requests: int
    programs: list[str]


def timed(counter: Counter, fn: Callable[[], Any]) -> tuple[Sample, Any]:
    executes, in_exec, requests, n_programs = counter.state()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    sample = Sample(
        seconds,
        counter.executes - executes,
        counter.execute_seconds - in_exec,
        counter.requests - requests,
        counter.programs[n_programs:],
    )
    return sample, out


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ----------------------------------------------------------------------------- harness


class Bench:
    """One server, one attached headless session, one toolkit sharing one client."""

    def __init__(self, server: MarimoServer, path: Path) -> None:
        self.path = str(path)
        self.client = server.client()
        self.client.attach()
        self.counter = Counter()
        self.counter.install(self.client)
        # Presence (one more request per call) is measured on its own: bench/presence.py.
        self.toolkit = MarimoPairToolkit.from_clients(
            self.client, notebook=self.path, presence=False
        )
        self.tools = {tool.name: tool for tool in self.toolkit.get_tools()}
        notebook = self.toolkit.session.notebook
        assert notebook is not None
        self.nb = notebook
        # Setup/teardown goes through a separate, unverified notebook on the same client.
        self.helper = nbmod.Notebook(self.client, self.path, verify=False)

    def invoke(self, name: str, args: dict[str, Any]) -> Any:
        message = self.tools[name].invoke(
            {"type": "tool_call", "id": "bench", "name": name, "args": args}
        )
        if getattr(message, "status", "success") == "error":
            raise RuntimeError(f"{name}({args}) failed: {message.content}")
        return message

    def bare(self, program: str, **kwargs: Any) -> Any:
        return self.client.execute(program, notebook=self.path, **kwargs)

    def ids(self) -> dict[str, str]:
        """Each name a cell defines -> that cell's id (first cells first)."""
        found: dict[str, str] = {}
        for cell in self.helper.cells().cells:
            for name in cell.defs or [f"#{len(found)}"]:
                found.setdefault(name, cell.id)
        return found

    def create(self, code: str) -> str:
        result = self.helper.apply([CreateCell(code=code, run=False)])
        cell_id = result.changes[0].cell_id
        assert cell_id is not None
        return cell_id

    def delete(self, *cell_ids: str) -> None:
        if cell_ids:
            self.helper.apply([DeleteCell(cell=c) for c in cell_ids])

    def close(self) -> None:
        self.client.close()


def parsed(result: Any) -> Any:
    """Check a bare execute's answer (outside the timing)."""
    return kernel_calls.parse_result(result.stdout, result.stderr)


@dataclass
class Case:
    """One row: ``tool(i)`` and ``bare(i)`` each do untimed setup and return a timed Sample."""

    label: str
    tool: Callable[[int], Sample]
    bare: Callable[[int], Sample] | None
    note: str = ""
    program: str | None = None
    """The program the tool should send (checked against what it did send)."""


@dataclass
class Row:
    label: str
    tool: list[Sample]
    bare: list[float]
    note: str
    same_program: bool | None


def run_case(case: Case, repeat: int, warmup: int) -> Row:
    tool: list[Sample] = []
    bare: list[float] = []
    for i in range(warmup + repeat):
        # Alternate who goes first: work a call leaves behind (a save) must not bias one side.
        if i % 2 or case.bare is None:
            t = case.tool(i)
            b = case.bare(i) if case.bare else None
        else:
            b = case.bare(i)
            t = case.tool(i)
        if i >= warmup:
            tool.append(t)
            if b is not None:
                bare.append(b.seconds)
    same = None if case.program is None else all(s.programs == [case.program] for s in tool)
    return Row(case.label, tool, bare, case.note, same)


# ----------------------------------------------------------------------------- part 1


def tool_cases(b: Bench, verify_modes: tuple[bool, ...]) -> list[Case]:
    cid = b.ids()
    c = b.counter
    limit = b.toolkit.session.limits.cells_page
    cases: list[Case] = []

    def read_only(label: str, name: str, args: dict[str, Any], program: str, **kw: Any) -> None:
        def tool(i: int) -> Sample:
            return timed(c, lambda: b.invoke(name, args))[0]

        def bare(i: int) -> Sample:
            sample, result = timed(c, lambda: b.bare(program, **kw))
            if name != "execute_code":
                parsed(result)
            return sample

        cases.append(Case(label, tool, bare, program=program))

    read_only("read_notebook", "read_notebook", {}, nbmod._cells_call(0, limit).request.source())
    read_only(
        "read_cell",
        "read_cell",
        {"cell": cid["values"]},
        nbmod._read_call(cid["values"], 2_000_000).request.source(),
    )
    read_only(
        "inspect_graph(cell)",
        "inspect_graph",
        {"cell": cid["base"]},
        nbmod._graph_call(cid["base"]).request.source(),
    )
    read_only("inspect_graph()", "inspect_graph", {}, nbmod._graph_call(None).request.source())
    read_only(
        "execute_code",
        "execute_code",
        {"code": "sum(range(1000))"},
        "sum(range(1000))",
        timeout=30.0,
    )
    read_only("get_errors", "get_errors", {}, nbmod._errors_call().request.source())
    read_only(
        "get_variables", "get_variables", {}, nbmod._variables_call(None, 50, 200).request.source()
    )

    def set_ui_tool(i: int) -> Sample:
        return timed(c, lambda: b.invoke("set_ui_value", {"name": "slider", "value": 2 * i % 100}))[
            0
        ]

    def set_ui_bare(i: int) -> Sample:
        program = nbmod._set_ui_call("slider", (2 * i + 1) % 100).request.source()
        sample, result = timed(c, lambda: b.bare(program))
        parsed(result)
        return sample

    cases.append(Case("set_ui_value", set_ui_tool, set_ui_bare))

    # Change tools: the ledger must have read the cells the guarded tools edit.
    b.invoke("read_cell", {"cell": cid["edit_target"]})
    tool_hash = {
        "apply_target": b.invoke("read_cell", {"cell": cid["apply_target"]}).artifact["code_hash"]
    }
    bare_hash = {
        "edit_target_bare": b.helper.read_cell(cid["edit_target_bare"]).code_hash,
        "apply_target_bare": b.helper.read_cell(cid["apply_target_bare"]).code_hash,
    }
    counter = iter(range(1, 10**9))

    def apply_bare(changes: list[Any]) -> tuple[Sample, Any]:
        program = nbmod._apply_call(changes, None).request.source()
        sample, result = timed(c, lambda: b.bare(program))
        return sample, parsed(result)

    for verify in verify_modes:
        suffix = " verify=True" if verify else ""

        def with_verify(
            fn: Callable[[int], Sample], verify: bool = verify
        ) -> Callable[[int], Sample]:
            def wrapped(i: int) -> Sample:
                b.nb.verify = verify
                try:
                    return fn(i)
                finally:
                    b.nb.verify = False  # the toolkit's default

            return wrapped

        def create_tool(i: int) -> Sample:
            sample, msg = timed(
                c, lambda: b.invoke("create_cell", {"code": f"_k = {next(counter)}"})
            )
            b.delete(msg.artifact["changes"][0]["cell_id"])
            return sample

        def create_bare(i: int) -> Sample:
            sample, result = apply_bare([CreateCell(code=f"_k = {next(counter)}")])
            b.delete(result["changes"][0]["cell_id"])
            return sample

        def edit_tool(i: int) -> Sample:
            args = {"cell": cid["edit_target"], "code": f"edit_target = {next(counter)}"}
            return timed(c, lambda: b.invoke("edit_cell", args))[0]

        def edit_bare(i: int) -> Sample:
            change = {
                "op": "edit",
                "cell": cid["edit_target_bare"],
                "code": f"edit_target_bare = {next(counter)}",
                "expected_hash": bare_hash["edit_target_bare"],
            }
            sample, result = apply_bare([change])
            bare_hash["edit_target_bare"] = result["changes"][0]["code_hash"]
            return sample

        def delete_tool(i: int) -> Sample:
            target = b.create(f"_d = {next(counter)}")
            b.invoke("inspect_graph", {"cell": target})  # the policy's descendant check
            return timed(c, lambda: b.invoke("delete_cell", {"cell": target}))[0]

        def delete_bare(i: int) -> Sample:
            target = b.create(f"_d = {next(counter)}")
            return apply_bare([DeleteCell(cell=target)])[0]

        def move_tool(i: int) -> Sample:
            where = "after" if i % 2 == 0 else "before"
            args = {"cell": cid["move_a"], where: cid["move_b"]}
            return timed(c, lambda: b.invoke("move_cell", args))[0]

        def move_bare(i: int) -> Sample:
            where = "after" if i % 2 == 0 else "before"
            return apply_bare([{"op": "move", "cell": cid["move_c"], where: cid["move_d"]}])[0]

        def run_tool(i: int) -> Sample:
            return timed(c, lambda: b.invoke("run_cell", {"cell": cid["run_target"]}))[0]

        def run_bare(i: int) -> Sample:
            return apply_bare([{"op": "run", "cell": cid["run_target"]}])[0]

        def apply_tool(i: int) -> Sample:
            changes = [
                {
                    "op": "edit",
                    "cell": cid["apply_target"],
                    "code": f"apply_target = {next(counter)}",
                    "expected_hash": tool_hash["apply_target"],  # the schema requires it
                },
                {"op": "run", "cell": cid["run_target"]},
            ]
            sample, msg = timed(c, lambda: b.invoke("apply_changes", {"changes": changes}))
            tool_hash["apply_target"] = msg.artifact["changes"][0]["code_hash"]
            return sample

        def apply_changes_bare(i: int) -> Sample:
            changes = [
                {
                    "op": "edit",
                    "cell": cid["apply_target_bare"],
                    "code": f"apply_target_bare = {next(counter)}",
                    "expected_hash": bare_hash["apply_target_bare"],
                },
                {"op": "run", "cell": cid["run_target"]},
            ]
            sample, result = apply_bare(changes)
            bare_hash["apply_target_bare"] = result["changes"][0]["code_hash"]
            return sample

        for label, tool, bare in [
            ("create_cell", create_tool, create_bare),
            ("edit_cell", edit_tool, edit_bare),
            ("delete_cell", delete_tool, delete_bare),
            ("move_cell", move_tool, move_bare),
            ("run_cell", run_tool, run_bare),
            ("apply_changes(edit+run)", apply_tool, apply_changes_bare),
        ]:
            cases.append(Case(label + suffix, with_verify(tool), bare))

    def list_tool(i: int) -> Sample:
        return timed(c, lambda: b.invoke("list_notebooks", {}))[0]

    def list_bare(i: int) -> Sample:
        return timed(c, b.client.sessions)[0]

    cases.append(
        Case("list_notebooks", list_tool, list_bare, "no execute; bare = client.sessions()")
    )
    return cases


def part1(tmp: Path, repeat: int) -> tuple[list[Row], float, Bench, MarimoServer]:
    path = write_notebook(tmp / "tools.py", SMALL_CELLS)
    server = MarimoServer(path).start()
    b = Bench(server, path)
    # Make sure every cell has run once (the slider must exist for set_ui_value).
    b.helper.apply([{"op": "run", "cell": i} for i in dict.fromkeys(b.ids().values())])
    floor = median_seconds(lambda: b.bare("None"), repeat, warmup=2)
    rows = [run_case(case, repeat, warmup=1) for case in tool_cases(b, (False, True))]
    return rows, floor, b, server


def print_part1(rows: list[Row], floor: float) -> None:
    print(
        f"\n== 1. tool.invoke vs bare client.execute of the same program (floor: "
        f"execute('None') {floor * 1000:.1f} ms)"
    )
    head = (
        f"{'tool':34} {'tool ms':>8} {'bare ms':>8} {'ratio':>6} {'/None':>6} {'bytes':>6} {'exec/call':>9} "
        f"{'http/call':>9} {'in-exec ms':>10} {'py ms':>6} {'py/bare':>7}  notes"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        t = med([s.seconds for s in row.tool])
        b = med(row.bare)
        ex = sorted({s.executes for s in row.tool})
        http = sorted({s.requests for s in row.tool})
        in_exec = med([s.in_execute for s in row.tool])
        py = med([s.seconds - s.in_execute for s in row.tool])
        ratio = t / b if row.bare else float("nan")
        sent = max((len(p.encode()) for s in row.tool for p in s.programs), default=0)
        flags = []
        if row.bare and ratio > 1.15 and row.label != "list_notebooks":
            flags.append("ratio>1.15")
        if ex != [1] and row.label != "list_notebooks":
            flags.append("executes!=1")
        if sent > 2048:
            flags.append("request>2KB")
        if row.same_program is False:
            flags.append("program differs from builder's")
        elif row.same_program:
            flags.append("same program")
        if row.note:
            flags.append(row.note)
        print(
            f"{row.label:34} {t * 1000:8.1f} {b * 1000:8.1f} {ratio:5.2f}x {t / floor:5.2f}x {sent:6} "
            f"{'/'.join(map(str, ex)):>9} {'/'.join(map(str, http)):>9} {in_exec * 1000:10.1f} "
            f"{py * 1000:6.1f} {py / b if row.bare and 0 not in ex else math.nan:7.1%}  {'; '.join(flags)}"
        )
    for name, why in SKIPPED.items():
        print(f"{name:34} {'skipped':>8}  ({why})")
    print(
        "/None = tool time against the floor (a bare execute of 'None', same run); bytes = "
        "the largest\nexecute request body's code a call sent (its arguments included).\n"
        "exec/call = client.execute calls per tool call; http/call = HTTP requests per tool "
        "call\n(each execute is GET /api/kernel/status + POST /api/kernel/execute); in-exec = "
        "time inside client.execute;\npy = tool time outside it (validation, policy, shaping, "
        "rendering); py/bare = that\nlayer's cost against the bare execute (steadier "
        "than ratio: executes vary +-20% call to call\non 2 cores). Goals: ratio <= 1.15x, "
        "exec/call = 1."
    )


# ----------------------------------------------------------------------------- part 2


def part2(b: Bench, repeat: int) -> None:
    print("\n== 2. apply_changes: 1 vs 50 creates")
    head = (
        f"{'config':22} {'n':>3} {'median ms':>9} {'ratio':>6} {'exec':>4} {'in-exec':>7} "
        f"{'check':>6} {'apply':>6} {'disk':>6} {'report':>6} {'rest':>6} {'py':>5}"
    )
    print(head)
    print("-" * len(head))
    counter = iter(range(10**9))
    for verify, run in ((True, True), (False, True), (False, False)):
        base = math.nan
        for n in (1, 50):
            samples: list[Sample] = []
            kernel: dict[str, list[float]] = {
                "check_ms": [],
                "apply_ms": [],
                "disk_ms": [],
                "report_ms": [],
            }
            for i in range(2 + repeat):
                changes = [
                    {"op": "create", "code": f"_p = {next(counter)}", "run": run} for _ in range(n)
                ]
                b.nb.verify = verify
                try:
                    sample, msg = timed(
                        b.counter, partial(b.invoke, "apply_changes", {"changes": changes})
                    )
                finally:
                    b.nb.verify = False  # the toolkit's default
                b.delete(*[ch["cell_id"] for ch in msg.artifact["changes"]])
                if i >= 2:
                    samples.append(sample)
                    for key, values in kernel.items():
                        values.append(float((msg.artifact.get("timings") or {}).get(key, math.nan)))
            t = med([s.seconds for s in samples])
            in_exec = med([s.in_execute for s in samples])
            k = {key: med(values) / 1000 for key, values in kernel.items()}
            if n == 1:
                base = t
            ratio = t / base
            print(
                f"{f'verify={verify} run={run}':22} {n:3} {t * 1000:9.1f} {ratio:5.2f}x "
                f"{'/'.join(map(str, sorted({s.executes for s in samples}))):>4} "
                f"{in_exec * 1000:7.1f} {k['check_ms'] * 1000:6.1f} {k['apply_ms'] * 1000:6.1f} "
                f"{k['disk_ms'] * 1000:6.1f} "
                f"{k['report_ms'] * 1000:6.1f} {(in_exec - sum(k.values())) * 1000:6.1f} "
                f"{(t - in_exec) * 1000:5.1f}" + ("  (goal <= 1.5x missed)" if ratio > 1.5 else "")
            )
    print(
        "disk = reading the notebook file back and comparing it with the change (done means "
        "on disk).\n"
        "check/apply/report = the apply program's own timings in the kernel (apply = marimo "
        "applying the batch\nand running the cells); rest = in-exec minus those (marimo's "
        "per-execute work, transport, and the\nverify execute when verify=True)."
    )


# ----------------------------------------------------------------------------- part 3

_KERNEL_TAG = "<<bench:kernel-time>>"


def kernel_split(b: Bench, program: str, repeat: int = 3) -> tuple[float, float, float]:
    """Where one execute of ``program`` spends its time, in seconds (medians).

    ``pre``: from calling ``client.execute`` to the program's first line in the kernel
    (status GET, HTTP, marimo snapshotting the notebook and queueing the command);
    ``kernel``: the program itself; ``post``: from its last line to the client
    having the whole answer (marimo finishing the run, streaming, ``done``).
    Client and kernel share this machine's clock.
    """
    timed_program = (
        f"import time as _bench_time\n_bench_t = (_bench_time.time(), _bench_time.perf_counter())"
        f"\n{program}\nprint({_KERNEL_TAG!r}, _bench_t[0], "
        "_bench_time.perf_counter() - _bench_t[1])"
    )
    pre, kernel, post = [], [], []
    for _ in range(repeat):
        chunks: list[str] = []

        def collect(channel: str, text: str, chunks: list[str] = chunks) -> None:
            if channel == "stdout":
                chunks.append(text)

        sent = time.time()
        b.client.execute(timed_program, notebook=b.path, timeout=120, on_chunk=collect)
        received = time.time()
        text = "".join(chunks)
        at = text.rfind(_KERNEL_TAG)
        if at < 0:
            continue
        started, took = map(float, text[at + len(_KERNEL_TAG) :].split()[:2])
        pre.append(started - sent)
        kernel.append(took)
        post.append(received - started - took)
    return med(pre), med(kernel), med(post)


def big_cells(n: int) -> list[str]:
    """A notebook of ``n`` cells: a reference chain, fan-in, long names, multi-line cells."""
    cells = ["import math\nv_0 = 1.0"]
    for i in range(1, n):
        p = i // 2
        if i % 10 == 0:
            cells.append(
                f"def transform_{i}(frame, factor=2):\n"
                f'    """Scale and shift every value of the frame."""\n'
                f"    return [x * factor + {i} for x in frame]\n\n"
                f"v_{i} = max(transform_{i}([v_{i - 1}, v_{p}])) % 1000"
            )
        elif i % 10 == 5:
            cells.append(
                f"revenue_by_region_{i}, customer_count_{i}, churn_rate_estimate_{i}, "
                f"seasonal_adjustment_{i}, forecast_horizon_days_{i}, v_{i} = "
                f"v_{i - 1}, v_{p}, 0.1, 1.0, 30, (v_{i - 1} + v_{p}) % 1000"
            )
        else:
            cells.append(f"v_{i} = (math.sqrt(abs(v_{i - 1})) + v_{p} * 0.5) % 1000  # step {i}")
    return cells


def part3(tmp: Path, sizes: list[int], repeat: int) -> None:
    print("\n== 3. read_notebook / inspect_graph by notebook size")
    head = (
        f"{'cells':>5} {'call':27} {'median ms':>9} {'exec':>4} {'in-exec':>7} {'py':>5} | "
        f"{'pre':>5} {'kernel':>6} {'post':>5} {'chars':>6}  notes"
    )
    print(head)
    print("-" * len(head))
    line_stats: list[str] = []
    for n in sizes:
        path = write_notebook(tmp / f"big_{n}.py", big_cells(n))
        with MarimoServer(path) as server:
            b = Bench(server, path)
            try:
                first = next(iter(b.ids().values()))
                floor = median_seconds(partial(b.bare, "None"), 3, warmup=1)
                split = kernel_split(b, "None", repeat=2)
                print(
                    f"{n:5} {'execute(None) floor':27} {floor * 1000:9.1f} {'':4} {'':7} {'':5} | "
                    + " ".join(f"{x * 1000:{w}.0f}" for x, w in zip(split, (5, 6, 5), strict=True))
                )
                limit = b.toolkit.session.limits.cells_page
                calls: list[tuple[str, str, dict[str, Any], str]] = [
                    (
                        "read_notebook(limit=n)",
                        "read_notebook",
                        {"limit": min(n, 1000)},
                        nbmod._cells_call(0, min(n, 1000)).request.source(),
                    ),
                    (
                        f"read_notebook() [{limit}/page]",
                        "read_notebook",
                        {},
                        nbmod._cells_call(0, limit).request.source(),
                    ),
                    (
                        "inspect_graph()",
                        "inspect_graph",
                        {},
                        nbmod._graph_call(None).request.source(),
                    ),
                    (
                        "inspect_graph(cell=first)",
                        "inspect_graph",
                        {"cell": first},
                        nbmod._graph_call(first).request.source(),
                    ),
                ]
                if n <= limit:  # the default page already holds every cell
                    calls.pop(1)
                reps = repeat if n <= 100 else 3
                for label, name, args, program in calls:
                    samples: list[Sample] = []
                    msg: Any = None
                    for i in range(1 + reps):
                        sample, msg = timed(b.counter, partial(b.invoke, name, args))
                        if i:
                            samples.append(sample)
                    t = med([s.seconds for s in samples])
                    in_exec = med([s.in_execute for s in samples])
                    split = kernel_split(b, program, repeat=1 if n > 100 else 3)
                    ex = sorted({s.executes for s in samples})
                    content = msg.content if isinstance(msg.content, str) else str(msg.content)
                    notes = []
                    if n >= 1000 and t > 1.0:
                        notes.append("goal <= 1 s missed")
                    if "characters of this result cut" in content:
                        notes.append("text cut to max_chars")
                    print(
                        f"{n:5} {label:27} {t * 1000:9.1f} {'/'.join(map(str, ex)):>4} "
                        f"{in_exec * 1000:7.1f} {(t - in_exec) * 1000:5.1f} | "
                        + " ".join(
                            f"{x * 1000:{w}.0f}" for x, w in zip(split, (5, 6, 5), strict=True)
                        )
                        + f" {len(content):6}  {'; '.join(notes)}"
                    )
                    if name == "read_notebook" and "limit" in args:
                        page = CellsPage.model_validate(msg.artifact)
                        widths = [len(CellSummary.render(cell)) for cell in page.cells]
                        over = sum(w > 120 for w in widths)
                        shown = content.count("\n") + 1
                        line_stats.append(
                            f"{n:5} cells: max {max(widths)}, mean {statistics.mean(widths):.1f}, "
                            f"{over} lines > 120"
                            + ("  (goal <= 120 missed)" if over else "")
                            + f"; the text shows {shown} lines for {len(page.cells)} cells"
                        )
            finally:
                b.close()
    print(
        "in-exec = inside client.execute; py = tool time outside it. Right of |, one separate "
        "execute of the same\nprogram, split by timestamps: pre = client call -> program "
        "starts in the kernel (status GET, HTTP,\nmarimo snapshots the notebook and queues "
        "the command); kernel = the program itself; post = program\nends -> client has the "
        "answer (marimo finishes the scratchpad run, streams, sends done)."
    )
    print("read_notebook chars per cell line (CellSummary.render of every listed cell):")
    for stat in line_stats:
        print("  " + stat)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=8, help="timed calls per row")
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows, floor, bench, server = part1(tmp, args.repeat)
        try:
            print_part1(rows, floor)
            print(f"[part 1: {time.perf_counter() - started:.0f} s]")
            mark = time.perf_counter()
            part2(bench, max(3, args.repeat * 2 // 3))
            print(f"[part 2: {time.perf_counter() - mark:.0f} s]")
        finally:
            bench.close()
            server.stop()
        mark = time.perf_counter()
        part3(tmp, [int(s) for s in args.sizes.split(",") if s], args.repeat)
        print(f"[part 3: {time.perf_counter() - mark:.0f} s]")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
