"""LangChain tools and a LangGraph agent that pair-program inside a live marimo notebook."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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
from .server import MarimoServer

try:
    __version__ = version("marimo-pair-tools")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AsyncMarimoClient",
    "ExecuteResult",
    "MarimoClient",
    "MarimoPairError",
    "MarimoServer",
    "OutputData",
    "RestartResult",
    "ServerRecord",
    "SessionInfo",
    "__version__",
    "discover_servers",
]
