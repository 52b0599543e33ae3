"""`MarimoPairToolkit`: every notebook tool, bound to one notebook on one server.

The toolkit owns the plumbing the model must never see (server URL, session,
token) and the ledger the pairing policy reads; its tools share both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, BaseToolkit
from pydantic import ConfigDict, Field

from . import guards
from ._security import split_page_url, token_for
from .client import AsyncMarimoClient, MarimoClient
from .discovery import discover_servers
from .errors import SessionNotFoundError
from .joining import DEFAULT_RUN_WAIT, Pairing, ensure_session, join
from .notebook import AsyncNotebook, Notebook
from .presence import Presence
from .server import MarimoServer
from .tools import (
    ApplyChangesTool,
    ApprovalCallback,
    CreateCellTool,
    DeleteCellTool,
    EditCellTool,
    ExecuteCodeTool,
    GetErrorsTool,
    GetVariablesTool,
    InspectGraphTool,
    InstallPackagesTool,
    InterruptKernelTool,
    ListNotebooksTool,
    MoveCellTool,
    NotebookTool,
    OutputLimits,
    PairSession,
    ReadCellTool,
    ReadNotebookTool,
    RunCellTool,
    SetUIValueTool,
)

__all__ = ["TOOL_CLASSES", "MarimoPairToolkit"]

TOOL_CLASSES: tuple[type[NotebookTool], ...] = (
    ListNotebooksTool,
    ReadNotebookTool,
    ReadCellTool,
    InspectGraphTool,
    ExecuteCodeTool,
    CreateCellTool,
    EditCellTool,
    DeleteCellTool,
    MoveCellTool,
    RunCellTool,
    ApplyChangesTool,
    InstallPackagesTool,
    SetUIValueTool,
    GetErrorsTool,
    GetVariablesTool,
    InterruptKernelTool,
)
"""Every tool, in the order a model should learn them."""


class MarimoPairToolkit(BaseToolkit):
    """Tools to pair-program in one live marimo notebook.

    Build it for a notebook file (`for_notebook`: joins the session that has it
    open, or opens one), from a URL, a `MarimoServer`, or discovery; the tools
    then work on that notebook with the pairing policy on (read before edit,
    inspect before delete) unless ``enforce=False``. Every constructor that may
    open a session first checks that no other registered server has the file open.

    Example:
        >>> toolkit = MarimoPairToolkit.for_notebook("nb.py")
        >>> tools = toolkit.get_tools()
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: PairSession = Field(exclude=True)
    pairing: Pairing | None = Field(default=None, exclude=True)
    """What `for_notebook` joined or started; `close` stops a server it started."""

    @classmethod
    def from_clients(
        cls,
        client: MarimoClient | None,
        aclient: AsyncMarimoClient | None = None,
        *,
        notebook: str | None = None,
        enforce: bool = True,
        policy: guards.Policy | None = None,
        limits: OutputLimits | None = None,
        approve: ApprovalCallback | None = None,
        timeout: float | None = None,
        presence: bool | Presence = True,
        recheck_scratchpad: bool = False,
    ) -> MarimoPairToolkit:
        """Bind existing clients (either may be None for sync-only or async-only use).

        With ``presence`` (the default) every tool call first asks the kernel what
        changed that the agent did not do, and puts a digest of it in front of its
        result; it also shows the person a toast of what the agent is doing. That
        costs one short request per call; ``presence=False`` turns it off, and a
        `Presence` sets what is announced.

        With ``recheck_scratchpad``, each ``execute_code`` also reads the server's own
        copy of the notebook (a kiosk view, nothing runs in the kernel) and the file's
        digest before and after the code (two short requests more), so its artifact's
        ``evidence`` shows changes the kernel never sees or that the code hid from the
        kernel's report. The eval turns it on.
        """
        # verify=False: the apply program already re-reads the notebook and checks each
        # change in the same request; a second request per change doubles the latency.
        session = PairSession(
            notebook=Notebook(client, notebook, timeout=timeout, verify=False) if client else None,
            anotebook=(
                AsyncNotebook(aclient, notebook, timeout=timeout, verify=False) if aclient else None
            ),
            policy=(policy or guards.Policy()) if enforce else None,
            limits=limits or OutputLimits(),
            approve=approve,
            presence=(
                presence if isinstance(presence, Presence) else Presence() if presence else None
            ),
            recheck_scratchpad=recheck_scratchpad,
        )
        return cls(session=session)

    @classmethod
    def for_notebook(
        cls,
        notebook: str | Path,
        *,
        url: str | None = None,
        token: str | None = None,
        allow_remote: bool = False,
        registry_dir: str | Path | None = None,
        start: bool = True,
        run: bool = True,
        **options: Any,
    ) -> MarimoPairToolkit:
        """Tools for a notebook file, in the session that already has it open.

        Looks up the running servers (marimo's registry, then each server's
        sessions, matched by file) and joins the one that has the notebook open,
        as a person's browser tab does. Only when none has it does it start a
        server (`close` stops it) with a headless session that runs the notebook
        like a tab opening it. See `marimo_pair_tools.joining.join`.

        Args:
            notebook: the notebook file.
            url: use this server (a URL copied from the browser works: its
                ``?file=`` and ``?access_token=`` are read) instead of looking one up.
            token: that server's token (default: ``MARIMO_TOKEN``).
            allow_remote: permit a non-loopback ``url``.
            registry_dir: marimo's registry (default: this user's).
            start: start a server when nobody has the notebook open (else raise).
            run: run a session opened here, as a person's tab would.
            **options: passed to `from_clients` (enforce, policy, limits, approve, timeout,
                presence, recheck_scratchpad).
        """
        if url is not None:
            page = split_page_url(url)
            url, token = page.server, token_for(page, token)
        pairing = join(
            notebook,
            url=url,
            token=token,
            allow_remote=allow_remote,
            registry_dir=registry_dir,
            start=start,
            run=run,
        )
        try:
            toolkit = cls.from_clients(
                pairing.client, pairing.async_client(), notebook=pairing.notebook, **options
            )
        except BaseException:
            pairing.close()
            raise
        toolkit.pairing = pairing
        return toolkit

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        notebook: str | None = None,
        token: str | None = None,
        allow_remote: bool = False,
        attach: bool = False,
        run: bool = True,
        **options: Any,
    ) -> MarimoPairToolkit:
        """Tools for the notebook served at ``url`` (token from ``MARIMO_TOKEN`` by default).

        Args:
            url: the marimo server; a URL copied from the browser works (its
                ``?file=`` names the notebook, its ``?access_token=`` the token).
            notebook: the notebook file, when several are open.
            token: the server token, if it has one.
            allow_remote: permit a non-loopback server.
            attach: open a headless session first if none is open for ``notebook``
                (refused when another registered server has the file open).
            run: run a session opened that way, as a person's tab would.
            **options: passed to `from_clients` (enforce, policy, limits, approve, timeout,
                presence, recheck_scratchpad).
        """
        page = split_page_url(url)
        notebook = notebook or page.file
        token = token_for(page, token)
        client = MarimoClient(base_url=page.server, token=token, allow_remote=allow_remote)
        aclient = AsyncMarimoClient(base_url=page.server, token=token, allow_remote=allow_remote)
        return cls._bound(client, aclient, notebook=notebook, attach=attach, run=run, **options)

    @classmethod
    def _bound(
        cls,
        client: MarimoClient,
        aclient: AsyncMarimoClient,
        *,
        notebook: str | None,
        attach: bool,
        run: bool = True,
        registry_dir: str | Path | None = None,
        **options: Any,
    ) -> MarimoPairToolkit:
        if attach:
            try:
                ensure_session(
                    client, notebook, run=run, run_wait=DEFAULT_RUN_WAIT, registry_dir=registry_dir
                )
            except BaseException:
                client.close()  # nothing else holds it; the async pool has no socket yet
                raise
        return cls.from_clients(client, aclient, notebook=notebook, **options)

    @classmethod
    def from_server(
        cls,
        server: MarimoServer,
        *,
        notebook: str | None = None,
        attach: bool = True,
        run: bool = True,
        **options: Any,
    ) -> MarimoPairToolkit:
        """Tools for a notebook on a `MarimoServer` this process started.

        With ``attach``, the notebook's session is joined if one is open, else one
        is opened headless (and, with ``run``, run as a person's tab would run it).
        """
        if notebook is None and server.path.is_file():
            notebook = str(server.path)
        return cls._bound(
            server.client(),
            server.async_client(),
            notebook=notebook,
            attach=attach,
            run=run,
            registry_dir=server.registry_dir,
            **options,
        )

    @classmethod
    def from_discovery(
        cls,
        *,
        notebook: str | None = None,
        registry_dir: str | Path | None = None,
        **options: Any,
    ) -> MarimoPairToolkit:
        """Tools for a notebook open on a running `--no-token` server.

        With ``notebook``: the server that has that file open, whichever it is (see
        `for_notebook`; nothing is started). Without: the one notebook open on the
        one running server.

        Args:
            notebook: the notebook file.
            registry_dir: marimo's registry to read (default: this user's).
            **options: as for `from_url`.
        """
        if notebook is not None:
            return cls.for_notebook(notebook, registry_dir=registry_dir, start=False, **options)
        servers = discover_servers(registry_dir)
        if len(servers) != 1:
            listing = ", ".join(s.url for s in servers) or "none"
            raise SessionNotFoundError(
                f"Discovery needs exactly one running marimo server; found {listing}. "
                "Use MarimoPairToolkit.from_url(...) instead."
            )
        return cls.from_url(servers[0].url, notebook=notebook, **options)

    @property
    def ledger(self) -> guards.Ledger:
        """What the agent has seen so far (reads, descendant checks, refusals)."""
        return self.session.ledger

    def get_tools(
        self, *, include: Sequence[str] | None = None, enforce: bool | None = None
    ) -> list[BaseTool]:
        """The tools, optionally only those named in ``include``.

        Args:
            include: tool names to keep (default: all).
            enforce: override the policy for these tools only (the prebuilt agent passes
                False: its guard node enforces the same policy on the graph's ledger).
        """
        session = self.session
        if enforce is not None and enforce != (session.policy is not None):
            session = PairSession(
                notebook=session.notebook,
                anotebook=session.anotebook,
                policy=guards.Policy() if enforce else None,
                limits=session.limits,
                approve=session.approve,
                presence=session.presence,
                recheck_scratchpad=session.recheck_scratchpad,
            )
        # Each subclass defines its name and description; only the base lacks them.
        tools: list[BaseTool] = [
            tool_cls(session=session)  # type: ignore[call-arg]
            for tool_cls in TOOL_CLASSES
        ]
        if include is not None:
            unknown = set(include) - {t.name for t in tools}
            if unknown:
                raise ValueError(f"Unknown tool names: {sorted(unknown)}")
            tools = [t for t in tools if t.name in include]
        return tools

    def close(self) -> None:
        """Close both clients, and stop a server `for_notebook` started (from sync code)."""
        if self.session.notebook is not None:
            self.session.notebook.client.close()
        if self.session.anotebook is not None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                # No loop runs here: close the async pool on a fresh one. Its sockets
                # may belong to a loop that is gone; closing them is still safe.
                with contextlib.suppress(RuntimeError):
                    asyncio.run(self.session.anotebook.client.aclose())
        if self.pairing is not None:
            self.pairing.close()

    async def aclose(self) -> None:
        """Close both clients, and stop a server `for_notebook` started."""
        if self.session.notebook is not None:
            self.session.notebook.client.close()
        if self.session.anotebook is not None:
            await self.session.anotebook.client.aclose()
        if self.pairing is not None:
            await asyncio.to_thread(self.pairing.close)
