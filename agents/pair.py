"""The pair agent for LangGraph servers (``langgraph dev``, LangGraph Platform).

``langgraph.json`` points here. Everything comes from the environment (see
`marimo_pair_tools.config`): ``MARIMO_NOTEBOOK`` (and ``MARIMO_URL`` for a
running marimo server), ``MARIMO_PAIR_MODEL`` (a model spec), and optionally
``MARIMO_PAIR_APPROVE_DELETES`` / ``MARIMO_PAIR_INTERRUPT_ON`` for approvals.
The server supplies the checkpointer.
"""

from __future__ import annotations

from marimo_pair_tools.agent import create_pair_agent
from marimo_pair_tools.config import agent_options_from_env, model_from_env, toolkit_from_env

graph = create_pair_agent(
    model_from_env(), toolkit_from_env(), platform_persistence=True, **agent_options_from_env()
)
