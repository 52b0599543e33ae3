"""Counting what a model reads, in o200k tokens: tool specs and the system prompt.

The tokenizer is tiktoken's ``o200k_base`` (the `test`/`dev` extra). tiktoken
downloads its table on first use; here the copy marimo ships (for its copilot)
is read instead, and checked against tiktoken's own hash of that table.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = ["count_tokens", "o200k", "tool_spec", "tool_spec_tokens"]


_O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
"""tiktoken's hash of the o200k_base table file (`tiktoken_ext.openai_public`)."""


@functools.cache
def o200k() -> Any:
    """The o200k_base encoding, from marimo's bundled table when there is one."""
    import tiktoken
    from tiktoken_ext import openai_public

    ranks = _bundled_ranks()
    if ranks is None:  # pragma: no cover - marimo absent: tiktoken downloads its table
        return tiktoken.get_encoding("o200k_base")
    real = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda *_args, **_kwargs: ranks
    try:
        return tiktoken.Encoding(**openai_public.o200k_base())
    finally:
        openai_public.load_tiktoken_bpe = real


def _bundled_ranks() -> dict[bytes, int] | None:
    """marimo's copy of the table (tokens in rank order, each followed by 0xFF), verified.

    The one-byte token 0xFF reads as two empty pieces. The ranks are checked by
    rebuilding tiktoken's own file and comparing its hash.
    """
    try:
        import marimo
    except ImportError:  # pragma: no cover
        return None
    path = Path(marimo.__file__).parent / "_lsp/copilot/resources/o200k_base.tiktoken.noindex"
    if not path.is_file():  # pragma: no cover
        return None
    pieces = path.read_bytes().split(b"\xff")
    ff = pieces.index(b"")
    tokens = [*pieces[:ff], b"\xff", *pieces[ff + 2 :]]
    if tokens and tokens[-1] == b"":
        tokens.pop()
    as_file = b"".join(
        base64.b64encode(token) + b" " + str(rank).encode() + b"\n"
        for rank, token in enumerate(tokens)
    )
    if hashlib.sha256(as_file).hexdigest() != _O200K_SHA256:  # pragma: no cover
        return None
    return {token: rank for rank, token in enumerate(tokens)}


def count_tokens(text: str) -> int:
    """o200k tokens in ``text``."""
    return len(o200k().encode(text, disallowed_special=()))


def tool_spec(tool: BaseTool) -> str:
    """The tool as OpenAI's request carries it (``{"type": "function", "function": {name,
    description, parameters}}``), as compact JSON: the wrapper is sent too, so it counts."""
    return json.dumps(convert_to_openai_tool(tool), separators=(",", ":"), ensure_ascii=False)


def tool_spec_tokens(tools: Sequence[BaseTool]) -> dict[str, int]:
    """Tokens of each tool's spec, by tool name."""
    return {tool.name: count_tokens(tool_spec(tool)) for tool in tools}
