"""Run a saved notebook top to bottom in a fresh process and report what it defines.

The graders judge the notebook as a person would find it on disk: the `.py`
file marimo saved, run from scratch with no kernel state left over from the
session. A child process (`_clean_child.py`) loads the file, reads every
cell's code and static defs/refs from marimo's own parser, runs the app with
marimo's script runner (what ``app.run()`` uses), and writes one JSON result.

One change from ``app.run()``: a cell that raises does not abort the run; its
descendants are skipped (as the kernel does) and the other branches still run,
so graders can give partial credit.

Two ways to get the fresh process: a new interpreter per run (portable, ~2 s
of imports each), or a `Zygote` that imported marimo/pandas/matplotlib once
and forks a child per run (POSIX; ~0.2 s). Both start each run from an
interpreter that has run no user code.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import MarimoPairError

__all__ = ["CellInfo", "CleanRun", "Zygote", "clean_run", "static_cells"]

_OUTPUT_CHARS = 4000
_CHILD = Path(__file__).resolve().parent / "_clean_child.py"


class CellInfo(BaseModel):
    """One cell of a saved notebook, as marimo parses the file."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    code: str
    defs: list[str] = Field(default_factory=list)
    refs: list[str] = Field(default_factory=list)
    parsable: bool = True


class CleanRun(BaseModel):
    """What a fresh run of the saved notebook produced."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    """The file loaded, had no structural error and no cell raised."""
    cells: list[CellInfo] = Field(default_factory=list)
    load_error: str | None = None
    """The file could not be imported as a marimo app (not a notebook, import crash)."""
    structural_error: str | None = None
    """Cycle, multiply-defined name or syntax error: marimo refuses to run it."""
    errors: dict[str, str] = Field(default_factory=dict)
    """Cell id -> ``ExceptionType: message`` for cells that raised."""
    skipped: list[str] = Field(default_factory=list)
    """Cells that did not run: an ancestor raised, or called ``mo.stop``."""
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Requested variable -> value summary (see `_values`); absent if undefined."""
    exprs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Requested expression -> value summary of its result in the final namespace."""
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Cell id -> summary of the cell's output (its last expression), when it has one."""
    timed_out: bool = False
    seconds: float = 0.0
    stderr_tail: str = ""

    def cell_by_name(self, name: str) -> CellInfo | None:
        """The cell with this function name (``_`` names nothing)."""
        found = [c for c in self.cells if c.name == name and name != "_"]
        return found[0] if found else None

    def cells_defining(self, name: str) -> list[CellInfo]:
        """Every cell that defines ``name``."""
        return [c for c in self.cells if name in c.defs]

    def parents(self, cell: CellInfo) -> list[CellInfo]:
        """The cells that define a name ``cell`` references."""
        return [c for c in self.cells if c.id != cell.id and set(c.defs) & set(cell.refs)]


# --------------------------------------------------------------------------- parent


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"  # no display in a grading child
    env.pop("MARIMO_TOKEN", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep __pycache__ out of task copies
    return env


class Zygote:
    """A pre-imported interpreter that forks one child per clean run (POSIX only).

    Start it early (`start` returns at once; the imports happen in the
    background) and reuse it for many runs; one run at a time per zygote.
    `close` ends it. Use `Zygote.supported()` to check the platform.
    """

    def __init__(self, python: str | None = None) -> None:
        self._python = python or sys.executable
        self._process: subprocess.Popen[str] | None = None
        self._ready = False
        self._lock = threading.Lock()

    @staticmethod
    def supported() -> bool:
        """Whether this platform can fork (not Windows)."""
        return hasattr(os, "fork") and sys.platform != "win32"

    def start(self) -> Zygote:
        """Spawn the zygote process; the imports run while the caller does other work."""
        if self._process is None:
            self._process = subprocess.Popen(
                [self._python, str(_CHILD), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_child_env(),
                text=True,
                bufsize=1,
            )
        return self

    def _readline(self) -> dict[str, Any]:
        assert self._process is not None
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise MarimoPairError("The grading process (zygote) exited unexpectedly.")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request; wait for the child's exit report."""
        with self._lock:
            self.start()
            assert self._process is not None
            assert self._process.stdin is not None
            if not self._ready:
                self._readline()
                self._ready = True
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            return self._readline()

    def close(self) -> None:
        """End the zygote (it exits when its stdin closes)."""
        process, self._process = self._process, None
        self._ready = False
        if process is None:
            return
        stdin: IO[str] | None = process.stdin
        with contextlib.suppress(OSError):
            if stdin is not None:
                stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Zygote:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def clean_run(
    path: str | os.PathLike[str],
    *,
    names: Iterable[str] = (),
    exprs: Iterable[str] = (),
    timeout: float = 60.0,
    python: str | None = None,
    run: bool = True,
    zygote: Zygote | None = None,
) -> CleanRun:
    """Run the notebook at ``path`` in a fresh process and summarize the result.

    Args:
        path: the saved notebook (`.py`). Its directory is the working directory,
            so data files next to it are found as the notebook expects.
        names: variables whose values to summarize.
        exprs: expressions to evaluate in the final namespace (e.g. ``f(3)``).
        timeout: seconds before the child is killed (the result then says so).
        python: the interpreter for a new process; this one by default (it must
            have marimo). Ignored with ``zygote``.
        run: ``False`` only parses the file (cells, defs, refs): no cell runs.
        zygote: fork from this pre-imported interpreter instead of starting one.
    """
    notebook = Path(path).resolve()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mpt-clean-") as tmp:
        result = Path(tmp) / "result.json"
        log = Path(tmp) / "child.log"
        request = {
            "path": str(notebook),
            "names": sorted(set(names)),
            "exprs": sorted(set(exprs)),
            "result": str(result),
            "log": str(log),
            "run": run,
            "timeout": timeout,
        }
        if zygote is not None:
            reply = zygote.run(request)
            timed_out = bool(reply.get("timed_out"))
            exit_code = reply.get("exit_code")
        else:
            timed_out, exit_code = _run_fresh(request, Path(tmp), python, timeout)
        tail = ""
        if log.exists():
            tail = log.read_bytes()[-_OUTPUT_CHARS:].decode("utf-8", errors="replace")
        elapsed = time.monotonic() - started
        if timed_out:
            return CleanRun(
                ok=False,
                load_error=f"The notebook did not finish within {timeout:g} s.",
                timed_out=True,
                seconds=elapsed,
                stderr_tail=tail,
            )
        if not result.exists():
            return CleanRun(
                ok=False,
                load_error=f"The grading process exited ({exit_code}) before writing a result.",
                seconds=elapsed,
                stderr_tail=tail,
            )
        data = json.loads(result.read_text(encoding="utf-8"))
    data["seconds"] = elapsed
    data["stderr_tail"] = tail
    return CleanRun.model_validate(data)


def _run_fresh(
    request: dict[str, Any], tmp: Path, python: str | None, timeout: float
) -> tuple[bool, int | None]:
    request_path = tmp / "request.json"
    request_path.write_text(json.dumps(request), encoding="utf-8")
    argv = [python or sys.executable, str(_CHILD), str(request_path)]
    with Path(request["log"]).open("wb") as sink:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=Path(request["path"]).parent,
            env=_child_env(),
        )
        try:
            return False, process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return True, None


def static_cells(
    path: str | os.PathLike[str], *, timeout: float = 60.0, zygote: Zygote | None = None
) -> list[CellInfo]:
    """The cells of a notebook file (code, defs, refs) without running any of them."""
    return list(clean_run(path, run=False, timeout=timeout, zygote=zygote).cells)
