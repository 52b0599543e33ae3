"""Work in the session that already has a notebook open: join, never fork.

One notebook file open in two kernels is two documents: whichever saves last
erases the other's cells on disk, and neither person nor agent sees the other's
work. So every entry point given a notebook file first asks marimo's registry of
running servers, and each live server's ``/api/sessions``, who has that file open
(matched by the file's real path), and joins that session. It opens a headless
session only when nobody has the file open, starts a server only when no server
has it, and refuses to open the file on one server while another has it open.

A session opened here has no person's tab, so nothing would run its cells:
`MarimoClient.run_all` runs it as marimo's page does when a person opens it. A
session joined is never re-run. Once it ran, our headless stream is released
(marimo keeps the session): a person who then opens the notebook becomes its
editor at once, rather than a reader who must press "Take over".

Servers started with a token never register, so they are invisible here: name
them with ``url=`` (their token from ``MARIMO_TOKEN``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ._security import is_loopback_host
from .client import AsyncMarimoClient, MarimoClient, SessionInfo
from .discovery import discover_servers
from .errors import (
    AmbiguousSessionError,
    ConfigurationError,
    MarimoPairError,
    SessionNotFoundError,
)
from .server import MarimoServer

__all__ = ["OpenSession", "Pairing", "ensure_session", "find_open", "join"]

logger = logging.getLogger(__name__)

DEFAULT_RUN_WAIT = 600.0
"""Seconds to wait for the first run of a notebook in a session opened here."""


@dataclass(frozen=True)
class OpenSession:
    """A session that has the notebook open, on a registered server."""

    url: str
    session: SessionInfo


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.realpath(os.path.expanduser(os.fspath(path))))


def find_open(
    notebook: str | os.PathLike[str],
    *,
    registry_dir: str | os.PathLike[str] | None = None,
    exclude_url: str | None = None,
) -> list[OpenSession]:
    """The sessions of live registered servers that have ``notebook`` open.

    Matched by real path (symlinks resolved), so ``./nb.py``, an absolute path
    and a link to the file are one notebook. A server that cannot be asked (it
    stopped meanwhile, or refuses) is skipped and logged.

    Args:
        notebook: the notebook file, as this machine sees it.
        registry_dir: marimo's registry to read (default: this user's).
        exclude_url: a server not to ask (the one the caller already uses).
    """
    want = _real(notebook)
    found: list[OpenSession] = []
    for record in discover_servers(registry_dir):
        if exclude_url is not None and record.url.rstrip("/") == exclude_url.rstrip("/"):
            continue
        try:
            with MarimoClient(base_url=record.url, check_version=False, timeout=10.0) as client:
                sessions = client.sessions()
        except MarimoPairError as exc:
            logger.info("could not list the sessions of %s: %s", record.url, exc)
            continue
        for session in sessions:
            where = session.path or session.filename
            if where and os.path.isabs(where) and _real(where) == want:
                found.append(OpenSession(url=record.url, session=session))
    return found


def _fork_error(notebook: str, here: str, elsewhere: list[OpenSession]) -> ConfigurationError:
    urls = ", ".join(sorted({o.url for o in elsewhere}))
    return ConfigurationError(
        f"{notebook} is already open on {urls}. Opening it on {here} too would run a second "
        "kernel on the same file, and whichever saved last would erase the other's cells. "
        f"Work in that session instead (e.g. --url {elsewhere[0].url})."
    )


def ensure_session(
    client: MarimoClient,
    notebook: str | None,
    *,
    run: bool = True,
    run_wait: float = DEFAULT_RUN_WAIT,
    registry_dir: str | os.PathLike[str] | None = None,
) -> tuple[SessionInfo, bool]:
    """The notebook's session on ``client``'s server: joined if open, else opened here.

    Before opening one, the registry is asked whether another server has the file
    open; if so, nothing is opened (that would fork the notebook).

    Args:
        client: a client for the server to work on.
        notebook: the notebook file (None on a single-notebook server).
        run: run a session opened here as a person's tab would (`MarimoClient.run_all`).
        run_wait: seconds to wait for that run.
        registry_dir: marimo's registry to check (default: this user's).

    Returns:
        The session, and whether it was opened here.

    Raises:
        ConfigurationError: another registered server has the notebook open.
    """
    try:
        return client.resolve_session(notebook, refresh=True), False
    except (SessionNotFoundError, AmbiguousSessionError):
        pass
    if notebook is not None:
        elsewhere = find_open(notebook, registry_dir=registry_dir, exclude_url=client.base_url)
        if elsewhere:
            raise _fork_error(notebook, client.base_url, elsewhere)
    session = client.attach(notebook)
    opened = client.opened(session)
    if opened:
        if run and not client.run_all(session, wait=run_wait):
            logger.warning(
                "the notebook's first run did not finish within %g s; it goes on, and the "
                "kernel is busy until it ends",
                run_wait,
            )
        # marimo keeps the session; a person who opens the notebook now resumes it as
        # its editor instead of joining as a reader behind our stream.
        client.release(session)
    return session, opened


@dataclass
class Pairing:
    """The session of one notebook this process works in, and what it started for it.

    Close it when done: that releases a headless session opened here (marimo keeps
    the session and its kernel) and stops a server started here.
    """

    url: str
    notebook: str
    """How the notebook is named to the server (an absolute path)."""
    session: SessionInfo
    client: MarimoClient
    token: str | None = field(default=None, repr=False)
    allow_remote: bool = False
    server: MarimoServer | None = None
    """The server started for this pairing, if no running one had the notebook open."""
    opened: bool = False
    """Whether the session was opened here (else it was joined)."""

    def async_client(self) -> AsyncMarimoClient:
        """A new async client for the same server (and token)."""
        return AsyncMarimoClient(
            base_url=self.url, token=self.token, allow_remote=self.allow_remote
        )

    def describe(self) -> str:
        """One sentence on what was joined or started, for a person."""
        if self.server is not None:
            return f"started marimo at {self.url} for {self.notebook} (nobody had it open)"
        if self.opened:
            return f"opened {self.notebook} on {self.url} (no session had it open)"
        return f"joined the session that has {self.notebook} open at {self.url}"

    def close(self) -> None:
        """Release the client; stop the server if this pairing started it."""
        try:
            self.client.close()
        finally:
            if self.server is not None:
                self.server.stop()


def join(
    notebook: str | os.PathLike[str],
    *,
    url: str | None = None,
    token: str | None = None,
    allow_remote: bool = False,
    registry_dir: str | os.PathLike[str] | None = None,
    start: bool = True,
    run: bool = True,
    run_wait: float = DEFAULT_RUN_WAIT,
    port: int | None = None,
    die_with_parent: bool = False,
) -> Pairing:
    """Join the session that has ``notebook`` open, or open one (starting marimo if needed).

    Without ``url``: a registered server that has the file open is joined; with
    none, a ``marimo edit`` server is started on the file (registered, so that
    every other entry point finds and joins it). With ``url``: that server's
    session is joined, or one is opened there, unless another server has the file.

    Args:
        notebook: the notebook file.
        url: a server to use instead of looking one up.
        token: that server's token (default: ``MARIMO_TOKEN``).
        allow_remote: permit a non-loopback ``url``.
        registry_dir: marimo's registry (``…/marimo/servers``; default: this user's).
        start: start a server when nobody has the notebook open (else raise).
        run: run a session opened here as a person's tab would.
        run_wait: seconds to wait for that first run.
        port: the port of a server started here (default: a free one).
        die_with_parent: a server started here ends when this process dies, even by
            SIGKILL (Linux only; `MarimoServer`). For commands, from their main thread.

    Raises:
        ConfigurationError: the file does not exist, or two servers have it open,
            or ``url`` is not the server that has it open.
        SessionNotFoundError: nobody has it open and ``start`` is False.
    """
    if url is None:
        path = Path(notebook).expanduser().resolve()
        if not path.is_file():
            raise ConfigurationError(f"No such notebook file: {path}")
        name = str(path)
        holders = find_open(path, registry_dir=registry_dir)
        urls = sorted({o.url for o in holders})
        if len(urls) > 1:
            raise ConfigurationError(
                f"{name} is open on several marimo servers ({', '.join(urls)}): each runs "
                "its own kernel, and their saves overwrite each other. Close all but one, "
                "or pick one with --url."
            )
        if urls:
            client = MarimoClient(base_url=urls[0])
            try:
                session = client.resolve_session(name)
            except BaseException:
                client.close()
                raise
            return Pairing(url=client.base_url, notebook=name, session=session, client=client)
        serving = _servers_of(path)
        registered = {r.pid: r.url for r in discover_servers(registry_dir) if r.pid is not None}
        for pid, _port in serving:
            if pid in registered:  # a registered server of this very file, with no session yet
                return join(
                    path, url=registered[pid], registry_dir=registry_dir, run=run, run_wait=run_wait
                )
        if serving:
            pid, listening = serving[0]
            where = f"http://127.0.0.1:{listening}" if listening else "its URL"
            raise ConfigurationError(
                f"A marimo server that did not register (pid {pid}, {where}; started with a "
                f"token?) serves {name}. A server of our own on the same file would fork it. "
                "Pass its URL as copied from the browser (--url, with ?access_token=) or set "
                "MARIMO_TOKEN and pass --url."
            )
        if not start:
            raise SessionNotFoundError(
                f"No running marimo server has {name} open. Open it (`marimo edit "
                f"--no-token {path.name}`, or `marimo-pair open {path.name}`) and retry."
            )
        return _start(
            path,
            registry_dir=registry_dir,
            run=run,
            run_wait=run_wait,
            port=port,
            die_with_parent=die_with_parent,
        )
    client = MarimoClient(base_url=url, token=token, allow_remote=allow_remote)
    name = os.fspath(notebook)
    local = Path(name).expanduser()
    if is_loopback_host(httpx.URL(client.base_url).host) and local.is_file():
        name = str(local.resolve())  # the server shares this machine's paths
    try:
        session, opened = ensure_session(
            client, name, run=run, run_wait=run_wait, registry_dir=registry_dir
        )
    except BaseException:
        client.close()
        raise
    return Pairing(
        url=client.base_url,
        notebook=name,
        session=session,
        client=client,
        token=token,
        allow_remote=allow_remote,
        opened=opened,
    )


def _servers_of(path: Path) -> list[tuple[int, int | None]]:
    """Local ``marimo edit`` processes started on exactly this file: (pid, listening port).

    A server started with a token (marimo's default) never registers, so the registry
    cannot say that it serves the file; its command line can. Best effort: needs
    psutil (marimo depends on it) and permission to read other processes.
    """
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - marimo brings psutil
        return []
    want = _real(path)
    found: list[tuple[int, int | None]] = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        argv = process.info.get("cmdline") or []
        if "edit" not in argv or not any("marimo" in os.path.basename(a) for a in argv[:3]):
            continue
        cwd = process.info.get("cwd") or "/"
        after = argv[argv.index("edit") + 1 :]
        if not any(not a.startswith("-") and _real(os.path.join(cwd, a)) == want for a in after):
            continue
        port = None
        with contextlib.suppress(psutil.Error):
            port = next(
                (
                    c.laddr.port
                    for c in process.net_connections(kind="tcp")
                    if c.status == psutil.CONN_LISTEN
                ),
                None,
            )
        found.append((int(process.info["pid"]), port))
    return found


def _state_dir(registry_dir: str | os.PathLike[str] | None) -> Path | None:
    """The ``XDG_STATE_HOME`` whose marimo registry is ``registry_dir``."""
    if registry_dir is None:
        return None
    directory = Path(registry_dir)
    if directory.name != "servers" or directory.parent.name != "marimo":
        raise ConfigurationError(
            f"registry_dir {str(directory)!r} is not a marimo registry (…/marimo/servers): "
            "a server started here would register elsewhere and nobody would find it."
        )
    return directory.parent.parent


def _start(
    path: Path,
    *,
    registry_dir: str | os.PathLike[str] | None,
    run: bool,
    run_wait: float,
    port: int | None,
    die_with_parent: bool = False,
) -> Pairing:
    # isolate=False: the person's marimo configuration, and the registry every
    # other entry point reads, so that they join this server rather than fork it.
    server = MarimoServer(
        path,
        isolate=False,
        registry_dir=_state_dir(registry_dir),
        port=port,
        die_with_parent=die_with_parent,
    )
    server.start()
    client = server.client()
    try:
        session, opened = ensure_session(
            client, None, run=run, run_wait=run_wait, registry_dir=registry_dir
        )
    except BaseException:
        client.close()
        server.stop()
        raise
    return Pairing(
        url=server.url,
        notebook=str(path),
        session=session,
        client=client,
        server=server,
        opened=opened,
    )
