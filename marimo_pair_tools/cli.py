"""`marimo-pair`: discover servers, list sessions, run code, open notebooks, run the agent.

The token is read from `MARIMO_TOKEN` (a `--token` flag would put it in argv); a
URL copied from the browser is understood too (``?file=``, ``?access_token=``),
with a warning when it carries the token.

`discover` and `exec` import nothing of LangChain or LangGraph: they start in a
fraction of a second (``bench/cli_startup.py``). `open` and `run` stop what they
started on SIGINT and SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import errors
from ._security import PageURL, split_page_url
from .discovery import discover_servers
from .errors import MarimoPairError, OutcomeUnknownError, ServerError

if TYPE_CHECKING:
    from .client import MarimoClient

__all__ = ["main"]

EXIT_BUDGET = 3
"""`run`: the agent stopped because a step or tool-call budget was used up."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that `finally` blocks stop what we started."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


class _Version(argparse.Action):
    """``--version``, looked up only when asked (importlib.metadata is slow to import)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from . import __version__

        parser.exit(message=f"{parser.prog} {__version__}\n")


def _add_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--url",
        help="server URL, or a notebook URL copied from the browser (its ?file= names the "
        "notebook) (default: the only discovered server)",
    )
    group.add_argument("--port", type=int, help="server port on localhost")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback server URL"
    )


def _page(args: argparse.Namespace) -> PageURL:
    """The target server, and what a URL copied from the browser adds (notebook, token)."""
    if not args.url:
        return PageURL(server="", file=None, token=None)
    page = split_page_url(str(args.url))
    if page.token and not getattr(args, "_warned", False):
        args._warned = True
        print(
            "marimo-pair: warning: the URL carries the server token (?access_token=), which "
            "the command line shows to other users (ps) and keeps in your shell history; "
            "set MARIMO_TOKEN instead.",
            file=sys.stderr,
        )
    return page


def _server_url(args: argparse.Namespace) -> str:
    if args.url:
        return _page(args).server
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
    from .client import MarimoClient

    token = _page(args).token if args.url else None
    return MarimoClient(
        base_url=_server_url(args),
        allow_remote=args.allow_remote,
        token=token,
        **kwargs,  # type: ignore[arg-type]
    )


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

    notebook = args.file or (None if args.session else _page(args).file)
    # No version request up front: only a server too old for the execute endpoint
    # answers 404, and then its version explains why.
    with _client(args, timeout=args.timeout, check_version=False) as client:
        try:
            result = client.execute(
                code, notebook=notebook, session_id=args.session, on_chunk=stream
            )
        except (errors.ExecuteTimeoutError, OutcomeUnknownError) as exc:
            print(f"marimo-pair: {exc}", file=sys.stderr)
            return 1
        except ServerError as exc:
            if exc.status_code == 404:
                from ._versions import check_server_version

                check_server_version(client.version())
            raise
    if result.output is not None and result.output.data:
        print(result.output.data)
    return 0 if result.success else 1


def _join(args: argparse.Namespace, notebook: str, url: str | None, **options: Any) -> Any:
    """The notebook's session: the one a running server has open, or one opened here."""
    from .joining import join

    page = _page(args) if args.url else None
    if page is not None and page.file and Path(page.file).name != Path(notebook).name:
        raise MarimoPairError(
            f"--url names notebook {page.file!r} but the command names {notebook!r}."
        )
    return join(
        notebook,
        url=url,
        token=page.token if page else None,
        allow_remote=args.allow_remote,
        run=not args.no_run,
        # A marimo this command starts ends with it, even if it is SIGKILLed (Linux).
        die_with_parent=threading.current_thread() is threading.main_thread(),
        **options,
    )


