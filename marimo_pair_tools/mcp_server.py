"""The toolkit's tools over MCP: same names, schemas, policy and error texts.

MCP clients (Claude Code, Codex, Cursor, Zed) reach tools through the Model
Context Protocol, not LangChain. This module serves the very `BaseTool`s of
`MarimoPairToolkit` through the official ``mcp`` SDK's low-level server, so there
is one implementation of every rule: a call runs the LangChain tool, and its
`ToolMessage` becomes the MCP result (an error `ToolMessage` is ``isError``, with
the same text).

Each MCP client session gets its own ledger (a `PairSession`): one client's reads
never let another edit. All sessions share the notebook's connection and queue.

Approvals: a change the policy wants a person to approve (a delete that breaks
other cells) is asked of the person through MCP elicitation when the client
supports it; a client without elicitation gets the default policy, under which
such a delete is refused unless its descendants are acknowledged.

Over HTTP, every request must carry the bearer token from ``MARIMO_PAIR_MCP_TOKEN``
(`_mcp_auth.BearerGate`), unless the person opted out with ``--no-auth``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import socket
import sys
import uuid
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from io import TextIOWrapper
from typing import Any, BinaryIO

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from mcp import McpError, types
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from pydantic import ValidationError

from . import guards
from ._mcp_auth import BearerGate
from ._text import short_repr
from .agent import impact_report
from .errors import ConfigurationError, MarimoPairError
from .presence import Presence
from .toolkit import MarimoPairToolkit
from .tools import PairSession

__all__ = [
    "HTTP_PATH",
    "RUNS_CODE",
    "TOOL_ANNOTATIONS",
    "McpPairServer",
    "input_schema",
    "listen",
    "take_stdout",
    "tool_result",
]

logger = logging.getLogger(__name__)

SERVER_NAME = "marimo-pair"
HTTP_PATH = "/mcp"
"""Where the streamable HTTP transport answers."""

RUNS_CODE = frozenset(
    {
        guards.EXECUTE_CODE,
        guards.CREATE_CELL,  # runs the new cell (run=True by default)
        guards.EDIT_CELL,  # runs the cell and its dependents
        guards.DELETE_CELL,  # marimo runs the dependents again (they lose names)
        guards.RUN_CELL,
        guards.APPLY_CHANGES,
        "set_ui_value",  # cells that read the element run again
    }
)
"""Tools that run Python in the kernel: code the model wrote, or the notebook's cells.

Either may do anything the person could (delete files, call the network), so these
are annotated destructive and open-world, whatever they do to the notebook itself:
a client that lets "non-destructive" or "closed-world" tools run without asking must
not run code that way.
"""


def _runs_code(*, idempotent: bool = False) -> types.ToolAnnotations:
    return types.ToolAnnotations(
        readOnlyHint=False, destructiveHint=True, idempotentHint=idempotent, openWorldHint=True
    )


TOOL_ANNOTATIONS: Mapping[str, types.ToolAnnotations] = {
    # Reads: nothing in the notebook or the kernel changes.
    "list_notebooks": types.ToolAnnotations(readOnlyHint=True, openWorldHint=False),
    guards.LIST_CELLS: types.ToolAnnotations(readOnlyHint=True, openWorldHint=False),
    guards.READ_CELL: types.ToolAnnotations(readOnlyHint=True, openWorldHint=False),
    guards.INSPECT_GRAPH: types.ToolAnnotations(readOnlyHint=True, openWorldHint=False),
    "get_errors": types.ToolAnnotations(readOnlyHint=True, openWorldHint=False),
    "get_variables": types.ToolAnnotations(readOnlyHint=True, openWorldHint=False),
    # Run code (`RUNS_CODE`); none is idempotent: the code runs again on each call.
    **{name: _runs_code() for name in sorted(RUNS_CODE)},
    # Order only: nothing runs, and the same move twice leaves the same order.
    guards.MOVE_CELL: types.ToolAnnotations(
        readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False
    ),
    # Removes packages too; reaches the package index.
    "install_packages": types.ToolAnnotations(
        readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=True
    ),
    # Stops whatever runs, the person's cell included.
    "interrupt_kernel": types.ToolAnnotations(
        readOnlyHint=False, destructiveHint=True, idempotentHint=False, openWorldHint=False
    ),
}
"""What each tool does to its world, for clients that ask before risky calls."""

_APPROVAL_SCHEMA: types.ElicitRequestedSchema = {
    "type": "object",
    "properties": {
        "approve": {
            "type": "boolean",
            "title": "Approve",
            "description": "Let the agent make this change.",
            "default": False,
        }
    },
    "required": ["approve"],
}

_approved: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "marimo_pair_mcp_approved", default=None
)
"""The person's answer for the call being retried after an elicitation (None: not asked)."""


