"""Secrets stay secret, remote servers need consent, and files outside the server stay shut.

All against real servers, except the URL policy, which needs no server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
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


SNOOP = """
import json, os
from marimo._runtime.context import get_context
request = get_context().request
seen = {
    "headers": dict(request.headers),
    "cookies": dict(getattr(request, "cookies", {}) or {}),
    "meta": dict(request.meta),
    "query": {k: list(v) for k, v in dict(request.query_params).items()},
    "user": getattr(request, "user", None),
    "env": {k: v for k, v in os.environ.items() if "TOKEN" in k or "MARIMO" in k},
}
print(json.dumps(seen, default=str))
seen
"""
"""Kernel code that prints every request header, cookie and meta value it can see."""


def _server_secrets(url: str) -> dict[str, str]:
    """What a token server hands out to a bearer: its session cookie and skew token.

    Fetched here independently of the client under test. The cookie's payload (before
    the first dot) is the same for every cookie this server issues for the token.
    """
    response = httpx.get(url + "/", headers={"Authorization": f"Bearer {SECRET}"})
    cookie = next(iter(response.cookies.values()))
    skew = re.search(r'data-token="([^"]*)"', response.text)
    assert skew is not None and cookie
    return {"token": SECRET, "cookie": cookie.split(".")[0], "skew": skew.group(1)}


def test_kernel_code_printing_every_header_and_cookie_learns_no_secret(
    start_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_notebook(tmp_path / "snoop.py", ["a = 1"])
    server: MarimoServer = start_server(path, token=SECRET)
    secrets = _server_secrets(server.url)
    chunks: list[str] = []
    with server.client() as client:
        client.attach(str(path))  # checks the path with a control request: skew token held
        assert client._server_token == secrets["skew"]
        result = client.execute(SNOOP, on_chunk=lambda _c, text: chunks.append(text))
        seen = result.model_dump_json() + "".join(chunks) + caplog.text + repr(client)
        assert '"x-pair-client"' in result.stdout, "the program did not print the headers"
        assert "[REDACTED]" in result.stdout  # the bearer token was there, and was cut out
        # marimo's session cookie authenticates by itself: the client never keeps it.
        assert f"session_{server.port}" not in result.stdout
        assert not client._http.cookies
    for name, value in secrets.items():
        assert value not in seen, f"the {name} reached the caller"


def test_a_callers_own_client_credentials_are_redacted_too(
    start_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server: MarimoServer = start_server(
        write_notebook(tmp_path / "own.py", ["a = 1"]), token=SECRET
    )
    api_key = "key-5d1e0c9b7a3f"
    proxy_cookie = "proxy-7c2b9e41d0aa"
    with (
        httpx.Client(  # keeps every cookie the server sets, like most clients
            headers={"X-Api-Key": api_key}, cookies={"proxy_session": proxy_cookie}
        ) as http,
        MarimoClient(base_url=server.url, token=SECRET, http_client=http) as client,
    ):
        client.attach()
        client.execute("1")  # the server has now set its session cookie in this jar
        marimo_cookie = next(v for k, v in http.cookies.items() if k.startswith("session_"))
        result = client.execute(SNOOP)
        with pytest.raises(ExecuteTimeoutError) as timeout:
            client.execute("import time; time.sleep(5)", timeout=0.5)
    seen = result.model_dump_json() + str(timeout.value) + caplog.text
    assert "x-api-key" in result.stdout and "proxy_session" in result.stdout
    for name, value in [
        ("token", SECRET),
        ("api key", api_key),
        ("proxy cookie", proxy_cookie),
        ("marimo's session cookie", marimo_cookie),
    ]:
        assert value not in seen, f"the {name} reached the caller"


def test_a_checkpointed_agent_run_holds_no_secret(start_server: Any, tmp_path: Path) -> None:
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from marimo_pair_tools.agent import create_pair_agent
    from marimo_pair_tools.testing import ScriptedChatModel
    from marimo_pair_tools.toolkit import MarimoPairToolkit

    path = write_notebook(tmp_path / "agent.py", ["a = 1"])
    server: MarimoServer = start_server(path, token=SECRET)
    secrets = _server_secrets(server.url)
    # The URL as marimo prints it: the token rides in it, and must not go anywhere else.
    toolkit = MarimoPairToolkit.from_url(f"{server.url}?access_token={SECRET}", attach=True)
    try:
        saver = InMemorySaver()
        # execute_code refuses marimo's internals (the fence); a cell the agent creates
        # runs for our request too, and its console comes back in the tool result.
        model = ScriptedChatModel(
            [[{"name": "create_cell", "args": {"code": SNOOP}}], "I looked at the request."]
        )
        agent = create_pair_agent(model, toolkit, checkpointer=saver)
        config = {"configurable": {"thread_id": "snoop"}}
        result = agent.invoke({"messages": [HumanMessage("what do you see?")]}, config)
        stored = repr(list(saver.list(config))) + repr(result) + repr(toolkit)
    finally:
        toolkit.close()
    assert "x-pair-client" in stored and "[REDACTED]" in stored
    for name, value in secrets.items():
        assert value not in stored, f"the {name} reached a checkpoint"


def test_a_url_with_access_token_and_file_is_taken_apart(
    shared_server: MarimoServer,
    new_notebook: Any,
    start_server: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    served = write_notebook(tmp_path / "tokurl.py", ["t = 1"])
    server: MarimoServer = start_server(served, token=SECRET)
    url = f"{server.url}/?access_token={SECRET}"
    with MarimoClient(base_url=url) as client:
        assert client.has_token and client.base_url == server.url
        assert SECRET not in repr(client)
        client.attach()
        assert client.execute("print('in')").stdout == "in\n"
    with MarimoClient(base_url=url, token=SECRET) as same:  # the same token twice is fine
        assert same.has_token
    with pytest.raises(ConfigurationError, match="different one") as conflict:
        MarimoClient(base_url=url, token="another-token")
    with pytest.raises(ConfigurationError, match="different one"):
        AsyncMarimoClient(base_url=url, token="another-token")
    with pytest.raises(ConfigurationError) as bad_scheme:
        MarimoClient(base_url=f"ftp://127.0.0.1/?access_token={SECRET}")
    for text in (str(conflict.value), str(bad_scheme.value), caplog.text):
        assert SECRET not in text and "another-token" not in text

    # ?file= names the notebook on a directory server: calls that name none use it.
    notebook = new_notebook(["from_url = 1"])
    with MarimoClient(base_url=f"{shared_server.url}/?file={notebook}") as client:
        assert client.default_notebook == str(notebook)
        assert client.attach().path == str(notebook)
        assert client.execute("print(from_url if 'from_url' in globals() else 'ok')").success
        assert client.resolve_session().path == str(notebook)


def test_a_token_that_cannot_be_a_header_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError, match="HTTP header") as info:
        MarimoClient(base_url="http://127.0.0.1:2718", token="line\nbreak-secret")
    assert "break-secret" not in str(info.value)


# ---------------------------------------------------------- credentials nobody gave us

_SIGNED = "eyJhY2Nlc3NfdG9rZW4iOiAiYWJjIn0=.Z1xYzA.c2lnbmF0dXJlLXZhbHVlLXh5eg"
"""The shape of marimo's (Starlette's) session cookie: base64 JSON, timestamp, signature."""


@pytest.mark.parametrize(
    "text",
    [
        f"{{'session_2718': '{_SIGNED}'}}",  # request.cookies as a dict's repr
        f'{{\\"session_2718\\": \\"{_SIGNED}\\"}}',  # the same inside a JSON string
        "{'cookie': 'session_2718=opaque-value-123456; theme=dark'}",  # request.headers
        "{'Set-Cookie': 'proxy_auth=0123456789abcdef; Path=/'}",
        "Cookie: proxy_auth=0123456789abcdef; theme=dark",  # a raw header line
        f"the cookie alone: {_SIGNED}",  # a signed token by its shape (a JWT too)
        "session_2718_base=0123456789abcdefXYZ",  # behind a base URL
    ],
)
def test_credentials_are_recognised_by_their_shape(text: str) -> None:
    """A person's session cookie, kept by a cell they ran, is nothing our requests carry:
    it is recognised by its name or shape. The name stays, the value goes."""
    from marimo_pair_tools._security import REDACTED, redact_all

    redacted = redact_all(text, [])
    assert REDACTED in redacted
    for secret in (_SIGNED, "opaque-value-123456", "0123456789abcdef"):
        assert secret not in redacted, redacted


@pytest.mark.parametrize(
    "text",
    [
        "cookie = load_cookie(path)",
        "cookie: str = 'x'",
        "f(session_1=x)",
        "session_id = 'abc'",
        "headers = {'Cookie': 'a=b'}",
        "print('eyJ is how base64 of {\"... starts')",
    ],
)
def test_code_that_only_mentions_cookies_is_left_alone(text: str) -> None:
    """Shapes are narrow: code that names cookies or sessions reaches the model intact
    (a redacted line of code would be edited back into the notebook as ``[REDACTED]``)."""
    from marimo_pair_tools._security import redact_all

    assert redact_all(text, []) == text


def test_a_streamed_cookie_split_anywhere_is_still_redacted() -> None:
    """The stream redactor holds an unfinished line that starts a credential, so a cookie
    cut in two by chunking (at any place) never shows in part."""
    from marimo_pair_tools.client import _StreamRedactor

    line = f"x {{'host': 'h', 'cookie': 'session_2718={_SIGNED}'}} y\nnext line\n"
    for cut in range(1, len(line)):
        redactor = _StreamRedactor(["tok-abcdefgh"])
        shown = redactor.feed(line[:cut]) + redactor.feed(line[cut:]) + redactor.flush()
        assert _SIGNED[:12] not in shown and "[REDACTED]" in shown, (cut, shown)
        assert shown.endswith("next line\n")


def test_every_header_but_a_short_allow_list_is_a_credential() -> None:
    """Identity-aware proxies put credentials in headers with no telltale name."""
    from marimo_pair_tools._security import credential_values

    headers = httpx.Headers(
        {
            "Cf-Access-Jwt-Assertion": "eyJhbGciOi.eyJlbWFpbCI.c2lnbmF0",
            "X-Amzn-Oidc-Data": "oidc-data-0123456789",
            "X-Team": "short",  # under eight characters: no secret
            "Accept": "text/event-stream",
            "User-Agent": "python-httpx/0.28",
            "Host": "127.0.0.1:2718",
            "Authorization": "Basic YWxpY2U6cHc=",
        }
    )
    found = credential_values(headers, {})
    assert found == {
        "eyJhbGciOi.eyJlbWFpbCI.c2lnbmF0",
        "oidc-data-0123456789",
        "Basic YWxpY2U6cHc=",
        "YWxpY2U6cHc=",
    }


class _SigningAuth(httpx.Auth):
    """A custom auth flow: a per-request signature header, nowhere in ``client.headers``."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        signature = f"sig-{len(self.sent):04d}-7f3a9c1e5b"
        self.sent.append(signature)
        request.headers["X-Request-Signature"] = signature
        yield request


def test_a_custom_auth_flows_per_request_header_is_redacted(
    start_server: Any, tmp_path: Path
) -> None:
    """What the kernel sees is the request as sent, after the caller's auth flow ran:
    the redactor learns it from there (Basic auth: `test_attack_11c.py`)."""
    server: MarimoServer = start_server(write_notebook(tmp_path / "signed.py", ["a = 1"]))
    auth = _SigningAuth()
    with (
        httpx.Client(auth=auth) as http,
        MarimoClient(base_url=server.url, http_client=http) as client,
    ):
        client.attach()
        result = client.execute(SNOOP)
    assert "x-request-signature" in result.stdout
    assert auth.sent and not any(sig in result.stdout for sig in auth.sent), result.stdout
