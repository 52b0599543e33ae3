"""The LangGraph server's lifespan: stop the marimo servers the graph started.

``langgraph.json`` mounts it (``"http": {"app": "./agents/lifespan.py:app"}``), so
they stop on every shutdown of the worker, a reload of ``langgraph dev`` included.
"""

from __future__ import annotations

from starlette.applications import Starlette

from marimo_pair_tools.config import lifespan

app = Starlette(lifespan=lifespan)
