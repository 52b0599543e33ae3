"""Per-call latency of the tools through MCP, as a ratio to the same tool in-process.

One real `marimo edit --headless` server, one notebook, three ways to call a tool:

- in-process: the LangChain tool's ``ainvoke`` (a `MarimoPairToolkit`, policy on,
  presence on: the defaults `marimo-pair mcp` serves with);
- MCP over stdio: ``marimo-pair mcp`` as a subprocess, the official SDK client;
- MCP over streamable HTTP on loopback: the same command with ``--transport http``,
  with its bearer token (``MARIMO_PAIR_MCP_TOKEN``) on every request, as served by default;
  and once more with ``--no-auth``, so the token check's own cost is the ratio of the two.

Calls are interleaved round by round (in-process, stdio, HTTP, for each tool) so
load on the machine hits all three alike. The tools are ones a model calls most
and that change nothing: ``read_notebook``, ``read_cell``, ``get_errors``, and
``execute_code`` of ``1``. Each MCP path has its own ledger and presence, like the
in-process toolkit. The ratio is of medians; the difference is what MCP adds.

Usage: python bench/mcp_latency.py [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import httpx
from _common import write_notebook
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from marimo_pair_tools import MarimoServer
from marimo_pair_tools.toolkit import MarimoPairToolkit

CLI = str(Path(sys.executable).with_name("marimo-pair"))


@contextlib.asynccontextmanager
async def stdio_session(argv: list[str], env: dict[str, str]) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=CLI, args=["mcp", *argv], env=env)
    with open(os.devnull, "w") as quiet:  # noqa: ASYNC230 - before any call is timed
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def http_session(
    argv: list[str], env: dict[str, str], *, auth: bool = True
) -> AsyncIterator[ClientSession]:
    token = secrets.token_urlsafe(32) if auth else None
    process = subprocess.Popen(  # noqa: ASYNC220 - before any call is timed
        [CLI, "mcp", "--transport", "http", *argv, *([] if auth else ["--no-auth"])],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "MARIMO_PAIR_MCP_TOKEN": token} if token else env,
    )
    try:
        assert process.stderr is not None
        url = None
        while url is None:
            line = process.stderr.readline()
            if not line:
                raise SystemExit(f"marimo-pair mcp --transport http exited ({process.wait()})")
            found = re.search(r"MCP endpoint (\S+)", line)
            url = found.group(1) if found else None
        async with (
            httpx.AsyncClient(
                timeout=httpx.Timeout(120),
                headers={"Authorization": f"Bearer {token}"} if token else {},
            ) as http,
            streamable_http_client(url, http_client=http) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session
    finally:
        process.terminate()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def run(repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_notebook(
            root / "nb.py", ["import math", "x = 21", "y = x * 2\ny", "z = math.sqrt(y)"]
        )
        env = {**os.environ, "XDG_STATE_HOME": str(root / "mcp-state")}
        env.pop("MARIMO_TOKEN", None)
        env.pop("MARIMO_PAIR_MCP_TOKEN", None)
        with MarimoServer(path, registry_dir=root / "state") as server:
            toolkit = MarimoPairToolkit.from_server(server, notebook=str(path))
            tools = {t.name: t for t in toolkit.get_tools()}
            argv = ["--url", server.url, "--notebook", str(path)]
            async with (
                stdio_session(argv, env) as stdio,
                http_session(argv, env) as http,
                http_session(argv, env, auth=False) as open_http,
            ):
                listing = await tools["read_notebook"].ainvoke({})
                cell = re.findall(r"^(\w{4}) ", str(listing), flags=re.MULTILINE)[2]
                calls: dict[str, dict[str, Any]] = {
                    "read_notebook": {},
                    "read_cell": {"cell": cell},
                    "get_errors": {},
                    "execute_code": {"code": "1"},
                }

                def local(name: str, args: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
                    call = {"type": "tool_call", "name": name, "args": args, "id": "b"}
                    return lambda: tools[name].ainvoke(call)

                def remote(
                    session: ClientSession, name: str, args: dict[str, Any]
                ) -> Callable[[], Awaitable[Any]]:
                    async def go() -> None:
                        result = await session.call_tool(name, args)
                        if result.isError:
                            raise SystemExit(f"{name} failed over MCP: {result.content}")

                    return go

                ways = {
                    "in-process": None,
                    "mcp stdio": stdio,
                    "mcp http": http,
                    "http no-auth": open_http,
                }
                samples = {(n, w): [] for n in calls for w in ways}
                for _ in range(3):  # warm up every path
                    for name, args in calls.items():
                        await local(name, args)()
                        for session in (stdio, http, open_http):
                            await remote(session, name, args)()
                for _ in range(repeat):
                    for name, args in calls.items():
                        for way, session in ways.items():
                            call = (
                                local(name, args)
                                if session is None
                                else remote(session, name, args)
                            )
                            samples[(name, way)].append(await _timed(call))
            await toolkit.aclose()
    print(f"median of {repeat} calls each, interleaved; ratio to the in-process tool")
    remotes = ("mcp stdio", "mcp http", "http no-auth")
    print(f"  {'tool':14} {'in-process':>11}" + "".join(f" {way:>17}" for way in remotes))
    ratios: dict[str, list[float]] = {way: [] for way in remotes}
    for name in calls:
        base = statistics.median(samples[(name, "in-process")])
        row = f"  {name:14} {base * 1000:8.1f} ms"
        for way in remotes:
            value = statistics.median(samples[(name, way)])
            ratios[way].append(value / base)
            row += f" {value * 1000:7.1f} ms {value / base:5.2f}x"
        print(row)
    for way, values in ratios.items():
        added = statistics.median(
            statistics.median(samples[(n, way)]) - statistics.median(samples[(n, "in-process")])
            for n in calls
        )
        print(
            f"{way}: ratio {min(values):.2f}-{max(values):.2f}x, "
            f"median added {added * 1000:.1f} ms per call"
        )
    token = [
        statistics.median(samples[(n, "mcp http")])
        / statistics.median(samples[(n, "http no-auth")])
        for n in calls
    ]
    print(f"token check: http / http no-auth {min(token):.2f}-{max(token):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.repeat))


if __name__ == "__main__":
    main()
