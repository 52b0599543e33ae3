"""A chat model that replays a script, for tests, demos and eval harnesses.

`ScriptedChatModel` answers each call with the next prepared turn, so an agent
graph can be exercised end to end (tools, guards, approvals, checkpoints)
without a real model, a network or an API key::

    model = ScriptedChatModel([
        [{"name": "read_cell", "args": {"cell": "Hbol"}}],
        lambda messages: [{
            "name": "edit_cell",
            "args": {"cell": "Hbol", "code": "x = 2",
                     "expected_hash": last_tool_message(messages).artifact["hash"]},
        }],
        "Done: x is now 2.",
    ])

A turn is one of:

- a `str`: a plain text reply;
- a list of tool calls, each a dict ``{"name", "args", "id"?}`` (a missing id is
  generated);
- an `AIMessage`, used as given (copied, so a replay never shares objects);
- a callable ``(messages) -> turn`` returning one of the above, so a turn can
  react to what the tools returned (a code hash, a cell id).

Why not langchain-core's `GenericFakeChatModel`: it has no `bind_tools`, and it
drops tool calls when streamed, so LangGraph's ``stream_mode="messages"`` (and
anything that streams by default) sees text only. This model streams tool
calls as `tool_call_chunks` that reassemble to the scripted calls, refuses
calls to tools it was not bound with (the usual bug in a new graph), records
every message list it was given and fails loudly when its script runs out.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from .errors import MarimoPairError

if TYPE_CHECKING:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.messages.ai import UsageMetadata

__all__ = [
    "ScriptError",
    "ScriptedChatModel",
    "StaticTurn",
    "Turn",
    "last_tool_message",
]

StaticTurn: TypeAlias = "AIMessage | str | Sequence[Mapping[str, Any]]"
"""A turn that needs no input: text, tool calls or a whole `AIMessage`."""

Turn: TypeAlias = "StaticTurn | Callable[[list[BaseMessage]], StaticTurn]"
"""A static turn, or a callable that builds one from the messages the model was given."""

_TOOL_CALL_KEYS = frozenset({"name", "args", "id", "type"})
_PREVIEW_CHARS = 500


class ScriptError(MarimoPairError, RuntimeError):
    """The script and the code under test disagree: it ran out, or a turn is unusable here."""


class _Script:
    """The turns and the shared position; shared by every `bind_tools` copy of one model."""

    def __init__(self, turns: tuple[Turn, ...]) -> None:
        self.turns = turns
        self.position = 0
        self.calls: list[list[BaseMessage]] = []
        self.lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> _Script:
        # A deep copy of the model (some frameworks make one) still drives the same
        # script; copying the lock would fail, and copying the position would replay.
        return self

    def take(self, messages: list[BaseMessage]) -> tuple[int, Turn, list[BaseMessage]]:
        """Claim the next turn and record the call, atomically."""
        seen = [message.model_copy(deep=True) for message in messages]
        with self.lock:
            self.calls.append(seen)
            index = self.position
            if index >= len(self.turns):
                raise ScriptError(_exhausted_message(len(self.turns), len(self.calls), seen))
            self.position += 1
            return index, self.turns[index], seen


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers with prepared turns, one per call, in order.

    Every copy made by `bind_tools` shares the script, the position and
    `calls` with the model it came from, so a test keeps one handle on the
    model it gave to the graph.

    `usage_metadata` is a stand-in (characters / 4, rounded up, for input and
    output) so that eval summaries have token numbers to add up; it measures
    nothing about any real tokenizer. Input counts the specs of the bound tools
    too, on every call, as a provider bills them.

    Args:
        turns: the script; see the module docstring for what a turn can be.
        **kwargs: fields of this model or of `BaseChatModel`.

    Raises:
        TypeError: a turn (or a tool call in it) has a shape this model cannot replay.
    """

    model_name: str = "scripted"
    """Reported in `response_metadata["model_name"]`."""

    bound_tools: tuple[str, ...] | None = None
    """Names of the tools this copy was bound with; `None` before `bind_tools`."""

    bound_kwargs: dict[str, Any] = Field(default_factory=dict)
    """The other keyword arguments `bind_tools` received (`tool_choice`, ...), for assertions."""

    bound_tool_chars: int = 0
    """Characters of the bound tools' specs (as `convert_to_openai_tool` gives them)."""

    require_bound_tools: bool = True
    """Refuse tool calls when `bind_tools` was never called (the graph offered no tools)."""

    _script: _Script = PrivateAttr()

    def __init__(self, turns: Iterable[Turn] = (), /, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        script = tuple(turns)
        for index, turn in enumerate(script):
            if not callable(turn):
                _to_message(turn, index)  # fail at construction, not mid-run
        self._script = _Script(script)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "turns": len(self._script.turns)}

    @property
    def calls(self) -> list[list[BaseMessage]]:
        """Copies of the message lists the model was given, one per call (a failed call too)."""
        with self._script.lock:
            return list(self._script.calls)

    @property
    def position(self) -> int:
        """How many turns have been used."""
        with self._script.lock:
            return self._script.position

    @property
    def remaining(self) -> int:
        """How many turns are left; tests assert it is 0 to know the whole script ran."""
        with self._script.lock:
            return len(self._script.turns) - self._script.position

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> ScriptedChatModel:
        """Return a copy that may call exactly these tools and shares this model's script.

        Args:
            tools: the tools the graph offers, in any form `bind_tools` accepts.
            tool_choice: recorded in `bound_kwargs`; it does not change the script.
            **kwargs: recorded in `bound_kwargs`.
        """
        names = tuple(_tool_name(tool) for tool in tools)
        recorded = dict(kwargs)
        if tool_choice is not None:
            recorded["tool_choice"] = tool_choice
        specs = sum(len(json.dumps(_spec(tool), separators=(",", ":"))) for tool in tools)
        return self.model_copy(
            update={"bound_tools": names, "bound_kwargs": recorded, "bound_tool_chars": specs}
        )

    def _next_message(self, messages: list[BaseMessage]) -> AIMessage:
        index, turn, seen = self._script.take(messages)
        if callable(turn):
            turn = turn(seen)
            if callable(turn):
                msg = f"Turn {index} is a callable that returned another callable; return a turn."
                raise ScriptError(msg)
        message = _to_message(turn, index)
        self._check_tools(message, index)
        if message.usage_metadata is None:
            message.usage_metadata = _usage(messages, message, self.bound_tool_chars)
        message.response_metadata = {"model_name": self.model_name, **message.response_metadata}
        return message

    def _check_tools(self, message: AIMessage, index: int) -> None:
        for call in message.tool_calls:
            if self.bound_tools is None:
                if not self.require_bound_tools:
                    continue
                msg = (
                    f"Turn {index} calls tool {call['name']!r}, but bind_tools() was never "
                    "called: the code under test offered the model no tools. Bind them, or "
                    "build the model with require_bound_tools=False."
                )
                raise ScriptError(msg)
            if call["name"] not in self.bound_tools:
                msg = (
                    f"Turn {index} calls tool {call['name']!r}, which the model was not bound "
                    f"with; bound tools: {sorted(self.bound_tools)}."
                )
                raise ScriptError(msg)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next_message(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Pure CPU work: no executor hop, so async tests stay on one thread.
        return self._generate(messages, stop, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # No run_manager.on_llm_new_token here: BaseChatModel calls it for every chunk
        # we yield, and calling it twice would duplicate LangGraph "messages" events.
        for chunk in _to_chunks(self._next_message(messages)):
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in _to_chunks(self._next_message(messages)):
            yield ChatGenerationChunk(message=chunk)


def last_tool_message(messages: Sequence[BaseMessage], name: str | None = None) -> ToolMessage:
    """The most recent `ToolMessage` (from tool `name`, if given), for callable turns.

    Raises:
        ScriptError: there is none, so the turn cannot react to it.
    """
    for message in reversed(messages):
        if isinstance(message, ToolMessage) and (name is None or message.name == name):
            return message
    what = f"from tool {name!r}" if name else "at all"
    msg = f"The model was given no ToolMessage {what}; the scripted turn expected one."
    raise ScriptError(msg)


def _tool_name(tool: Mapping[str, Any] | type | Callable[..., Any] | BaseTool) -> str:
    if isinstance(tool, BaseTool):
        return tool.name
    if isinstance(tool, Mapping):
        if isinstance(tool.get("name"), str):
            return str(tool["name"])
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
        if isinstance(tool.get("type"), str):  # a provider's built-in tool, e.g. web search
            return str(tool["type"])
    return str(convert_to_openai_tool(tool)["function"]["name"])


def _to_message(turn: object, index: int) -> AIMessage:
    """Build a fresh `AIMessage` from a static turn; validate its shape."""
    if isinstance(turn, str):
        return AIMessage(content=turn)
    if isinstance(turn, AIMessage):
        message = turn.model_copy(deep=True)
        message.tool_calls = [_tool_call(call, index) for call in message.tool_calls]
        return message
    if isinstance(turn, Sequence) and turn and all(isinstance(c, Mapping) for c in turn):
        return AIMessage(content="", tool_calls=[_tool_call(call, index) for call in turn])
    msg = (
        f"Turn {index} is {type(turn).__name__} {turn!r:.80}; a turn is a str, an AIMessage, "
        "a non-empty list of tool-call dicts, or a callable returning one of those."
    )
    raise TypeError(msg)


def _tool_call(call: Mapping[str, Any], index: int) -> ToolCall:
    unknown = set(call) - _TOOL_CALL_KEYS
    name = call.get("name")
    args = call.get("args", {})
    if unknown or not isinstance(name, str) or not isinstance(args, Mapping):
        msg = (
            f"Turn {index} has a tool call {dict(call)!r:.120}; expected "
            '{"name": str, "args": dict, "id": str (optional)}.'
        )
        raise TypeError(msg)
    call_id = call.get("id") or f"call_{uuid.uuid4().hex[:16]}"
    return ToolCall(name=name, args=dict(args), id=str(call_id), type="tool_call")


def _char_count(message: BaseMessage) -> int:
    content = message.content
    if isinstance(content, str):
        count = len(content)
    else:
        count = 0
        for block in content:
            if isinstance(block, str):
                count += len(block)
            elif isinstance(block.get("text"), str):
                count += len(block["text"])
    if isinstance(message, AIMessage):
        count += sum(
            len(c["name"]) + len(json.dumps(c["args"], default=str)) for c in message.tool_calls
        )
    return count


def _spec(tool: Mapping[str, Any] | type | Callable[..., Any] | BaseTool) -> Any:
    """What a provider is sent for one tool (a built-in tool's dict as it is)."""
    if isinstance(tool, Mapping) and "function" not in tool and "name" not in tool:
        return dict(tool)
    try:
        return convert_to_openai_tool(tool)
    except (ValueError, TypeError):
        return {"name": _tool_name(tool)}


def _usage(messages: Sequence[BaseMessage], reply: AIMessage, tool_chars: int) -> UsageMetadata:
    input_tokens = -(-(sum(_char_count(m) for m in messages) + tool_chars) // 4)
    output_tokens = -(-_char_count(reply) // 4)
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def _to_chunks(message: AIMessage) -> list[AIMessageChunk]:
    """Cut a reply into chunks whose sum is the same reply, tool calls included.

    Text is cut after each run of whitespace; each tool call's JSON arguments
    are cut in two, so consumers really exercise reassembly by `index`.
    """
    text = message.content
    pieces: list[str | list[str | dict[Any, Any]]]
    pieces = list(re.findall(r"\S+\s*|\s+", text)) if isinstance(text, str) else [text]
    chunks = [AIMessageChunk(content=piece, id=message.id) for piece in pieces if piece]
    for index, call in enumerate(message.tool_calls):
        arguments = json.dumps(call["args"])
        middle = len(arguments) // 2
        chunks.append(
            AIMessageChunk(
                content="",
                id=message.id,
                tool_call_chunks=[
                    tool_call_chunk(
                        name=call["name"], args=arguments[:middle], id=call["id"], index=index
                    )
                ],
            )
        )
        chunks.append(
            AIMessageChunk(
                content="",
                id=message.id,
                tool_call_chunks=[tool_call_chunk(args=arguments[middle:], index=index)],
            )
        )
    chunks.append(
        AIMessageChunk(
            content="" if isinstance(text, str) else [],
            id=message.id,
            name=message.name,
            additional_kwargs=message.additional_kwargs,
            response_metadata=message.response_metadata,
            usage_metadata=message.usage_metadata,
            chunk_position="last",
        )
    )
    return chunks


def _preview(message: BaseMessage) -> str:
    text = f"{type(message).__name__}"
    if isinstance(message, ToolMessage):
        text += f"(name={message.name!r}, status={message.status!r})"
    body = repr(message.content)
    if isinstance(message, AIMessage) and message.tool_calls:
        body += f" tool_calls={[(c['name'], c['args']) for c in message.tool_calls]!r}"
    if len(body) > _PREVIEW_CHARS:
        body = body[:_PREVIEW_CHARS] + f"… [{len(body) - _PREVIEW_CHARS} characters cut]"
    return f"{text}: {body}"


def _exhausted_message(scripted: int, call_number: int, seen: list[BaseMessage]) -> str:
    last = _preview(seen[-1]) if seen else "(no messages)"
    return (
        f"ScriptedChatModel ran out of turns: {scripted} turn(s) were scripted and all were "
        f"used, but the model was called again (call #{call_number}). The code under test "
        f"looped or took a path the script did not expect. Last message it was given: {last}"
    )
