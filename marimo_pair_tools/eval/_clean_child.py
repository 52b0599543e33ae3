"""The child side of a clean run: load a saved notebook, run it, write a JSON result.

Run as a script by path, never as ``-m marimo_pair_tools...``: importing the
package would pull in httpx and langchain-core, which a grading run does not
need (about 0.6 s per run). Standard library and marimo only; `_values.py`
is loaded from the same directory by path.

Two modes:

- ``python _clean_child.py REQUEST.json``: one run in this fresh process.
- ``python _clean_child.py --serve``: a zygote. It imports marimo (and pandas,
  numpy, matplotlib when installed) once, then for each JSON request line on
  stdin forks a child that runs one notebook and exits. A forked child starts
  from the zygote's state, which is a fresh interpreter that has imported those
  libraries and run no user code: as clean as a new process, without paying
  ~1.5 s of imports per task. One JSON reply line per request on stdout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

_ERROR_CHARS = 1500
_HERE = Path(__file__).resolve().parent


def _summarizer() -> Any:
    spec = importlib.util.spec_from_file_location("_mpt_eval_values", _HERE / "_values.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {_HERE / '_values.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.summarize_safely


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]


def _load_app(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("__marimo_pair_eval_notebook__", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if app is None or not hasattr(app, "_cell_manager"):
        raise ImportError(f"{path.name} defines no marimo `app`")
    return app


def _cells(app: Any) -> list[dict[str, Any]]:
    cells = []
    for data in app._cell_manager.cell_data():
        impl = data.cell._cell if data.cell is not None else None
        cells.append(
            {
                "id": str(data.cell_id),
                "name": str(data.name),
                "code": str(data.code),
                "defs": sorted(impl.defs) if impl is not None else [],
                "refs": sorted(impl.refs) if impl is not None else [],
                "parsable": impl is not None,
            }
        )
    return cells


def _run(app: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, str], list[str]]:
    """Run every cell; return (outputs, globals, errors, skipped)."""
    from marimo._ast.app import InternalApp
    from marimo._runtime.app.script_runner import AppScriptRunner
    from marimo._runtime.exceptions import MarimoRuntimeException

    errors: dict[str, str] = {}

    class _TolerantRunner(AppScriptRunner):
        """Records a raising cell and skips its descendants instead of aborting."""

        def _handle_run_result(self, cid: Any, result: Any, outputs: dict[Any, Any]) -> None:
            try:
                super()._handle_run_result(cid, result, outputs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - any error a user's cell raises
                cause = exc.__cause__ if isinstance(exc, MarimoRuntimeException) else exc
                errors[str(cid)] = _error_text(cause or exc)
                self._scheduler.cancel(cid)

    glbls: dict[str, Any] = {}
    if app._setup is not None:
        glbls = {**app._setup._glbls}
    runner = _TolerantRunner(InternalApp(app), filename=str(path), glbls=glbls)
    outputs, final = runner.run()
    ran = {str(cid) for cid in outputs} | set(errors)
    skipped = [str(cid) for cid in app._cell_manager.valid_cell_ids() if str(cid) not in ran]
    return {str(k): v for k, v in outputs.items()}, dict(final), errors, skipped


def run_request(request: dict[str, Any]) -> None:
    """Run one request and write its result file (see `_clean_run.CleanRun`)."""
    path = Path(request["path"])
    result_path = Path(request["result"])
    os.chdir(path.parent)
    sys.path.insert(0, str(path.parent))
    summarize_safely = _summarizer()
    result: dict[str, Any] = {"ok": False}

    def write() -> None:
        result_path.write_text(json.dumps(result, default=str), encoding="utf-8")

    try:
        app = _load_app(path)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the file is agent-written code
        result["load_error"] = _error_text(exc) + "\n" + traceback.format_exc()[-_ERROR_CHARS:]
        write()
        return
    result["cells"] = _cells(app)
    try:
        app._maybe_initialize()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - CycleError, MultipleDefinitionError, ...
        result["structural_error"] = _error_text(exc)
        write()
        return
    if not request.get("run", True):
        result["ok"] = True
        write()
        return
    outputs, glbls, errors, skipped = _run(app, path)
    result["errors"] = errors
    result["skipped"] = skipped
    result["ok"] = not errors  # cells skipped by mo.stop() are not failures
    result["values"] = {
        name: summarize_safely(glbls[name]) for name in request["names"] if name in glbls
    }
    exprs: dict[str, Any] = {}
    for expr in request["exprs"]:
        try:
            value = eval(expr, dict(glbls))  # noqa: S307 - grader expressions from task files
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - the expression runs agent-written code
            exprs[expr] = {"kind": "error", "error": _error_text(exc)}
        else:
            exprs[expr] = summarize_safely(value)
    result["exprs"] = exprs
    result["outputs"] = {
        cid: summarize_safely(value) for cid, value in outputs.items() if value is not None
    }
    write()


def _preload() -> None:
    """Import what notebooks and the runner use, once, before any fork."""
    import marimo._ast.app
    import marimo._runtime.app.script_runner  # noqa: F401

    for name in ("numpy", "pandas", "matplotlib.pyplot"):
        if importlib.util.find_spec(name.split(".")[0]) is not None:
            importlib.import_module(name)


def _forked(request: dict[str, Any]) -> int:
    """Fork a child for one request; return its wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        code = 1
        try:
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            signal.alarm(max(1, int(request.get("timeout", 60) + 0.999)))
            run_request(request)
            code = 0
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def serve() -> int:
    """The zygote loop: one request line in, one reply line out, until stdin closes."""
    _preload()
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the reply channel
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        status = _forked(json.loads(line))
        signalled = os.WIFSIGNALED(status)
        reply = {
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if signalled else None,
            "timed_out": signalled and os.WTERMSIG(status) == signal.SIGALRM,
        }
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


def main(argv: list[str]) -> int:
    """Entry point: ``--serve`` or one ``REQUEST.json``."""
    if sys.path and Path(sys.path[0]).resolve() == _HERE:
        sys.path.pop(0)  # this package's modules must not shadow a notebook's imports
    if argv[1:] == ["--serve"]:
        return serve()
    request = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    run_request(request)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
