"""Find running marimo servers from marimo's own registry of `--no-token` servers.

A registry file left by a killed server is stale. The registered server is live
when its pid runs or its ``/health`` answers; an entry is deleted only when both
say dead (a pid that cannot be checked is not dead). Every entry that is not live
is reported with a reason: returned with ``include_unhealthy=True`` and logged on
this module's logger (warning; info for a stale entry that was removed).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from ._security import connect_host

__all__ = ["ServerRecord", "default_registry_dir", "discover_servers"]

logger = logging.getLogger(__name__)

_HOST = re.compile(r"[A-Za-z0-9._:%\[\]-]*")  # a name or address, nothing that bends the URL

Liveness = Literal["live", "unresponsive", "unknown", "stale", "invalid"]
"""``live``: pid runs or ``/health`` answers. ``unresponsive``: the pid runs but
nothing answers, or what answers is provably another server. ``unknown``: nothing
answers and the pid cannot be checked (kept). ``stale``: pid gone and nothing
answers (deleted when ``cleanup``). ``invalid``: unreadable registry file."""


class ServerRecord(BaseModel):
    """One registry entry and what we found out about it.

    ``reason`` says why an entry is not live (and, for a live one, any doubt).
    """

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
    """True/False when we can tell, None when we cannot (no pid, or the OS won't say)."""
    if pid is None or pid <= 0:
        return None
    if sys.platform == "win32":
        return _windows_pid_runs(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # runs, as another user
    except OSError:
        return None
    return True


def _windows_pid_runs(pid: int) -> bool | None:  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        error = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
        if error == 87:  # ERROR_INVALID_PARAMETER: no such process
            return False
        return True if error == 5 else None  # ERROR_ACCESS_DENIED: runs, as another user
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return None
        return bool(code.value == 259)  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _healthy(client: httpx.Client, url: str) -> bool:
    try:
        response = client.get(url + "/health")
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "healthy" in response.text


def _other_server(client: httpx.Client, url: str, version: object) -> str | None:
    """Why the server answering at ``url`` is provably not the registered one, else None."""
    try:
        response = client.get(url + "/api/version")
    except httpx.HTTPError:
        return None  # /health answered; nothing more to go on
    if response.status_code in (401, 403):
        return "it requires a token, and marimo registers only --no-token servers"
    answered = response.text.strip()
    if response.status_code == 200 and isinstance(version, str) and answered != version:
        return f"it runs marimo {answered[:40]!r}, the entry says {version!r}"
    return None


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

    Every entry that is not live is logged with its reason on this module's logger,
    so none disappears silently even when it is not returned.

    Args:
        registry_dir: where to look; defaults to marimo's registry for this user.
        cleanup: delete entries whose pid is gone and whose URL does not answer
            (never one whose pid cannot be checked).
        include_unhealthy: also return the entries that are not live (``status``
            ``unresponsive``, ``unknown``, ``stale``, ``invalid``, with a ``reason``).
        health_timeout: seconds for each ``/health`` probe.

    Returns:
        Live servers (and, when asked, the others), newest first.
    """
    directory = Path(registry_dir) if registry_dir is not None else default_registry_dir()
    try:
        with os.scandir(directory) as scan:
            files = sorted(Path(e.path) for e in scan if e.name.endswith(".json"))
    except FileNotFoundError:
        logger.debug("no marimo registry at %s", directory)
        return []
    except OSError as exc:
        logger.warning("marimo registry %s is unreadable, skipped: %s", directory, exc)
        return []
    records: list[ServerRecord] = []
    if not files:
        return records  # and no HTTP client to build (its TLS setup costs ~45 ms)
    with httpx.Client(timeout=health_timeout) as client:
        for path in files:
            record = _inspect(path, client, cleanup=cleanup)
            if record is None:
                continue
            _log(record, cleanup=cleanup)
            if record.status == "live" or include_unhealthy:
                records.append(record)
    records.sort(key=lambda r: str(r.started_at or ""), reverse=True)
    return records


def _log(record: ServerRecord, *, cleanup: bool) -> None:
    where = record.registry_file
    if record.status == "live":
        if record.reason:
            logger.info("marimo server %s (%s) is live: %s", record.url, where, record.reason)
    elif record.status == "stale" and cleanup and not Path(where).exists():
        logger.info("removed stale marimo registry entry %s: %s", where, record.reason)
    else:
        logger.warning(
            "marimo registry entry %s is %s, skipped: %s", where, record.status, record.reason
        )


def _inspect(path: Path, client: httpx.Client, *, cleanup: bool) -> ServerRecord | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entry, dict):
            raise ValueError("not a JSON object")
        port, pid = entry.get("port"), entry.get("pid")
        if type(port) is not int or not 0 < port < 65536:
            raise ValueError(f"bad port {port!r}")
        if pid is not None and type(pid) is not int:
            raise ValueError(f"bad pid {pid!r}")
        host = entry.get("host", "127.0.0.1")
        if not isinstance(host, str) or not _HOST.fullmatch(host):
            raise ValueError(f"bad host {host!r}")
        url = _url(entry)
        httpx.URL(url)
    except FileNotFoundError:
        return None  # the server shut down (and deregistered) while we looked
    except (OSError, ValueError, httpx.InvalidURL) as exc:
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
    version, started_at = entry.get("version"), entry.get("started_at")
    common: dict[str, Any] = {
        "server_id": str(entry.get("server_id") or path.stem),
        "url": url,
        "version": version if isinstance(version, str) else None,
        "started_at": started_at if isinstance(started_at, str) else None,
        "pid": pid,
        "registry_file": str(path),
    }
    runs = _pid_runs(pid)
    if _healthy(client, url):
        if runs is not False:
            return ServerRecord(**common, status="live")
        other = _other_server(client, url, version)
        if other is not None:
            # The registered process is gone and what answers is provably not it.
            # Keep the entry (the port answers) but never offer it as this server.
            return ServerRecord(
                **common,
                status="unresponsive",
                reason=f"pid {pid} is gone and {url} answers, but a different server holds "
                f"the port: {other}",
            )
        return ServerRecord(
            **common,
            status="live",
            reason=f"pid {pid} is not visible here but {url} answers (another pid "
            "namespace, e.g. a container?)",
        )
    if runs:
        return ServerRecord(
            **common,
            status="unresponsive",
            reason=f"pid {pid} runs but {url}/health does not answer (starting, hung, or "
            "not a marimo server)",
        )
    if runs is None:
        why = "the entry has no pid" if pid is None else f"pid {pid} cannot be checked here"
        return ServerRecord(
            **common,
            status="unknown",
            reason=f"{url}/health does not answer and {why}: kept, since only one check "
            "says dead (delete the file by hand if the server is gone)",
        )
    if cleanup:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            return ServerRecord(
                **common,
                status="stale",
                reason=f"pid {pid} is gone and nothing answers; removing it failed: {exc}",
            )
    return ServerRecord(**common, status="stale", reason=f"pid {pid} is gone and nothing answers")
