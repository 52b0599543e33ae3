"""`marimo-pair demo`: the pair agent at work on a small notebook, with no LLM needed.

A scripted model plays an agent that reads the notebook, tries an unsafe edit
and an unsafe delete (the guard refuses both), fixes a broken cell properly,
analyses the data, adds cells, deletes a dead cell after checking its
descendants, and verifies the notebook has no errors. Everything else is real:
a marimo server, a headless session, the LangGraph agent and its guard.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from langchain_core.messages import BaseMessage, HumanMessage

from .agent import create_pair_agent
from .console import StepPrinter
from .server import MarimoServer
from .testing import ScriptedChatModel
from .toolkit import MarimoPairToolkit

__all__ = ["DEMO_NOTEBOOK", "DEMO_TASK", "demo_turns", "run_demo"]


def _demo_notebook() -> Path:
    """notebooks/demo.py in a source checkout; the copy packed into the wheel otherwise."""
    here = Path(__file__).resolve().parent
    source = here.parent / "notebooks" / "demo.py"
    return source if source.exists() else here / "_demo_notebook.py"


DEMO_NOTEBOOK = _demo_notebook()
DEMO_TASK = (
    "The average revenue cell is broken. Fix it, add revenue per region with a small "
    "table, and remove dead code. Don't break anything."
)

BY_REGION = """by_region = {}
for _row, _revenue in zip(sales, revenue):
    by_region[_row["region"]] = by_region.get(_row["region"], 0) + _revenue"""

REGION_TABLE = """mo.md(
    "\\n".join(
        ["| region | revenue |", "|---|---:|"]
        + [f"| {_r} | {_v:,.2f} |" for _r, _v in sorted(by_region.items())]
    )
)"""


def _pace(turn: Any, seconds: float) -> Callable[[list[BaseMessage]], Any]:
    def paced(messages: list[BaseMessage]) -> Any:
        time.sleep(seconds)
        return turn

    return paced


def demo_turns(pace: float = 0.0) -> list[Any]:
    """The scripted agent's turns (cells are addressed by their names)."""
    turns: list[Any] = [
        [{"name": "read_notebook", "args": {}}, {"name": "get_errors", "args": {}}],
        # Unsafe: an edit of a cell it has not read. The guard refuses it.
        [
            {
                "name": "edit_cell",
                "args": {"cell": "average_revenue", "old": "revenu)", "new": "revenue)"},
            }
        ],
        [{"name": "read_cell", "args": {"cell": "average_revenue"}}],
        [
            {
                "name": "edit_cell",
                "args": {"cell": "average_revenue", "old": "mean(revenu)", "new": "mean(revenue)"},
            }
        ],
        [
            {
                "name": "execute_code",
                "args": {
                    "code": "totals = {}\nfor row, r in zip(sales, revenue):\n"
                    "    totals[row['region']] = totals.get(row['region'], 0) + r\n"
                    "print(sorted(totals.items(), key=lambda kv: -kv[1]))"
                },
            }
        ],
        [
            {
                "name": "apply_changes",
                "args": {
                    "changes": [
                        {"op": "create", "code": BY_REGION, "after": "revenue_per_sale"},
                        {"op": "create", "code": REGION_TABLE, "after": "summary"},
                    ]
                },
            }
        ],
        # Unsafe: deleting a cell without checking what depends on it. Refused.
        [{"name": "delete_cell", "args": {"cell": "scratch"}}],
        [{"name": "inspect_graph", "args": {"cell": "scratch"}}],
        [{"name": "delete_cell", "args": {"cell": "scratch", "acknowledge_descendants": []}}],
        [{"name": "get_errors", "args": {}}],
        "Fixed the typo in average_revenue (revenu → revenue), added a by_region cell and a "
        "revenue-per-region table, and deleted the unused scratch cell after checking nothing "
        "depends on it. The notebook runs without errors.",
    ]
    return [_pace(t, pace) for t in turns] if pace else turns


def run_demo(
    *,
    workdir: Path | None = None,
    pace: float = 0.0,
    keep_open: bool = False,
    out: TextIO | None = None,
) -> int:
    """Run the demo end to end; returns a process exit code (0: the notebook is valid)."""
    printer = StepPrinter(out)
    say = printer._print
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="marimo-pair-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    notebook = work / "demo.py"
    shutil.copyfile(DEMO_NOTEBOOK, notebook)
    server = MarimoServer(notebook, isolate=True)
    with server:
        toolkit = MarimoPairToolkit.from_server(server, notebook=str(notebook))
        try:
            say(f"marimo server {server.url} on {notebook}")
            say(f"watch it live: {server.url}  (the agent and your tab share one kernel)\n")
            nb = toolkit.session.sync()  # its headless session ran the notebook, as a tab would
            say(f"task: {DEMO_TASK}\n")
            agent = create_pair_agent(ScriptedChatModel(demo_turns(pace)), toolkit)
            state: dict[str, Any] = {}
            for update in agent.stream(
                {"messages": [HumanMessage(DEMO_TASK)]}, stream_mode=["updates", "values"]
            ):
                mode, payload = update
                if mode == "updates":
                    printer.update(payload)
                else:
                    state = payload
            errors = nb.errors()
            ledger = state.get("ledger")
            events = ledger.events if ledger is not None else []
            say("")
            say(
                f"guard: {len(events)} unsafe calls refused "
                f"({', '.join(e.rule for e in events)}), {printer.tool_calls} tool calls ran"
            )
            say(
                f"notebook: {len(nb.cells().cells)} cells, "
                + ("no errors" if errors.clean else errors.render())
            )
            say(f"saved at {notebook}")
            if keep_open:
                say("server stays up; Ctrl-C to stop")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
            return 0 if errors.clean and len(events) == 2 else 1
        finally:
            toolkit.close()