def _cmd_open(args: argparse.Namespace) -> int:
    url = _page(args).server if args.url else None
    pairing = _join(args, args.notebook, url, port=args.port)
    try:
        print(pairing.describe())
        print(f"session: {pairing.session.key} on {pairing.notebook}")
        if pairing.server is not None:
            print(f"marimo pid {pairing.server.pid}")
        print(f"watch it live: {pairing.url}", flush=True)
        if pairing.server is None:
            # marimo keeps the session; this process has nothing to keep running.
            print("The session stays open on that server; nothing to keep running here.")
            return 0
        print("Ctrl-C stops what this command started.", flush=True)
        threading.Event().wait(args.exit_after)
        return 0
    finally:
        pairing.close()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marimo-pair", description="Pair-program with an agent inside a live marimo notebook."
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
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

    p = sub.add_parser(
        "open",
        help="open a notebook for pairing: join the session that has it open, or start "
        "marimo with a headless session that runs it",
    )
    p.add_argument("notebook")
    p.add_argument("--url", help="a server to open it on (a URL copied from the browser works)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback server URL")
    p.add_argument("--port", type=int, default=None, help="port for a server started here")
    _add_no_run(p)
    p.add_argument("--exit-after", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_open)

    p = sub.add_parser("demo", help="watch the pair agent fix a notebook (no LLM needed)")
    p.add_argument("--workdir", help="where to copy the demo notebook (default: a temp dir)")
    p.add_argument("--pace", type=float, default=0.0, help="seconds between agent turns")
    p.add_argument("--keep-open", action="store_true", help="keep the server up at the end")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "run",
        help="run the pair agent with a real model on a notebook (in the session that has "
        "it open, if any)",
    )
    p.add_argument("notebook", help="the notebook file")
    p.add_argument("task", help="what the agent should do")
    p.add_argument(
        "--model",
        required=True,
        help="provider:model, module:factory or scripted:turns.json (as for eval)",
    )
    _add_target(p)
    _add_no_run(p)
    p.add_argument("--no-approve-deletes", action="store_true", help="do not ask before deletes")
    p.add_argument("--max-steps", type=int, default=40)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "mcp",
        help="serve the notebook tools, with their rules, to MCP clients (Claude Code, "
        "Codex, Cursor, Zed), in the session that has the notebook open",
    )
    _add_target(p)
    p.add_argument(
        "--notebook",
        help="the notebook file (default: the notebook --url names, or the only one open)",
    )
    p.add_argument(
        "--transport",
        choices=["stdio", "http"],
        default="stdio",
        help="stdio (the client starts this command) or streamable HTTP (default: stdio)",
    )
    p.add_argument("--mcp-host", default="127.0.0.1", help="HTTP: loopback address to listen on")
    p.add_argument(
        "--mcp-port", type=int, default=0, help="HTTP: port to listen on (default: a free one)"
    )
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="HTTP: serve without a token. By default every request must carry "
        "'Authorization: Bearer $MARIMO_PAIR_MCP_TOKEN' (the token is read from that "
        "environment variable, never from a flag) and the command refuses to start "
        "without it. With --no-auth, anyone on this machine who can reach the port (any "
        "user, any process) can run code in the notebook's kernel and change the notebook",
    )
    p.add_argument(
        "--no-approve-deletes",
        action="store_true",
        help="do not ask the person (MCP elicitation) before a delete that breaks other "
        "cells; acknowledging them is still required",
    )
    _add_no_run(p)
    p.set_defaults(func=_cmd_mcp)

    p = sub.add_parser(
        "dev",
        help="langgraph dev, without reloading the graph when the agent saves its notebook",
    )
    p.add_argument("--config", default="langgraph.json", help="langgraph.json to serve")
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="NOTEBOOK",
        help="another notebook whose changes must not reload the graph (MARIMO_NOTEBOOK, "
        "from the environment or the config's env, is always left out)",
    )
    p.add_argument(
        "langgraph", nargs=argparse.REMAINDER, help="arguments for langgraph dev (after --)"
    )
    p.set_defaults(func=_cmd_dev)

    from .eval.cli import register as register_eval

    register_eval(sub)
    return parser


def _notebooks_to_ignore(args: argparse.Namespace) -> list[str]:
    """The notebooks the graph works on, as reloader patterns (relative to the cwd)."""
    config_path = Path(args.config)
    named = [*args.ignore]
    env: object = None
    if config_path.is_file():
        env = json.loads(config_path.read_text(encoding="utf-8")).get("env")
    if isinstance(env, dict):
        named.append(str(env.get("MARIMO_NOTEBOOK") or ""))
    elif isinstance(env, str) and (config_path.parent / env).is_file():
        for line in (config_path.parent / env).read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "MARIMO_NOTEBOOK":
                named.append(value.strip().strip("'\""))
    named.append(os.environ.get("MARIMO_NOTEBOOK", ""))
    cwd = Path.cwd().resolve()
    patterns = []
    for name in filter(None, named):
        path = Path(name).expanduser().resolve()
        if path.is_relative_to(cwd) and path != cwd:
            patterns.append(path.relative_to(cwd).as_posix())
    return sorted(set(patterns))


