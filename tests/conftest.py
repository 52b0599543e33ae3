"""Fixtures that start real `marimo edit --headless` servers.

Every server runs on a free loopback port with an isolated registry, config and
cache directory, is awaited by polling `/health`, and is stopped at teardown.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.tools import BaseTool

from marimo_pair_tools import MarimoClient, MarimoServer
from marimo_pair_tools.toolkit import MarimoPairToolkit

_counter = itertools.count()


def notebook_source(cells: list[str], names: list[str] | None = None) -> str:
    """The text of a marimo notebook with these cells (marimo's own code generator)."""
    from marimo._ast.cell import CellConfig
    from marimo._ast.codegen import generate_filecontents

    return generate_filecontents(
        list(cells), list(names or ["_"] * len(cells)), [CellConfig() for _ in cells]
    )


def write_notebook(path: Path, cells: list[str], names: list[str] | None = None) -> Path:
    """Write a marimo notebook file and return its path."""
    path.write_text(notebook_source(cells, names), encoding="utf-8")
    return path


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """A factory: ``start_server(path, **MarimoServer kwargs)``; all stopped at teardown."""
    servers: list[MarimoServer] = []

    def start(path: Path | str, **kwargs: object) -> MarimoServer:
        kwargs.setdefault("registry_dir", tmp_path / f"state{len(servers)}")
        server = MarimoServer(path, **kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the shared server serves; tests add their own notebooks to it."""
    return tmp_path_factory.mktemp("notebooks")


@pytest.fixture(scope="session")
def shared_server(
    shared_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MarimoServer]:
    """One directory server for the whole run (starting one costs ~1.3 s)."""
    server = MarimoServer(shared_dir, registry_dir=tmp_path_factory.mktemp("state")).start()
    yield server
    server.stop()


@pytest.fixture
def new_notebook(shared_dir: Path, shared_server: MarimoServer) -> Iterator[object]:
    """A factory: ``new_notebook(cells, names=None)`` writes a fresh notebook in the shared dir.

    Its sessions are shut down after the test: edit-mode sessions outlive their stream,
    and a worker's shared server otherwise keeps one idle kernel per test (measured: 88
    kernels, 4.2 GB, near the end of a run).
    """
    made: list[Path] = []

    def make(cells: list[str], names: list[str] | None = None) -> Path:
        path = shared_dir / f"nb_{next(_counter)}.py"
        made.append(path)
        return write_notebook(path, cells, names)

    yield make
    if made:
        _shut_down_sessions(shared_server, {str(p) for p in made})


def _shut_down_sessions(server: MarimoServer, paths: set[str]) -> None:
    """Best effort: a cleanup failure must not fail the test that just ran."""
    try:
        with server.client() as control:
            for session in control.sessions():
                if session.path in paths or str(session.path or "") in paths:
                    control._post_control(
                        "/api/home/shutdown_session",
                        "close a test's session",
                        None,
                        {"sessionId": session.key},
                    )
    except Exception as exc:  # noqa: BLE001 - cleanup only; the server may be gone
        print(f"session cleanup skipped: {exc!r}")


@pytest.fixture
def client(shared_server: MarimoServer) -> Iterator[MarimoClient]:
    """A sync client for the shared server; its headless sessions close with it."""
    with shared_server.client() as c:
        yield c


@pytest.fixture
def attached(client: MarimoClient, new_notebook: object) -> object:
    """A factory: ``attached(cells)`` → path of a new notebook with an open headless session."""

    def make(cells: list[str], names: list[str] | None = None) -> Path:
        path = new_notebook(cells, names)  # type: ignore[operator]
        client.attach(str(path))
        return path

    return make


@pytest.fixture
def setup(shared_server: MarimoServer, new_notebook: Any) -> Iterator[Any]:
    """A factory: ``setup(cells)`` → (toolkit, notebook path, cell ids) on the shared server."""
    toolkits: list[MarimoPairToolkit] = []

    def make(cells: list[str]) -> tuple[MarimoPairToolkit, Path, list[str]]:
        path = new_notebook(cells)
        toolkit = MarimoPairToolkit.from_server(shared_server, notebook=str(path))
        toolkits.append(toolkit)
        ids = [c.id for c in toolkit.session.sync().cells().cells]
        return toolkit, path, ids

    yield make
    for toolkit in toolkits:
        toolkit.close()


@pytest.fixture
def tools_for(shared_server: Any, new_notebook: Any) -> Iterator[Any]:
    """A factory: ``tools_for(cells, names=None, **toolkit options)`` → (tools by name, path, ids)."""
    made: list[MarimoPairToolkit] = []

    def make(
        cells: list[str], names: list[str] | None = None, **options: Any
    ) -> tuple[dict[str, BaseTool], Path, list[str]]:
        path = new_notebook(cells, names)
        toolkit = MarimoPairToolkit.from_server(shared_server, notebook=str(path), **options)
        made.append(toolkit)
        tools = {t.name: t for t in toolkit.get_tools()}
        # Through the tool, as a model would begin: the ledger knows the cell map.
        listing = tools["read_notebook"].invoke(
            {"type": "tool_call", "name": "read_notebook", "args": {}, "id": "map"}
        )
        ids = [c["id"] for c in listing.artifact["cells"]]
        return tools, path, ids

    yield make
    for toolkit in made:
        toolkit.close()


def tool_results(messages: list[BaseMessage]) -> list[ToolMessage]:
    """The ToolMessages of a conversation, in order."""
    return [m for m in messages if isinstance(m, ToolMessage)]


def thread(name: str = "t1") -> dict[str, Any]:
    """A run config for one checkpointed thread."""
    return {"configurable": {"thread_id": name}}
