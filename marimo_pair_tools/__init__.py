"""LangChain tools and a LangGraph agent that pair-program inside a live marimo notebook."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import create_pair_agent
    from .client import (
        AsyncMarimoClient,
        ExecuteResult,
        MarimoClient,
        OutputData,
        RestartResult,
        SessionInfo,
    )
    from .discovery import ServerRecord, discover_servers
    from .errors import MarimoPairError
    from .middleware import MarimoGuardMiddleware
    from .server import MarimoServer
    from .toolkit import MarimoPairToolkit

__all__ = [
    "AsyncMarimoClient",
    "ExecuteResult",
    "MarimoClient",
    "MarimoGuardMiddleware",
    "MarimoPairError",
    "MarimoPairToolkit",
    "MarimoServer",
    "OutputData",
    "RestartResult",
    "ServerRecord",
    "SessionInfo",
    "__version__",
    "create_pair_agent",
    "discover_servers",
]

# Every name loads on first use, so that `marimo-pair discover` imports only what
# discovery needs (a fresh process is what a person's or an agent's shell pays for).
_LAZY = {
    "AsyncMarimoClient": "client",
    "ExecuteResult": "client",
    "MarimoClient": "client",
    "OutputData": "client",
    "RestartResult": "client",
    "SessionInfo": "client",
    "ServerRecord": "discovery",
    "discover_servers": "discovery",
    "MarimoPairError": "errors",
    "MarimoServer": "server",
    "MarimoPairToolkit": "toolkit",
    "create_pair_agent": "agent",
    # The `middleware` extra (langchain): importing it without the extra says what to install.
    "MarimoGuardMiddleware": "middleware",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # importlib.metadata alone costs ~35 ms.
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("marimo-pair-tools")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            found = "0.0.0"
        globals()["__version__"] = found
        return found
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