def _cmd_dev(args: argparse.Namespace) -> int:
    """`langgraph dev`, with the notebooks the graph edits left out of its reloader's watch.

    `langgraph dev` restarts its worker when a ``*.py`` file under the working
    directory changes, and a marimo notebook is one: every save of the agent's
    edits would reload the graph (and restart the marimo server it started). Its
    reloader (uvicorn) takes exclusions, but `langgraph dev` offers no way to pass
    them; this passes them to the function it calls.
    """
    try:
        import langgraph_api.cli as api
        from langgraph_cli.cli import cli as langgraph
    except ImportError as exc:
        raise MarimoPairError(
            "marimo-pair dev runs `langgraph dev`: pip install 'langgraph-cli[inmem]'"
        ) from exc
    ignored = _notebooks_to_ignore(args)
    original = api.run_server

    def run_server(*positional: Any, **options: Any) -> Any:
        options["reload_excludes"] = [*(options.get("reload_excludes") or ()), *ignored]
        return original(*positional, **options)

    if ignored:
        print(f"marimo-pair dev: not reloading on changes to {', '.join(ignored)}", flush=True)
    passed = args.langgraph[1:] if args.langgraph[:1] == ["--"] else args.langgraph
    api.run_server = run_server
    try:
        langgraph.main(["dev", "--config", args.config, *passed], prog_name="marimo-pair")
    finally:
        api.run_server = original
    return 0


def _mcp_toolkit(args: argparse.Namespace) -> Any:
    """The toolkit MCP serves: the notebook's session, joined as `run` joins it."""
    from .toolkit import MarimoPairToolkit

    if args.notebook:
        url = _server_url(args) if (args.url or args.port) else None
        pairing = _join(args, args.notebook, url)
        try:
            toolkit = MarimoPairToolkit.from_clients(
                pairing.client, pairing.async_client(), notebook=pairing.notebook
            )
        except BaseException:
            pairing.close()
            raise
        toolkit.pairing = pairing
        print(f"marimo-pair mcp: {pairing.describe()}", file=sys.stderr, flush=True)
        return toolkit
    page = _page(args) if args.url else None
    toolkit = MarimoPairToolkit.from_url(
        _server_url(args),
        notebook=page.file if page else None,
        token=page.token if page else None,
        allow_remote=args.allow_remote,
    )
    try:
        # Now, not at the first tool call: no notebook open, or several, is a setup error.
        session = toolkit.session.sync().client.resolve_session(
            page.file if page else None, refresh=True
        )
    except BaseException:
        toolkit.close()
        raise
    where = session.path or session.filename
    print(f"marimo-pair mcp: serving {where}", file=sys.stderr, flush=True)
    return toolkit