@dataclass(frozen=True)
class _Answer:
    """The person's answer to an approval question."""

    approved: bool
    note: str = ""
    """Added to the refusal when the question could not be asked: what to do instead."""


class _ApprovalNeeded(Exception):
    """Raised by the approval callback so the async handler can ask the person, then retry."""

    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__("approval needed")
        self.request = request


def _ask_first(request: dict[str, Any]) -> bool:
    """The tools' approval callback: the answer of an elicitation, or a request for one.

    The tools ask synchronously, inside the policy check and before any I/O; an
    elicitation is an async round trip to the client. So the first attempt stops
    here, the handler elicits, and the retry finds the answer in `_approved`.
    """
    answer = _approved.get()
    if answer is None:
        raise _ApprovalNeeded(request)
    return answer


def input_schema(tool: BaseTool) -> dict[str, Any]:
    """The JSON schema a model sees for ``tool`` through LangChain (its `tool_call_schema`).

    Derived, never copied: when the tools' schemas change, MCP clients see the change.
    """
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        return dict(schema)
    if hasattr(schema, "model_json_schema"):
        return dict(schema.model_json_schema())
    return dict(schema.schema())  # a pydantic v1 model


def tool_result(message: ToolMessage) -> types.CallToolResult:
    """A LangChain `ToolMessage` as an MCP result: the same text, images as image content."""
    content: list[types.TextContent | types.ImageContent] = []
    blocks: Sequence[Any] = (
        [message.content] if isinstance(message.content, str) else message.content
    )
    for block in blocks:
        if isinstance(block, str):
            content.append(types.TextContent(type="text", text=block))
        elif block.get("type") == "image" and block.get("base64"):
            mimetype = block.get("mime_type") or "image/png"
            content.append(
                types.ImageContent(type="image", data=block["base64"], mimeType=mimetype)
            )
        elif block.get("type") == "text":
            content.append(types.TextContent(type="text", text=str(block.get("text", ""))))
        else:  # a block kind the tools do not make today: never drop it silently
            content.append(types.TextContent(type="text", text=str(block)))
    return types.CallToolResult(content=list(content), isError=message.status == "error")


@dataclass
class _Client:
    """One MCP client session: its ledger (inside `session`) and its tools."""

    session: PairSession
    tools: dict[str, BaseTool]
    asks: bool
    """Whether the client can ask its person (elicitation)."""


