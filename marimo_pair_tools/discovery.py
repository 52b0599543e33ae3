"""Find running marimo servers from marimo's own registry of `--no-token` servers.

A registry file left by a killed server is stale. A server is live when its pid
runs or its ``/health`` answers; an entry is deleted only when both say dead, and
an entry whose process runs but answers nowhere is reported with a reason.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from ._security import connect_host

__all__ = ["ServerRecord", "default_registry_dir", "discover_servers"]

logger = logging.getLogger(__name__)

Liveness = Literal["live", "unresponsive", "stale", "invalid"]


class ServerRecord(BaseModel):
    """One registry entry and what we found out about it."""

    model_config = ConfigDict(frozen=True)

    server_id: str
    url: str
    version: str | None
    started_at: datetime | str | None
    pid: int | None
    status: Liveness
    reason: str | None = None
    registry_file: str


def default_registry_dir() -> Path:
    """marimo's registry directory on this platform."""
    if sys.platform == "win32":
        return Path(os.environ.get("USERPROFILE", str(Path.home()))) / ".marimo" / "servers"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "marimo" / "servers"


def _pid_runs(pid: int | None) -> bool | None:
    """True/False when we can tell, None when the platform won't say."""
    if pid is None or pid <= 0:
        return None
    if sys.platform == "win32":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # runs, as another user
    return True


def _healthy(client: httpx.Client, url: str) -> bool:
    try:
        response = client.get(url + "/health")
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "healthy" in response.text


def _url(entry: dict[str, object]) -> str:
    host = connect_host(str(entry.get("host", "127.0.0.1")))
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    base = str(entry.get("base_url") or "").rstrip("/")
    return f"http://{host}:{entry['port']}{base}"


def discover_servers(
    registry_dir: str | os.PathLike[str] | None = None,
    *,
    cleanup: bool = True,
    include_unhealthy: bool = False,
    health_timeout: float = 1.0,
) -> list[ServerRecord]:
    """List the marimo servers registered on this machine.

    Args:
        registry_dir: where to look; defaults to marimo's registry for this user.
        cleanup: delete entries whose pid is gone and whose URL does not answer.
        include_unhealthy: also return stale, unresponsive and malformed entries
            (with ``status`` and ``reason``), e.g. for diagnostics.
        health_timeout: seconds for each ``/health`` probe.

    Returns:
        Live servers (and, when asked, the others), newest first.
    """
    directory = Path(registry_dir) if registry_dir is not None else default_registry_dir()
    records: list[ServerRecord] = []
    try:
        files: Iterable[Path] = sorted(directory.glob("*.json"))
    except OSError as exc:
        logger.info("marimo registry %s unreadable: %s", directory, exc)
        return []
    with httpx.Client(timeout=health_timeout) as client:
        for path in files:
            record = _inspect(path, client, cleanup=cleanup)
            if record.status == "live" or include_unhealthy:
                records.append(record)
    records.sort(key=lambda r: str(r.started_at or ""), reverse=True)
    return records


def _inspect(path: Path, client: httpx.Client, *, cleanup: bool) -> ServerRecord:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entry, dict) or "port" not in entry:
            raise ValueError("no port")
        url = _url(entry)
        pid = int(entry["pid"]) if entry.get("pid") is not None else None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return ServerRecord(
            server_id=path.stem,
            url="",
            version=None,
            started_at=None,
            pid=None,
            status="invalid",
            reason=f"unreadable registry file: {exc}",
            registry_file=str(path),
        )
    common: dict[str, Any] = {
        "server_id": str(entry.get("server_id") or path.stem),
        "url": url,
        "version": entry.get("version"),
        "started_at": entry.get("started_at"),
        "pid": pid,
        "registry_file": str(path),
    }
    runs = _pid_runs(pid)
    if _healthy(client, url):
        if runs is False:
            # Something answers, but not the registered process: another server may
            # have taken the port. Report it rather than mistake it for this entry.
            return ServerRecord(
                **common,
                status="unresponsive",
                reason=f"pid {pid} is gone but {url} answers: a different server holds the port",
            )
        return ServerRecord(**common, status="live")
    if runs:
        return ServerRecord(
            **common,
            status="unresponsive",
            reason=f"pid {pid} runs but {url}/health does not answer (starting, hung, or "
            "not a marimo server)",
        )
    if cleanup:
        try:
            path.unlink()
        except OSError as exc:
            logger.info("could not remove stale registry entry %s: %s", path, exc)
    return ServerRecord(**common, status="stale", reason="pid gone and nothing answers")
