"""Text that cannot be sent (a lone surrogate) is a clear tool error; nothing is sent.

A lone surrogate (``"\\ud800"``) is a Python ``str`` that UTF-8 cannot encode; models
emit one when they cut an emoji in two. Unchecked, it crashed the request deep in
httpx (``UnicodeEncodeError``, not a tool error), or, escaped inside a kernel call's
JSON, reached the kernel and failed there. All against a real server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import ToolException

from marimo_pair_tools import MarimoClient, MarimoServer
from marimo_pair_tools.agent import create_pair_agent
from marimo_pair_tools.errors import UnencodableTextError
from marimo_pair_tools.testing import ScriptedChatModel

from .conftest import tool_results

LONE = "\ud83d"  # the first half of 😀


@contextmanager
def _recording(url: str) -> Iterator[tuple[MarimoClient, list[bytes]]]:
    """A client whose every execute body is recorded, to prove nothing was sent."""
    bodies: list[bytes] = []

    def hook(request: httpx.Request) -> None:
        if request.url.path == "/api/kernel/execute":
            bodies.append(request.content)

    with (
        httpx.Client(event_hooks={"request": [hook]}) as http,
        MarimoClient(base_url=url, http_client=http) as client,
    ):
        yield client, bodies


def test_execute_refuses_a_lone_surrogate_before_sending(
    shared_server: MarimoServer, attached: Any
) -> None:
    path = str(attached(["e = 1"]))
    with _recording(shared_server.url) as (client, bodies):
        assert client.execute("print('warm')", notebook=path).success
        sent = len(bodies)
        with pytest.raises(UnencodableTextError) as info:
            client.execute(f"x = 1\nprint('smile {LONE}')", notebook=path)
        assert len(bodies) == sent, "the code was sent"
        message = str(info.value)
        assert isinstance(info.value, ToolException)
        assert "The code" in message and "line 2, column 14" in message
        assert "\\ud83d" in message and "Nothing was sent" in message
        message.encode("utf-8")  # the error itself can travel to a model
        assert client.execute("print('still fine')", notebook=path).stdout == "still fine\n"


async def test_async_execute_refuses_a_lone_surrogate(
    shared_server: MarimoServer, attached: Any
) -> None:
    path = str(attached(["e = 1"]))
    async with shared_server.async_client() as aclient:
        with pytest.raises(UnencodableTextError, match="lone surrogate"):
            await aclient.execute(f"'{LONE}'", notebook=path)
        assert (await aclient.execute("print(1)", notebook=path)).stdout == "1\n"


def test_every_tool_argument_is_checked_and_the_file_is_untouched(setup: Any) -> None:
    toolkit, path, [cell] = setup(["x = 1"])
    tools = {t.name: t for t in toolkit.get_tools()}
    before = path.read_bytes()

    def call(tool: str, args: dict[str, Any]) -> ToolMessage:
        message = tools[tool].invoke({"type": "tool_call", "name": tool, "args": args, "id": "c"})
        assert isinstance(message, ToolMessage)
        return message

    for name, args, where in [
        ("execute_code", {"code": f"print('{LONE}')"}, "The code"),
        ("create_cell", {"code": f"y = '{LONE}'"}, "changes[0].code"),
        ("read_cell", {"cell": f"x{LONE}"}, "cell"),
        ("set_ui_value", {"name": "slider", "value": [LONE]}, "value[0]"),
    ]:
        result = call(name, args)
        assert result.status == "error", (name, result.content)
        assert "lone surrogate" in str(result.content) and where in str(result.content), (
            name,
            result.content,
        )
    assert path.read_bytes() == before
    assert call("read_cell", {"cell": cell}).status == "success"


def test_the_agent_run_goes_on_after_a_lone_surrogate(setup: Any) -> None:
    toolkit, path, _ = setup(["x = 1"])
    model = ScriptedChatModel(
        [
            [{"name": "create_cell", "args": {"code": f"smile = '{LONE}'"}}],
            [{"name": "create_cell", "args": {"code": "smile = '😀'"}}],
            "Added the cell.",
        ]
    )
    result = create_pair_agent(model, toolkit).invoke({"messages": [HumanMessage("add a smile")]})
    refused, created = tool_results(result["messages"])
    assert refused.status == "error" and "lone surrogate" in str(refused.content)
    assert created.status != "error"
    assert model.remaining == 0
    assert "smile = '😀'" in path.read_text(encoding="utf-8")
