"""`MarimoGuardMiddleware`: the pairing policy for `langchain.agents.create_agent`.

The prebuilt `create_pair_agent` enforces the policy in graph nodes of its own;
this middleware enforces the same `guards` policy inside LangChain's agent::

    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver
    from marimo_pair_tools.middleware import MarimoGuardMiddleware

    agent = create_agent(
        model,
        tools=toolkit.get_tools(enforce=False),
        middleware=[MarimoGuardMiddleware(approve_deletes=True)],
        checkpointer=InMemorySaver(),
    )

Every call of a notebook tool passes through `wrap_tool_call`:

1. `guards.check` against the ledger in the graph state. A refused call does
   not run: the model gets an error `ToolMessage` saying what to call first, and
   the refusal is recorded in the ledger.
2. If the policy wants a person's approval (``approve_deletes``), the call
   `interrupt()`s with the request shape of LangChain's
   `HumanInTheLoopMiddleware` (one action request) and resumes with its
   decisions: ``Command(resume={"decisions": [{"type": "approve"}]})`` (or
   ``"edit"`` / ``"reject"``). A bare decision is accepted too, as in that
   middleware's ``per_call`` mode.
3. The call runs with each edit's ``expected_hash`` filled from the ledger, so
   the kernel's compare-and-swap protects a person's concurrent edit.
4. The result (the tool's artifact) or a `NotebookOperationError` (a lost
   compare-and-swap shows the current code) updates the ledger. Any
   `ToolException` (a timeout, a busy kernel too) becomes an error message.

The ledger lives in the graph state (``ledger``, reduced by
`guards.merge_ledgers`), so it survives checkpoints and parallel tool calls;
each call returns ``Command(update={"messages": [...], "ledger": ...})``.

langchain is an optional extra: ``pip install 'marimo-pair-tools[middleware]'``.
The package never imports this module itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from langchain_core.messages import ToolCall, ToolMessage
from langchain_core.tools import BaseTool, ToolException
from langgraph.config import get_config
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.types import Command, interrupt
from pydantic import BaseModel
from typing_extensions import NotRequired

from . import guards
from .agent import impact_report
from .errors import ConfigurationError
from .tools import NotebookTool, learn_from_error

# langchain is the optional `middleware` extra: fail with the install command, not a bare
# ModuleNotFoundError.
try:
    from langchain.agents.middleware import AgentMiddleware, AgentState, ToolCallRequest
    from langchain.agents.middleware.human_in_the_loop import (
        ActionRequest,
        HITLRequest,
        ReviewConfig,
    )
    from langchain.agents.middleware.types import ResponseT
except ImportError as exc:
    raise ImportError(
        "marimo_pair_tools.middleware needs langchain>=1.0 (its create_agent middleware "
        "API). Install the extra: pip install 'marimo-pair-tools[middleware]'. The prebuilt "
        "marimo_pair_tools.agent.create_pair_agent works without it."
    ) from exc

__all__ = ["MarimoGuardMiddleware", "MarimoGuardState"]

_ALLOWED_DECISIONS: list[Literal["approve", "edit", "reject"]] = ["approve", "edit", "reject"]

_Result = ToolMessage | Command[Any]


class MarimoGuardState(AgentState[ResponseT]):
    """The agent state plus the ledger of what the agent has seen of the notebook."""

    ledger: NotRequired[Annotated[guards.Ledger, guards.merge_ledgers]]


@dataclasses.dataclass(frozen=True)
class _Allowed:
    """A call the guard let through: what to run, the ledger so far, any approval asked."""

    call: ToolCall
    tool: NotebookTool
    ledger: guards.Ledger
    approval: str | None = None


class MarimoGuardMiddleware(AgentMiddleware[MarimoGuardState[Any], Any, Any]):
    """Enforce the pairing policy (read before edit, inspect before delete) in `create_agent`.

    Give the agent the toolkit's tools with ``enforce=False``: this middleware
    enforces the policy on the graph's ledger, which checkpoints keep; the
    tools' own copy would read a ledger that lives only in this process. Tools
    that are not notebook tools pass through untouched.

    Args:
        policy: the pairing rules (default: all on).
        approve_deletes: ask a person before every delete (`True`), or only before
            deletes that break other cells (``"with_descendants"``). Approvals
            pause the graph with `interrupt()`, so the agent needs a checkpointer.
            Each call asks on its own (tool calls run as separate tasks), so two
            deletes in one model turn are two interrupts, resumed by interrupt id:
            ``Command(resume={i.id: {"decisions": [...]} for i in interrupts})``.
    """

    state_schema = MarimoGuardState

    def __init__(
        self,
        *,
        policy: guards.Policy | None = None,
        approve_deletes: bool | Literal["with_descendants"] = False,
    ) -> None:
        super().__init__()
        base = policy or guards.Policy()
        self.policy = dataclasses.replace(
            base, approve_deletes=approve_deletes or base.approve_deletes
        )

    def before_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """Refuse to start when approvals are on but the agent has no checkpointer.

        `create_agent` gives a middleware no look at its checkpointer while it builds
        the graph, so this is checked as each run starts, before the model is asked
        anything; without it, the first delete would fail deep inside LangGraph.
        """
        if self.policy.approve_deletes:
            configurable = get_config().get("configurable") or {}
            if configurable.get(CONFIG_KEY_CHECKPOINTER) is None:
                raise ConfigurationError(
                    "MarimoGuardMiddleware(approve_deletes=...) pauses the agent with "
                    "interrupt(), which needs a checkpointer: pass checkpointer="
                    "InMemorySaver() (or a persistent one) to create_agent."
                )
        return None

    async def abefore_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """See `before_agent`."""
        return self.before_agent(state, runtime)

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], _Result],
    ) -> _Result:
        """Check the call against the ledger, ask for approval if needed, run it, learn."""
        tool = _notebook_tool(request)
        if tool is None:
            return handler(request)
        step = self._guard(request, tool)
        if isinstance(step, Command):
            return step
        if step.approval is not None:
            notebook = step.tool.session.notebook
            codes = notebook.codes_of(guards.deleted_cells(step.call)) if notebook else {}
            step = self._review(request, step, codes)
            if isinstance(step, Command):
                return step
        run = _prepared(request, step)
        try:
            result = handler(run)
        except ToolException as exc:  # a refused change, code that timed out, a busy kernel
            return _failed(run.tool_call, step.ledger, exc)
        return _learned(run.tool_call, step.ledger, result)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[_Result]],
    ) -> _Result:
        """Async `wrap_tool_call`: the same steps; only the I/O is awaited."""
        tool = _notebook_tool(request)
        if tool is None:
            return await handler(request)
        step = self._guard(request, tool)
        if isinstance(step, Command):
            return step
        if step.approval is not None:
            anotebook = step.tool.session.anotebook
            cells = guards.deleted_cells(step.call)
            codes = await anotebook.codes_of(cells) if anotebook else {}
            step = self._review(request, step, codes)
            if isinstance(step, Command):
                return step
        run = _prepared(request, step)
        try:
            result = await handler(run)
        except ToolException as exc:  # a refused change, code that timed out, a busy kernel
            return _failed(run.tool_call, step.ledger, exc)
        return _learned(run.tool_call, step.ledger, result)

    # ----------------------------------------------------------------- shared steps

    def _guard(self, request: ToolCallRequest, tool: NotebookTool) -> _Allowed | Command[Any]:
        """`check` the call; a refusal becomes an error message plus a ledger event."""
        call = request.tool_call
        ledger = _state_ledger(request.state)
        decision, recorded = guards.check_and_record(
            self.policy, ledger, call["name"], call["args"]
        )
        if not decision.allowed:
            return _reply(_error(call, decision.reason), ledger, recorded)
        approval = decision.reason if decision.needs_approval else None
        return _Allowed(call=call, tool=tool, ledger=recorded, approval=approval)

    def _review(
        self, request: ToolCallRequest, step: _Allowed, codes: Mapping[str, str]
    ) -> _Allowed | Command[Any]:
        """Pause for a person's decision (`interrupt`) and apply it to the call.

        On resume LangGraph re-runs the tool call up to here; `_guard` and this
        request depend only on the state, so they come out the same.
        """
        call = step.call
        item = {"call": call, "approval": step.approval}
        hitl = HITLRequest(
            action_requests=[
                ActionRequest(
                    name=call["name"],
                    args=call["args"],
                    description=impact_report(item, step.ledger, codes.get),
                )
            ],
            review_configs=[
                ReviewConfig(action_name=call["name"], allowed_decisions=[*_ALLOWED_DECISIONS])
            ],
        )
        decision = _one_decision(interrupt(hitl))
        kind = decision.get("type")
        if kind == "approve":
            return dataclasses.replace(step, approval=None)
        if kind == "reject":
            why = decision.get("message") or "A person rejected this call."
            message = _error(call, f"Rejected by the person: {why} Nothing was changed.")
            return _reply(message, step.ledger, step.ledger)
        if kind == "edit":
            return self._edited(request, step, decision.get("edited_action"))
        raise ConfigurationError(
            f"Unknown decision type {kind!r} for {call['name']}; use one of "
            f"{_ALLOWED_DECISIONS} as in HumanInTheLoopMiddleware."
        )

    def _edited(
        self, request: ToolCallRequest, step: _Allowed, edited: object
    ) -> _Allowed | Command[Any]:
        """The person's version of the call, checked by the policy like the model's.

        The person wrote it, so it needs no second approval; it must still
        respect what the agent has read (a person editing the args of a delete
        cannot make the agent skip `inspect_graph` on another cell).
        """
        if not isinstance(edited, Mapping):
            raise ConfigurationError(
                'An "edit" decision needs "edited_action": {"name": ..., "args": {...}}.'
            )
        name = str(edited.get("name", step.call["name"]))
        args = dict(edited.get("args", step.call["args"]))
        call = ToolCall(name=name, args=args, id=step.call["id"], type="tool_call")
        tool = step.tool if name == step.call["name"] else _tool_named(request, name)
        decision, ledger = guards.check_and_record(self.policy, step.ledger, name, args)
        if not decision.allowed:
            return _reply(_error(call, decision.reason), step.ledger, ledger)
        return _Allowed(call=call, tool=tool, ledger=ledger)


# ---------------------------------------------------------------------- helpers


def _notebook_tool(request: ToolCallRequest) -> NotebookTool | None:
    """The notebook tool this request runs, or None for any other tool."""
    tool = request.tool
    if not isinstance(tool, NotebookTool):
        return None
    if tool.session.policy is not None:
        raise ConfigurationError(
            f"Tool {tool.name!r} enforces the policy itself, on a ledger outside the graph. "
            "With MarimoGuardMiddleware, build the tools with toolkit.get_tools(enforce=False)."
        )
    return tool


def _tool_named(request: ToolCallRequest, name: str) -> NotebookTool:
    """The notebook tool an edit decision switched to (it must be one the agent has)."""
    tools: Iterable[BaseTool] = request.runtime.tools if request.runtime else []
    for tool in tools:
        if tool.name == name and isinstance(tool, NotebookTool):
            return tool
    raise ConfigurationError(
        f"The edit decision names tool {name!r}, which is not a notebook tool of this agent."
    )


def _state_ledger(state: Any) -> guards.Ledger:
    """The ledger in the graph state (a dict after a JSON round trip is validated)."""
    value = state.get("ledger") if isinstance(state, Mapping) else getattr(state, "ledger", None)
    return guards.merge_ledgers(None, value)


def _one_decision(response: object) -> Mapping[str, Any]:
    """The single decision in a resume value: ``{"decisions": [d]}`` or a bare ``d``."""
    if isinstance(response, Mapping):
        if "decisions" in response:
            decisions = list(response["decisions"] or [])
            if len(decisions) == 1 and isinstance(decisions[0], Mapping):
                return decisions[0]
            raise ConfigurationError(
                f"Resume this approval with one decision, {{'decisions': [{{'type': "
                f"'approve'}}]}}; got {len(decisions)}. Several pending approvals are "
                "answered one by one, keyed by interrupt id."
            )
        if "type" in response:
            return response
    raise ConfigurationError(
        "Resume an approval with Command(resume={'decisions': [{'type': 'approve'}]}) "
        "(or 'edit' with 'edited_action', or 'reject' with an optional 'message')."
    )


def _prepared(request: ToolCallRequest, step: _Allowed) -> ToolCallRequest:
    """The request to run: edits carry the read hash, and the tool raises its errors.

    The toolkit's tools turn a `NotebookOperationError` into an error message
    themselves (``handle_tool_error=True``), which would hide the current code a
    lost compare-and-swap carries; a copy that raises lets `_failed` learn it.
    """
    args = guards.with_read_hashes(step.ledger, step.call["name"], step.call["args"])
    call = ToolCall(name=step.call["name"], args=args, id=step.call["id"], type="tool_call")
    tool = step.tool.model_copy(update={"handle_tool_error": False})
    return request.override(tool_call=call, tool=tool)


def _error(call: ToolCall, text: str) -> ToolMessage:
    return ToolMessage(
        content=text, tool_call_id=str(call["id"]), name=call["name"], status="error"
    )


def _reply(message: ToolMessage, before: guards.Ledger, after: guards.Ledger) -> Command[Any]:
    """The tool call's answer, with the ledger when it changed."""
    update: dict[str, Any] = {"messages": [message]}
    if after is not before:
        update["ledger"] = after
    return Command(update=update)


