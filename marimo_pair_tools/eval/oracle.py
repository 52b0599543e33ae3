"""Building blocks for reference solutions: scripted turns that call the real tools.

A task's oracle is a list of `ScriptedChatModel` turns. It solves the task the
way a careful agent would, through the same tools and guards: read a cell
before editing it (and quote the ``code_hash`` that read returned), inspect
the graph before deleting. Helpers that need a value from an earlier tool
result (a hash, a new cell's id) return a callable turn that looks it up in
the messages the model is given.

Example:
    >>> oracle = [
    ...     read("clean"),
    ...     edit("clean", old="totl", new="total"),
    ...     say("Fixed the typo in `clean`."),
    ... ]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, ToolMessage
from pydantic import BaseModel

from .. import guards
from ..testing import ScriptError, StaticTurn, Turn

__all__ = [
    "apply",
    "call",
    "create",
    "delete",
    "edit",
    "errors",
    "execute",
    "inspect",
    "last_artifact",
    "move",
    "read",
    "read_notebook",
    "run",
    "say",
    "set_ui",
    "variables",
]


def _artifact(message: ToolMessage) -> dict[str, Any]:
    artifact = message.artifact
    if isinstance(artifact, BaseModel):
        artifact = artifact.model_dump(mode="json")
    return artifact if isinstance(artifact, dict) else {}


def last_artifact(
    messages: Sequence[BaseMessage],
    tool: str,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """The artifact of the latest successful ``tool`` result that satisfies ``where``.

    Raises:
        ScriptError: there is none (the script and the run disagree).
    """
    for message in reversed(messages):
        if isinstance(message, ToolMessage) and message.name == tool and message.status != "error":
            artifact = _artifact(message)
            if where is None or where(artifact):
                return artifact
    raise ScriptError(f"The oracle expected an earlier successful {tool} result; there is none.")


def _is_cell(cell: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda art: cell in (art.get("id"), art.get("name"))


def read_hash(messages: Sequence[BaseMessage], cell: str) -> str:
    """The ``code_hash`` the latest ``read_cell`` of ``cell`` returned."""
    return str(last_artifact(messages, guards.READ_CELL, _is_cell(cell))["code_hash"])


def call(tool: str, **args: Any) -> StaticTurn:
    """One tool call with fixed arguments."""
    return [{"name": tool, "args": args}]


def say(text: str) -> StaticTurn:
    """A final (or intermediate) text reply."""
    return text


def read_notebook() -> StaticTurn:
    """List the cells."""
    return call(guards.LIST_CELLS)


def read(cell: str) -> StaticTurn:
    """Read one cell in full (what an edit must be based on)."""
    return call(guards.READ_CELL, cell=cell)


def inspect(cell: str | None = None) -> StaticTurn:
    """Inspect the graph (with ``cell``: its descendants, before a delete)."""
    return call(guards.INSPECT_GRAPH, cell=cell) if cell else call(guards.INSPECT_GRAPH)


def edit(
    cell: str,
    code: str | None = None,
    *,
    old: str | None = None,
    new: str | None = None,
    replace_all: bool = False,
    run: bool = True,
) -> Turn:
    """Edit ``cell`` (whole ``code``, or ``old`` -> ``new``), quoting the hash last read."""

    def turn(messages: list[BaseMessage]) -> StaticTurn:
        args: dict[str, Any] = {"cell": cell, "expected_hash": read_hash(messages, cell)}
        if code is not None:
            args["code"] = code
        else:
            args.update(old=old, new=new, replace_all=replace_all)
        if not run:
            args["run"] = False
        return call(guards.EDIT_CELL, **args)

    return turn


def create(
    code: str,
    *,
    after: str | None = None,
    before: str | None = None,
    name: str | None = None,
    run: bool = True,
) -> StaticTurn:
    """Create a cell."""
    args: dict[str, Any] = {"code": code}
    for key, value in (("after", after), ("before", before), ("name", name)):
        if value is not None:
            args[key] = value
    if not run:
        args["run"] = False
    return call(guards.CREATE_CELL, **args)


def delete(cell: str, *, acknowledge: Sequence[str] | bool = ()) -> Turn:
    """Delete ``cell``; acknowledge the given descendants (``True``: those inspect listed)."""
    if acknowledge is True:

        def turn(messages: list[BaseMessage]) -> StaticTurn:
            graph = last_artifact(
                messages,
                guards.INSPECT_GRAPH,
                lambda art: (
                    isinstance(art.get("focus"), dict)
                    and cell in (art["focus"].get("cell_id"), art["focus"].get("name"))
                ),
            )
            descendants = list(graph["focus"].get("descendants") or [])
            return call(guards.DELETE_CELL, cell=cell, acknowledge_descendants=descendants)

        return turn
    if acknowledge:
        return call(guards.DELETE_CELL, cell=cell, acknowledge_descendants=list(acknowledge))
    return call(guards.DELETE_CELL, cell=cell)


def move(cell: str, *, before: str | None = None, after: str | None = None) -> StaticTurn:
    """Move a cell before or after another."""
    args: dict[str, Any] = {"cell": cell}
    if before is not None:
        args["before"] = before
    if after is not None:
        args["after"] = after
    return call(guards.MOVE_CELL, **args)


def run(cell: str) -> StaticTurn:
    """Run a cell."""
    return call(guards.RUN_CELL, cell=cell)


def set_ui(name: str, value: Any) -> StaticTurn:
    """Set a ``mo.ui`` element's value."""
    return call("set_ui_value", name=name, value=value)


def execute(code: str) -> StaticTurn:
    """Run code in the scratchpad (explore; nothing is saved)."""
    return call("execute_code", code=code)


def errors() -> StaticTurn:
    """List the notebook's errors."""
    return call("get_errors")


def variables(*names: str) -> StaticTurn:
    """Look at kernel variables."""
    return call("get_variables", names=list(names)) if names else call("get_variables")


def apply(changes: Sequence[Mapping[str, Any]]) -> Turn:
    """An atomic batch; each edit/replace change quotes the hash last read for its cell."""

    def turn(messages: list[BaseMessage]) -> StaticTurn:
        filled = []
        for original in changes:
            change = dict(original)
            if change.get("op") in {guards.OP_EDIT, guards.OP_REPLACE} and not change.get(
                "expected_hash"
            ):
                change["expected_hash"] = read_hash(messages, str(change["cell"]))
            filled.append(change)
        return call(guards.APPLY_CHANGES, changes=filled)

    return turn