def _cmd_mcp(args: argparse.Namespace) -> int:
    """Serve the tools over MCP until the client goes (stdio) or a signal (HTTP)."""
    import functools
    import importlib.util
    import logging

    if importlib.util.find_spec("mcp") is None:
        raise MarimoPairError(
            "marimo-pair mcp needs the MCP SDK: pip install 'marimo-pair-tools[mcp]'"
        )

    from ._mcp_auth import TOKEN_ENV, take_token

    # Before anything starts: no token, no HTTP server (and nothing we start inherits it).
    token = None
    if args.transport == "http":
        token = take_token(no_auth=args.no_auth)
    elif args.no_auth:
        raise MarimoPairError("--no-auth is for --transport http; stdio has no port to guard.")
    else:
        os.environ.pop(TOKEN_ENV, None)

    # First of all: over stdio, stdout belongs to the protocol from here on.
    stdout = None
    if args.transport == "stdio":
        from .mcp_server import take_stdout

        stdout = take_stdout()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="marimo-pair mcp: %(levelname)s %(name)s: %(message)s",
    )
    import anyio

    from .agent import DEFAULT_SYSTEM_PROMPT
    from .mcp_server import HTTP_PATH, McpPairServer, listen

    listener = listen(args.mcp_host, args.mcp_port) if args.transport == "http" else None
    stopped: KeyboardInterrupt | None = None
    try:
        toolkit = _mcp_toolkit(args)
        try:
            server = McpPairServer(
                toolkit,
                approve_deletes=False if args.no_approve_deletes else "with_descendants",
                instructions=DEFAULT_SYSTEM_PROMPT,
            )
            if listener is None:
                assert stdout is not None
                try:
                    anyio.run(server.serve_stdio, stdout)
                except KeyboardInterrupt as signalled:  # SIGINT, or SIGTERM (`_Terminated`)
                    stopped = signalled
            else:
                if token is not None:
                    _warn_if_marimo_is_open(toolkit)
                host, port = listener.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                guard = (
                    f"bearer token required (the value of {TOKEN_ENV})"
                    if token is not None
                    else "NO AUTHENTICATION (--no-auth): anyone on this machine who can reach "
                    "the port can run code in the kernel"
                )
                print(
                    f"marimo-pair mcp: MCP endpoint http://{shown}:{port}{HTTP_PATH} ({guard})",
                    file=sys.stderr,
                    flush=True,
                )
                anyio.run(functools.partial(server.serve_http, listener, token=token))
        finally:
            toolkit.close()
    finally:
        if listener is not None:
            listener.close()
    if stopped is not None:
        # What we started is stopped. The SDK reads stdin in a thread blocked in read(),
        # which nothing interrupts; the interpreter would wait for it at exit until the
        # client closes stdin (seen: > 200 s). So end the process here.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(128 + (signal.SIGTERM if isinstance(stopped, _Terminated) else signal.SIGINT))
    return 0


def _warn_if_marimo_is_open(toolkit: Any) -> None:
    """Say so when the marimo server behind the MCP endpoint takes no token.

    Then the MCP token guards one door of two: anyone on this machine who reaches
    marimo's own port runs code in the same kernel without it.
    """
    client = toolkit.session.sync().client
    if client.has_token:
        return
    print(
        f"marimo-pair mcp: warning: the marimo server at {client.base_url} takes no token: "
        "anyone on this machine who can reach its port can run code in the notebook's kernel "
        "there, without the MCP token. To close that door too, open the notebook in a marimo "
        "server with a token (`marimo edit NOTEBOOK`, marimo's default) and pass its URL "
        "with --url and its token in MARIMO_TOKEN.",
        file=sys.stderr,
        flush=True,
    )


def _add_no_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="do not run the notebook in a session opened here (a person's session is "
        "never re-run)",
    )


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

    from .agent import budget_stop, create_pair_agent
    from .config import model_from_spec
    from .console import StepPrinter
    from .toolkit import MarimoPairToolkit

    model = model_from_spec(args.model)
    pairing = _join(args, args.notebook, _server_url(args) if (args.url or args.port) else None)
    try:
        toolkit = MarimoPairToolkit.from_clients(
            pairing.client, pairing.async_client(), notebook=pairing.notebook
        )
    except BaseException:
        pairing.close()
        raise
    toolkit.pairing = pairing  # closing the toolkit stops a server started here
    print(pairing.describe())
    print(f"watch it live: {pairing.url}", flush=True)
    try:
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
        last: object = None
        while True:
            pending = None
            for update in agent.stream(payload, config, stream_mode="updates"):
                if "__interrupt__" in update:
                    pending = update["__interrupt__"][0].value
                printer.update(update)
                for change in update.values():
                    if isinstance(change, dict) and change.get("messages"):
                        last = change["messages"][-1]
            if pending is None:
                break
            payload = Command(resume=_ask_decisions(pending))
        budget = budget_stop(last)
        if budget is not None:
            print(
                f"marimo-pair: the agent stopped: its {budget} budget is used up", file=sys.stderr
            )
            return EXIT_BUDGET
        return 0
    finally:
        toolkit.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `marimo-pair` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    if main_thread:
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args))
    except MarimoPairError as exc:
        print(f"marimo-pair: {exc}", file=sys.stderr)
        return 1
    except _Terminated:
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
