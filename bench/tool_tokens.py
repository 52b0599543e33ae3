"""o200k tokens of what a model reads before the first message: tool specs and the prompt.

Each tool's spec is what `convert_to_openai_tool` sends (name, description,
parameters) as compact JSON. Two columns per tool, both measured in this run:

- ``pydantic``: the same tool with its input model's plain pydantic schema
  (titles, defaults, $defs), as LangChain would send it without `schemas.portable`;
- ``sent``: the portable schema the tools really send.

Descriptions are today's in both columns, so the ratio is what the schema shaping
saves; the shorter descriptions and prompt are in the totals against the budget.
The baseline before issue 15 (commit aa08615) measured 3,898 tokens of tools plus
494 of prompt = 4,392 with this same script's counting.

Usage: python bench/tool_tokens.py
"""

from __future__ import annotations

import json

from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from marimo_pair_tools._tokens import count_tokens, tool_spec
from marimo_pair_tools.agent import DEFAULT_SYSTEM_PROMPT
from marimo_pair_tools.toolkit import TOOL_CLASSES
from marimo_pair_tools.tools import PairSession

BUDGET = 2_400


def _pydantic_spec(tool: object) -> str:
    """The spec with the input model's plain pydantic JSON schema."""
    model = tool.args_schema  # type: ignore[attr-defined]
    raw = BaseModel.model_json_schema.__func__(model)  # type: ignore[attr-defined]
    wrapped = convert_to_openai_tool(
        {"name": tool.name, "description": tool.description, "parameters": raw}  # type: ignore[attr-defined]
    )
    return json.dumps(wrapped, separators=(",", ":"), ensure_ascii=False)


def main() -> None:
    tools = [cls(session=PairSession(None, None)) for cls in TOOL_CLASSES]
    print(f"{'tool':<18} {'pydantic':>9} {'sent':>6} {'ratio':>6}")
    raw_total = sent_total = 0
    for tool in tools:
        raw = count_tokens(_pydantic_spec(tool))
        sent = count_tokens(tool_spec(tool))
        raw_total += raw
        sent_total += sent
        print(f"{tool.name:<18} {raw:>9,} {sent:>6,} {sent / raw:>6.2f}")
    prompt = count_tokens(DEFAULT_SYSTEM_PROMPT)
    print(f"{'tools':<18} {raw_total:>9,} {sent_total:>6,} {sent_total / raw_total:>6.2f}")
    print(f"{'system prompt':<18} {'':>9} {prompt:>6,}")
    total = sent_total + prompt
    verdict = "within" if total <= BUDGET else "OVER"
    print(f"total sent: {total:,} o200k tokens ({verdict} the {BUDGET:,} budget)")


if __name__ == "__main__":
    main()
