"""Readable terminal output of a running pair agent (used by `marimo-pair demo` and `run`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from langchain_core.messages import AIMessage, ToolMessage

__all__ = ["StepPrinter"]


def _short(value: Any, limit: int = 90) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text_of(message: ToolMessage) -> str:
    content = message.content
    if isinstance(content, list):
        content = " ".join(
            str(block.get("text", "")) if isinstance(block, dict) else str(block)
            for block in content
        )
    return str(content)


class StepPrinter:
    """Prints each graph update as one or a few short lines, guard decisions marked.

    Counts what it saw, so callers can report totals at the end.
    """

    def __init__(self, out: TextIO | None = None, *, result_lines: int = 3) -> None:
        self.out = out or sys.stdout
        self.result_lines = result_lines
        self.refused = 0
        self.tool_calls = 0
        self.errors = 0

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def update(self, update: Mapping[str, Any]) -> None:
        """Print one ``stream_mode="updates"`` item."""
        for node, change in update.items():
            if node == "__interrupt__":
                self._print("  ⏸  waiting for a person's approval")
                continue
            for message in (
                (change or {}).get("messages", []) if isinstance(change, Mapping) else []
            ):
                self._message(node, message)

    def _message(self, node: str, message: Any) -> None:
        if isinstance(message, AIMessage):
            if message.tool_calls:
                for call in message.tool_calls:
                    args = ", ".join(f"{k}={_short(v, 60)}" for k, v in call["args"].items())
                    self._print(f"🤖 {call['name']}({args})")
            elif message.content:
                self._print(f"🤖 {_short(message.content, 400)}")
        elif isinstance(message, ToolMessage):
            text = _text_of(message)
            if node == "guard":
                self.refused += 1
                self._print(f"  🛑 guard refused {message.name}: {_short(text, 300)}")
            elif node == "approval":
                self._print(f"  🙅 {message.name}: {_short(text, 200)}")
            else:
                self.tool_calls += 1
                lines = [line for line in text.splitlines() if line.strip()][: self.result_lines]
                if message.status == "error":
                    self.errors += 1
                    self._print(f"  ✗ {message.name}: {_short(' '.join(lines), 300)}")
                else:
                    self._print(
                        f"  ✓ {message.name}: " + "\n    ".join(_short(x, 110) for x in lines)
                    )