class McpPairServer:
    """An MCP server for one notebook, built on a toolkit bound to it.

    Args:
        toolkit: the notebook's toolkit; its notebook connection, limits and
            presence setting serve every client (its own ledger is not used).
        approve_deletes: what a client that supports elicitation must have the
            person approve (`guards.Policy.approve_deletes`); clients without
            elicitation get ``False``: acknowledgement is what the policy asks.
        enforce: the pairing policy (off only for tests of raw tools).
    """

    def __init__(
        self,
        toolkit: MarimoPairToolkit,
        *,
        approve_deletes: bool | str = "with_descendants",
        enforce: bool = True,
        instructions: str | None = None,
    ) -> None:
        from . import __version__

        self.toolkit = toolkit
        self.approve_deletes = approve_deletes
        self.enforce = enforce
        self._clients: weakref.WeakKeyDictionary[ServerSession, _Client] = (
            weakref.WeakKeyDictionary()
        )
        self._definitions = [self._definition(t) for t in toolkit.get_tools()]
        self.server: Server[Any, Any] = Server(
            SERVER_NAME, version=__version__, instructions=instructions
        )
        self.server.list_tools()(self._list_tools)  # type: ignore[no-untyped-call]
        # Validation is the LangChain tool's own: its refusals name the valid arguments.
        self.server.call_tool(validate_input=False)(self._call_tool)

    @staticmethod
    def _definition(tool: BaseTool) -> types.Tool:
        return types.Tool(
            name=tool.name,
            description=tool.description,
            inputSchema=input_schema(tool),
            annotations=TOOL_ANNOTATIONS.get(tool.name),
        )

    @property
    def definitions(self) -> list[types.Tool]:
        """The tools as MCP lists them."""
        return list(self._definitions)

    async def _list_tools(self) -> list[types.Tool]:
        return self.definitions

    def _client(self, session: ServerSession) -> _Client:
        """The state of this MCP client session, made on its first call."""
        found = self._clients.get(session)
        if found is not None:
            return found
        params = session.client_params
        asks = bool(params and params.capabilities.elicitation is not None)
        policy = None
        if self.enforce:
            approve: Any = self.approve_deletes if asks else False
            policy = guards.Policy(approve_deletes=approve)
        base = self.toolkit.session
        pair = PairSession(
            base.notebook,
            base.anotebook,
            policy=policy,
            limits=base.limits,
            approve=_ask_first if asks else None,
            presence=Presence() if base.presence is not None else None,
        )
        tools = {t.name: t for t in MarimoPairToolkit(session=pair).get_tools()}
        client = _Client(session=pair, tools=tools, asks=asks)
        self._clients[session] = client
        return client

    def ledger(self, session: ServerSession) -> guards.Ledger:
        """The ledger of one client session (for tests and diagnostics)."""
        return self._client(session).session.ledger

    async def _call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        context = self.server.request_context
        client = self._client(context.session)
        tool = client.tools.get(name)
        if tool is None:
            valid = ", ".join(client.tools)
            return _error(f"There is no tool {short_repr(name)}. Tools: {valid}.")
        call = {"type": "tool_call", "name": name, "args": arguments, "id": str(context.request_id)}
        work = self._run(client, tool, call, context.session, context.request_id)
        if _is_http(context.request):
            return await _unless_hung_up(context.request, work, name)
        return await work

    async def _run(
        self,
        client: _Client,
        tool: BaseTool,
        call: dict[str, Any],
        session: ServerSession,
        request_id: types.RequestId,
    ) -> types.CallToolResult:
        """Run the tool; when it needs a person's approval, ask (elicitation), then run it again."""
        try:
            message = await tool.ainvoke(call)
        except _ApprovalNeeded as needed:
            answer = await self._ask(session, client, needed.request, request_id)
            token = _approved.set(answer.approved)
            try:
                message = await tool.ainvoke({**call, "id": f"{call['id']}-{uuid.uuid4().hex}"})
            finally:
                _approved.reset(token)
            if answer.note and message.status == "error" and isinstance(message.content, str):
                message = message.model_copy(update={"content": f"{message.content} {answer.note}"})
        return tool_result(message)

    async def _ask(
        self,
        session: ServerSession,
        client: _Client,
        request: Mapping[str, Any],
        request_id: types.RequestId,
    ) -> _Answer:
        """Ask the client's person whether the agent may go ahead (elicitation).

        Only a real ``true`` approves: anything else the client sends ("false", "no",
        1, a list) is a refusal, and so is a question the client answers with an error.
        """
        question = await self._question(client, request)
        try:
            answer = await session.elicit_form(
                question, _APPROVAL_SCHEMA, related_request_id=request_id
            )
        except (McpError, ValidationError) as exc:
            # A client that declared elicitation but cannot show this form (URL mode only,
            # a dialog that failed) or answers nonsense: nobody approved.
            logger.warning(
                "could not ask the person about %s: %s", request["name"], _short(str(exc))
            )
            return _Answer(
                approved=False,
                note=(
                    "The client could not show the person the question (it answered: "
                    f"{_short(str(exc))}). Tell the person what you want to change and "
                    "why; they can make the change in the notebook themselves, or approve "
                    "it from a client that shows MCP elicitation forms."
                ),
            )
        approved = answer.action == "accept" and (answer.content or {}).get("approve") is True
        logger.info("%s %s by the person", request["name"], "approved" if approved else "refused")
        return _Answer(approved=approved)

    @staticmethod
    async def _question(client: _Client, request: Mapping[str, Any]) -> str:
        """What the person is asked: the policy's reason, the code that goes, what breaks."""
        call = {"name": request["name"], "args": request.get("args") or {}}
        cells = guards.deleted_cells(call)
        codes: Mapping[str, str] = {}
        unread = ""
        if cells:
            try:
                codes = await client.session.asynchronous().codes_of(cells)
            except MarimoPairError as exc:  # a busy kernel: ask anyway, and say so
                unread = f"\n(The code could not be read to show it here: {_short(str(exc))})"
        item = {"call": call, "approval": request.get("description")}
        report = impact_report(item, client.session.ledger, codes.get)
        return f"The agent wants to call {request['name']} on the notebook.\n{report}{unread}\nApprove?"

    # ------------------------------------------------------------------ transports

    async def serve_stdio(self, stdout: BinaryIO) -> None:
        """Serve one client over stdin and ``stdout`` (see `take_stdout`) until stdin ends."""
        import anyio
        from mcp.server.stdio import stdio_server

        text = TextIOWrapper(stdout, encoding="utf-8", write_through=True)
        stdin = anyio.wrap_file(TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"))
        lines = _AnsweredLines(stdin)
        async with stdio_server(stdin=lines, stdout=anyio.wrap_file(text)) as (read, write):  # type: ignore[arg-type]
            lines.replies = write
            lines.ready.set()
            await self.server.run(read, write, self.server.create_initialization_options())

    def http_app(self, host: str, port: int, *, token: str | None) -> Any:
        """An ASGI app serving MCP's streamable HTTP at ``/mcp`` (one ledger per session).

        With a ``token``, every request must carry ``Authorization: Bearer <token>``;
        any other gets 401 before MCP sees it (`BearerGate`). ``None`` serves anyone
        who reaches the port (``--no-auth``). Only requests whose ``Host`` (and
        ``Origin``, when sent) name this loopback address are served: a web page the
        person visits cannot drive the kernel through their browser (DNS rebinding).
        """
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from mcp.server.transport_security import TransportSecuritySettings
        from starlette.applications import Starlette
        from starlette.routing import Route

        names = {host, "localhost", "127.0.0.1", "[::1]"}
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=sorted(f"{name}:{port}" for name in names),
            allowed_origins=sorted(f"http://{name}:{port}" for name in names),
        )
        manager = StreamableHTTPSessionManager(app=self.server, security_settings=security)
        app = Starlette(
            routes=[Route(HTTP_PATH, endpoint=_Endpoint(manager))],
            lifespan=lambda app: manager.run(),
        )
        return app if token is None else BearerGate(app, token)

    async def serve_http(self, listener: socket.socket, *, token: str | None) -> None:
        """Serve streamable HTTP on a bound loopback socket until SIGINT or SIGTERM.

        ``token``: the bearer token every request must carry (None: ``--no-auth``).
        """
        import uvicorn

        host, port = listener.getsockname()[:2]
        config = uvicorn.Config(
            self.http_app(host, port, token=token),
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        await uvicorn.Server(config).serve(sockets=[listener])


class _AnsweredLines:
    """Stdin's lines for the SDK's stdio reader; a request it cannot read gets an answer.

    The SDK drops a line its parser rejects and answers nothing, so the client waits
    for ever. Its parser rejects valid JSON too: a lone surrogate escape (``"\\ud800"``)
    that `json.loads` reads. Such a line, when it is a request with an id, is answered
    here with a JSON-RPC error instead of being passed on.
    """

    def __init__(self, lines: Any) -> None:
        import anyio

        self.lines = lines
        self.replies: Any = None
        """The SDK's write stream, once `stdio_server` has made it."""
        self.ready = anyio.Event()

    def __aiter__(self) -> Any:
        return self._lines()

    async def _lines(self) -> Any:
        from mcp.shared.message import SessionMessage

        async for line in self.lines:
            answer = _unreadable_request(line)
            if answer is None:
                yield line
                continue
            await self.ready.wait()
            await self.replies.send(SessionMessage(answer))


def _unreadable_request(line: str) -> types.JSONRPCMessage | None:
    """The error to answer ``line`` with when the SDK would drop or alter it, if it has an id.

    Altered: the SDK reads ``NaN`` and ``Infinity`` (no JSON numbers) and passes them on
    as ``null``, which a tool takes as "the default": a call the client never made.
    """
    try:
        types.JSONRPCMessage.model_validate_json(line)
    except ValidationError:
        readable = False
    else:
        readable = True
        if "NaN" not in line and "Infinity" not in line:
            return None
    try:
        message = json.loads(line)
    except ValueError:
        return None  # not JSON: there is no id to answer
    if not isinstance(message, dict) or "method" not in message:
        return None
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
        return None
    if _has_lone_surrogate(message):
        text = (
            "The request holds a lone surrogate (such as \\ud800), which is not Unicode "
            "text and cannot be sent to the notebook; nothing was run. Send the text "
            "without it (a real character, or an escape inside the Python code)."
        )
    elif _has_non_finite(message):
        text = (
            "The request holds NaN or Infinity, which are not JSON numbers; nothing was "
            "run. Send a finite number, or leave the argument out for its default."
        )
    elif readable:
        return None
    else:
        text = "The request does not fit MCP's message format; nothing was run."
    error = types.ErrorData(code=types.INVALID_REQUEST, message=text)
    return types.JSONRPCMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _has_non_finite(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)


def _short(text: str, limit: int = 300) -> str:
    """A message from elsewhere (a client's error), cut for a one-line mention."""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"


def _is_http(request: object) -> bool:
    """Whether the call came over streamable HTTP (the SDK passes the Starlette request)."""
    if request is None:
        return False
    from starlette.requests import Request

    return isinstance(request, Request)


async def _unless_hung_up(
    request: Any, work: Coroutine[Any, Any, types.CallToolResult], name: str
) -> types.CallToolResult:
    """``work``, cancelled if the HTTP client hangs up before it ends.

    A dropped connection is no MCP cancellation, so the SDK lets the call run on, to
    its own limit (up to 600 s of the kernel held for nobody). Cancelled, the call
    stops its code in the kernel (see `AsyncMarimoClient`), as a client's cancel does.
    """
    import anyio

    result: types.CallToolResult | None = None
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            await _hang_up(request)
            logger.warning("the HTTP client hung up during %s: stopping the call", name)
            group.cancel_scope.cancel()

        group.start_soon(watch)
        result = await work
        group.cancel_scope.cancel()
    if result is None:
        return _error(f"{name} was stopped: the client hung up before it ended.")
    return result


async def _hang_up(request: Any) -> None:
    """Return once the client has closed the request's connection.

    The body was read already, so the only message left is ``http.disconnect`` (ASGI
    gives it to every later ``receive``, so the SDK's own listener gets it too).
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass


class _Endpoint:
    """The MCP endpoint as a raw ASGI app (Starlette serves a plain function as GET only)."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.manager.handle_request(scope, receive, send)


def take_stdout() -> BinaryIO:
    """The process's stdout, for protocol messages only; fd 1 then goes to stderr.

    Over stdio every byte on stdout must be a JSON-RPC message. Anything else that
    writes there (a `print`, a library's warning, a child process that inherits
    fd 1) would corrupt the stream, so fd 1 and ``sys.stdout`` are pointed at
    stderr and the protocol gets a private duplicate of the original.
    """
    sys.stdout.flush()
    protocol = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol, "wb", buffering=0)


def listen(host: str, port: int) -> socket.socket:
    """A bound socket for the HTTP transport (port 0: a free one), loopback only.

    Whoever reaches the endpoint drives the kernel, and it speaks plain HTTP: a
    bearer token would cross the network in clear text. So it never listens
    beyond this machine.
    """
    from ._security import is_loopback_host

    if not is_loopback_host(host):
        raise ConfigurationError(
            f"--mcp-host {host!r} is not a loopback address. The MCP endpoint runs code in "
            "the notebook's kernel and speaks plain HTTP (its token would cross the network "
            "in clear text). Serve it on 127.0.0.1 (the default), or use --transport stdio."
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host.strip("[]"), port))
    except OSError as exc:
        listener.close()
        raise ConfigurationError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    listener.listen(128)
    return listener