def _failed(call: ToolCall, ledger: guards.Ledger, exc: ToolException) -> Command[Any]:
    """A failed call the model can act on; a refusal's shown current code counts as a read."""
    learned = learn_from_error(ledger, call["name"], call["args"], exc)
    return _reply(_error(call, str(exc)), ledger, learned)


def _learned(call: ToolCall, ledger: guards.Ledger, result: _Result) -> _Result:
    """Update the ledger from the tool's result and send both to the graph."""
    if isinstance(result, ToolMessage):
        return _reply(result, ledger, _learn(call, ledger, result))
    update = result.update
    if not isinstance(update, Mapping):
        return result
    messages = update.get("messages")
    found = [
        m
        for m in (messages if isinstance(messages, list) else [])
        if isinstance(m, ToolMessage) and m.tool_call_id == call["id"]
    ]
    learned = _learn(call, ledger, found[0]) if found else ledger
    if learned is ledger:
        return result
    merged = guards.merge_ledgers(update.get("ledger"), learned)
    return dataclasses.replace(result, update={**update, "ledger": merged})


def _learn(call: ToolCall, ledger: guards.Ledger, message: ToolMessage) -> guards.Ledger:
    if message.status == "error":
        return ledger
    artifact = message.artifact
    if isinstance(artifact, BaseModel):
        artifact = artifact.model_dump(mode="json")
    if not isinstance(artifact, Mapping):
        return ledger
    return guards.record_tool_result(ledger, call["name"], call["args"], artifact)
