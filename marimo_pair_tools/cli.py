"""`marimo-pair`: discover servers, list sessions, run code, open notebooks, run the agent.

The token is read from `MARIMO_TOKEN` only: a `--token` flag would put it in argv.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .client import MarimoClient
from .discovery import discover_servers
from .errors import ExecuteTimeoutError, MarimoPairError, OutcomeUnknownError

__all__ = ["main"]


def _add_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--url", help="server URL (default: the only discovered server)")
    group.add_argument("--port", type=int, help="server port on localhost")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback server URL"
    )


def _server_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    if args.port:
        return f"http://127.0.0.1:{args.port}"
    servers = discover_servers()
    if len(servers) == 1:
        return servers[0].url
    if not servers:
        raise MarimoPairError(
            "No running marimo server found. Start one with `marimo-pair open NOTEBOOK` or "
            "`marimo edit --no-token`, or pass --url."
        )
    listing = "\n".join(f"  {s.url}  (marimo {s.version})" for s in servers)
    raise MarimoPairError(f"Several marimo servers are running; pass --url or --port:\n{listing}")


def _client(args: argparse.Namespace, **kwargs: object) -> MarimoClient:
    return MarimoClient(base_url=_server_url(args), allow_remote=args.allow_remote, **kwargs)  # type: ignore[arg-type]


def _cmd_discover(args: argparse.Namespace) -> int:
    servers = discover_servers(args.registry_dir, include_unhealthy=args.all)
    rows = [
        {
            "server_id": s.server_id,
            "url": s.url,
            "version": s.version,
            "started_at": str(s.started_at) if s.started_at else None,
            **({"status": s.status, "reason": s.reason} if args.all else {}),
        }
        for s in servers
    ]
    print(json.dumps(rows, indent=2))
    return 0


def _cmd_sessions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = [s.model_dump() for s in client.sessions()]
    print(json.dumps(rows, indent=2))
    return 0


def _read_code(args: argparse.Namespace) -> str:
    if args.code is not None:
        return str(args.code)
    if args.source in (None, "-"):
        if sys.stdin.isatty() and args.source is None:
            raise MarimoPairError("Give code with -c CODE, a FILE.py, or '-' for stdin.")
        return sys.stdin.read()
    return Path(args.source).read_text(encoding="utf-8")


def _cmd_exec(args: argparse.Namespace) -> int:
    code = _read_code(args)

    def stream(channel: str, text: str) -> None:
        (sys.stdout if channel == "stdout" else sys.stderr).write(text)
        (sys.stdout if channel == "stdout" else sys.stderr).flush()

    with _client(args, timeout=args.timeout) as client:
        try:
            result = client.execute(
                code, notebook=args.file, session_id=args.session, on_chunk=stream
            )
        except (ExecuteTimeoutError, OutcomeUnknownError) as exc:
            print(f"marimo-pair: {exc}", file=sys.stderr)
            return 1
    if result.output is not None and result.output.data:
        print(result.output.data)
    return 0 if result.success else 1


def _cmd_open(args: argparse.Namespace) -> int:
    from .server import MarimoServer

    server = MarimoServer(args.notebook, port=args.port, isolate=False)
    with server, server.client() as client:
        session = client.attach(None if server.path.is_file() else args.notebook)
        print(f"marimo server: {server.url}  (pid {server.pid})")
        print(f"session: {session.key} on {session.path}")
        print(f"watch it live: {server.url}")
        print("Ctrl-C stops the server.", flush=True)
        if args.exit_after is not None:
            threading.Event().wait(args.exit_after)
            return 0
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("\nstopping", file=sys.stderr)
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marimo-pair", description="Pair-program with an agent inside a live marimo notebook."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("discover", help="list running marimo servers (JSON)")
    p.add_argument("--registry-dir", help="marimo registry directory to read")
    p.add_argument(
        "--all",
        action="store_true",
        help="include entries that are not live (unresponsive, unknown, stale, invalid)",
    )
    p.set_defaults(func=_cmd_discover)

    p = sub.add_parser("sessions", help="list open notebook sessions on a server (JSON)")
    _add_target(p)
    p.set_defaults(func=_cmd_sessions)

    p = sub.add_parser("exec", help="run Python in a notebook's scratchpad")
    _add_target(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--file", help="the notebook file whose session to use")
    which.add_argument("--session", help="a session id")
    p.add_argument("-c", dest="code", help="code to run")
    p.add_argument("source", nargs="?", help="a .py file with the code, or - for stdin")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    p.set_defaults(func=_cmd_exec)

    p = sub.add_parser("open", help="start marimo on a notebook with a headless session")
    p.add_argument("notebook")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--exit-after", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_open)

    p = sub.add_parser("demo", help="watch the pair agent fix a notebook (no LLM needed)")
    p.add_argument("--workdir", help="where to copy the demo notebook (default: a temp dir)")
    p.add_argument("--pace", type=float, default=0.0, help="seconds between agent turns")
    p.add_argument("--keep-open", action="store_true", help="keep the server up at the end")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("run", help="run the pair agent with a real model on a notebook")
    p.add_argument("notebook", help="the notebook file")
    p.add_argument("task", help="what the agent should do")
    p.add_argument("--model", required=True, help="provider:model or module:factory")
    _add_target(p)
    p.add_argument("--no-approve-deletes", action="store_true", help="do not ask before deletes")
    p.add_argument("--max-steps", type=int, default=40)
    p.set_defaults(func=_cmd_run)

    from .eval.cli import register as register_eval

    register_eval(sub)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    workdir = Path(args.workdir) if args.workdir else None
    return run_demo(workdir=workdir, pace=args.pace, keep_open=args.keep_open)


def _ask_decisions(request: dict[str, Any]) -> dict[str, object]:
    """Ask the person at the terminal about each pending action (HITL decision shapes)."""
    decisions: list[dict[str, object]] = []
    configs = {c["action_name"]: c["allowed_decisions"] for c in request.get("review_configs", [])}
    for action in request.get("action_requests", []):
        print(f"\napproval needed: {action['name']}({json.dumps(action['args'])})")
        print(action.get("description", ""))
        allowed = configs.get(action["name"], ["approve", "edit", "reject"])
        choices = " / ".join(f"[{d[0]}]{d[1:]}" for d in allowed)
        answer = input(f"{choices}: ").strip().lower()
        if answer.startswith(("a", "y")) and "approve" in allowed:
            decisions.append({"type": "approve"})
        elif answer.startswith("e") and "edit" in allowed:
            args = _ask_json(f"new arguments for {action['name']} (JSON object): ")
            edited = {"name": action["name"], "args": args}
            decisions.append({"type": "edit", "edited_action": edited})
        else:
            why = input("why (shown to the agent): ").strip() or "The person said no."
            decisions.append({"type": "reject", "message": why})
    return {"decisions": decisions}


def _ask_json(prompt: str) -> dict[str, Any]:
    while True:
        try:
            value = json.loads(input(prompt))
        except ValueError as exc:
            print(f"not JSON ({exc}); try again")
            continue
        if isinstance(value, dict):
            return value
        print('a JSON object, please, e.g. {"cell": "old_cell"}')


def _cmd_run(args: argparse.Namespace) -> int:
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from .agent import create_pair_agent
    from .config import model_from_spec
    from .console import StepPrinter
    from .server import MarimoServer
    from .toolkit import MarimoPairToolkit

    model = model_from_spec(args.model)
    server = None
    if args.url or args.port:
        toolkit = MarimoPairToolkit.from_url(
            _server_url(args), notebook=args.notebook, allow_remote=args.allow_remote, attach=True
        )
    else:
        server = MarimoServer(args.notebook, isolate=False).start()
        print(f"watch it live: {server.url}")
        toolkit = MarimoPairToolkit.from_server(server, notebook=str(server.path))
    agent = create_pair_agent(
        model,
        toolkit,
        approve_deletes=not args.no_approve_deletes,
        checkpointer=InMemorySaver(),
        max_steps=args.max_steps,
    )
    printer = StepPrinter()
    config = {"configurable": {"thread_id": "cli"}}
    payload: object = {"messages": [HumanMessage(args.task)]}
    try:
        while True:
            pending = None
            for update in agent.stream(payload, config, stream_mode="updates"):
                if "__interrupt__" in update:
                    pending = update["__interrupt__"][0].value
                printer.update(update)
            if pending is None:
                return 0
            payload = Command(resume=_ask_decisions(pending))
    finally:
        toolkit.close()
        if server is not None:
            server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `marimo-pair` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except MarimoPairError as exc:
        print(f"marimo-pair: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
