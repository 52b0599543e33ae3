"""Secrets stay secret, remote servers need consent, and files outside the server stay shut.

All against real servers, except the URL policy, which needs no server.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from marimo_pair_tools import AsyncMarimoClient, MarimoClient, MarimoServer
from marimo_pair_tools.errors import (
    AuthenticationError,
    ConfigurationError,
    ExecuteTimeoutError,
)

from .conftest import write_notebook
from .test_faults import _descendants

SECRET = "tok-3f9a1c7e55b2d4086e1f"


def _proc_text(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def test_token_never_in_argv_or_environment_of_what_we_start(
    start_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARIMO_TOKEN", SECRET)  # must not leak into the child either
    path = write_notebook(tmp_path / "argv.py", ["a = 1"])
    server: MarimoServer = start_server(path, token=SECRET)
    with server.client() as client:
        client.attach()  # starts the kernel process too
        assert client.execute("print(1)").stdout == "1\n"
        assert server.pid is not None
        processes = [server.pid, *_descendants(server.pid)]
        assert len(processes) >= 2, "expected the server and its kernel"
        for pid in processes:
            assert SECRET.encode() not in _proc_text(pid, "cmdline"), f"pid {pid} argv"
            assert SECRET.encode() not in _proc_text(pid, "environ"), f"pid {pid} environ"
    assert SECRET not in " ".join(server.command()) and SECRET not in repr(server)


def test_token_never_in_logs_reprs_errors_or_kernel_output(
    start_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_notebook(tmp_path / "leak.py", ["b = 1"])
    server: MarimoServer = start_server(path, token=SECRET)
    seen: list[str] = []
    chunks: list[str] = []
    with server.client(probe_timeout=2.0) as client:
        session = client.attach()
        seen += [repr(client), repr(session), repr(server)]
        # The kernel sees our bearer token (request headers, screenshot metadata).
        leaks = {
            "headers": "from marimo._runtime.context import get_context\n"
            "print(get_context().request.headers)",
            "meta": "from marimo._runtime.context import get_context\n"
            "print(get_context().request.meta)",
            "value": "from marimo._runtime.context import get_context\n"
            "dict(get_context().request.headers)",
            "error": "from marimo._runtime.context import get_context\n"
            "raise RuntimeError(get_context().request.headers['authorization'])",
            # Split across two stream events: per-chunk redaction alone would miss it.
            "split": "from marimo._runtime.context import get_context\n"
            "t = get_context().request.headers['authorization'].split()[1]\n"
            "print(t[:7], end='', flush=True)\nimport time; time.sleep(0.2)\n"
            "print(t[7:], flush=True)",
        }
        results = {
            name: client.execute(code, on_chunk=lambda _c, text: chunks.append(text))
            for name, code in leaks.items()
        }
        for name, result in results.items():
            seen.append(result.model_dump_json())
            assert "[REDACTED]" in result.model_dump_json(), f"{name}: nothing to redact?"
        assert results["split"].stdout == "[REDACTED]\n"
        with pytest.raises(ExecuteTimeoutError) as timeout:
            client.execute("import time; time.sleep(5)", timeout=0.5)
        seen.append(str(timeout.value))
        client.interrupt()  # control requests carry the server token, never ours in errors
        restarted = client.restart()
        seen += [restarted.model_dump_json(), restarted.message]
        with pytest.raises(ConfigurationError) as outside:
            client.attach(f"/tmp/{SECRET}/x.py")
        seen.append(str(outside.value))
        assert "[REDACTED]" in str(outside.value)
    with (
        MarimoClient(base_url=server.url, token=SECRET + "-wrong") as wrong,
        pytest.raises(AuthenticationError) as denied,
    ):
        wrong.sessions()
    seen += [str(denied.value), repr(denied.value)]
    seen.append("".join(chunks))
    seen.append(caplog.text)
    assert caplog.text, "expected some log records to check"
    for text in seen:
        assert SECRET not in text


def test_log_tail_of_a_token_server_is_redacted(start_server: Any, tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "logtail.py", ["c = 1"])
    server: MarimoServer = start_server(path, token=SECRET)
    httpx.get(server.url + f"/api/sessions?access_token={SECRET}x")  # a wrong token in a URL
    assert SECRET not in server.log_tail(200)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3:2718",
        "http://192.168.0.10:2718",
        "http://example.com",
        "http://0.0.0.0:2718",  # bind-all is not a host to dial
        "http://127.0.0.1.nip.io:2718",
        "http://localhost.example.com:2718",
        "http://[2001:db8::1]:2718",
        "https://marimo.internal",
    ],
)
def test_non_loopback_urls_refused_without_consent(url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_remote=True"):
        MarimoClient(base_url=url)
    with pytest.raises(ConfigurationError, match="allow_remote=True"):
        AsyncMarimoClient(base_url=url)
    with MarimoClient(base_url=url, allow_remote=True) as consented:
        assert consented.base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:2718", "http://localhost:2718", "http://[::1]:2718", "http://127.9.9.9"],
)
def test_loopback_urls_accepted(url: str) -> None:
    with MarimoClient(base_url=url) as client:
        assert client.base_url == url


def test_credentials_in_url_refused() -> None:
    with pytest.raises(ConfigurationError, match="Credentials in the URL"):
        MarimoClient(base_url=f"http://user:{SECRET}@127.0.0.1:2718")


@contextlib.contextmanager
def _counting_client(url: str, sent: list[str], **kwargs: Any) -> Iterator[MarimoClient]:
    """A client whose every request is recorded (to prove nothing was sent)."""

    def hook(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.path}?{request.url.query.decode()}")

    with (
        httpx.Client(event_hooks={"request": [hook]}) as http,
        MarimoClient(base_url=url, http_client=http, **kwargs) as client,
    ):
        yield client


def test_attach_refuses_paths_outside_the_served_directory(
    shared_server: MarimoServer, shared_dir: Path, new_notebook: Any, tmp_path: Path
) -> None:
    outside = write_notebook(tmp_path / "outside.py", ["o = 1"])
    link = shared_dir / f"link_{os.getpid()}.py"
    link.symlink_to(outside)
    inside = new_notebook(["i = 1"])
    (shared_dir / "sub").mkdir(exist_ok=True)
    sent: list[str] = []
    try:
        with _counting_client(shared_server.url, sent) as client:
            for bad in (
                "/etc/passwd",
                str(outside),
                str(shared_dir / ".." / "outside.py"),
                "../outside.py",
                str(link),  # a symlink inside the root that points out of it
            ):
                with pytest.raises(ConfigurationError, match="outside the served directory"):
                    client.attach(bad)
            assert not [r for r in sent if r.startswith("GET /sse")], sent
            assert client.attach(str(inside)).path == str(inside)
            assert client.attach(inside.name).path == str(inside)  # relative to the root
    finally:
        link.unlink()

    # The client's own root narrows what the server allows.
    with _counting_client(shared_server.url, sent, root=shared_dir / "sub") as narrow:
        sent.clear()
        with pytest.raises(ConfigurationError, match="sub"):
            narrow.attach(str(new_notebook(["n = 1"])))
        assert not [r for r in sent if r.startswith("GET /sse")]


async def test_single_file_server_opens_only_its_notebook(
    start_server: Any, tmp_path: Path
) -> None:
    # marimo itself would open ANY path given as `file=` on a single-notebook server.
    (tmp_path / "served").mkdir()
    served = write_notebook(tmp_path / "served" / "only.py", ["s = 1"])
    other = write_notebook(tmp_path / "other.py", ["secret_data = 42"])
    server: MarimoServer = start_server(served)
    async with server.async_client() as aclient:
        with pytest.raises(ConfigurationError, match="the one notebook this server serves"):
            await aclient.attach(str(other))
        assert not await aclient.sessions()
        assert (await aclient.attach(str(served))).path == str(served)
        assert (await aclient.attach()).path == str(served)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.5", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("evil.localhost", False),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    from marimo_pair_tools._security import is_loopback_host

    assert is_loopback_host(host) is loopback


# ------------------------------------------------------------ URLs copied from the browser


def test_a_page_url_holds_the_server_the_notebook_and_the_token() -> None:
    from marimo_pair_tools._security import split_page_url

    page = split_page_url(f"http://127.0.0.1:2718/?file=work%2Fnb.py&access_token={SECRET}#x")
    assert page == ("http://127.0.0.1:2718", "work/nb.py", SECRET)
    assert split_page_url("http://localhost:2718/base/").server == "http://localhost:2718/base"
    assert split_page_url("http://localhost:2718").file is None


def test_a_client_given_a_page_url_keeps_no_query_and_errors_never_echo_the_token() -> None:
    with MarimoClient(base_url=f"http://127.0.0.1:2718/?file=nb.py&access_token={SECRET}") as c:
        assert c.base_url == "http://127.0.0.1:2718"
        assert SECRET not in repr(c)
    for bad in (
        f"ftp://127.0.0.1/?access_token={SECRET}",
        f"http://10.0.0.1/?access_token={SECRET}",
    ):
        with pytest.raises(ConfigurationError) as caught:
            MarimoClient(base_url=bad)
        assert SECRET not in str(caught.value)


def test_the_cli_reads_file_and_token_from_a_browser_url(start_server: Any, tmp_path: Path) -> None:
    from .test_cli import run_cli

    root = tmp_path / "served"
    root.mkdir()
    write_notebook(root / "one.py", ["who = 'one'"])
    write_notebook(root / "two.py", ["who = 'two'"])
    server: MarimoServer = start_server(root, token=SECRET)
    with server.client() as client:
        client.attach(str(root / "one.py"))
        client.attach(str(root / "two.py"))
    # What the browser's address bar shows for notebook two on a token server.
    page = f"{server.url}/?file=two.py&access_token={SECRET}"
    out = run_cli("exec", "--url", page, "-c", "print(__file__ if False else 'ran')")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ran\n"
    assert "MARIMO_TOKEN" in out.stderr and SECRET not in out.stderr + out.stdout
    code = "import marimo._code_mode as cm\nprint(cm.get_context()._document.cells[0].code)"
    which = run_cli("exec", "--url", page, "-c", code)
    assert which.stdout == "who = 'two'\n", which.stderr
    wrong = run_cli("exec", "--url", server.url + "/?file=two.py", "-c", "1")
    assert wrong.returncode == 1 and "MARIMO_TOKEN" in wrong.stderr  # no token: 401, named
