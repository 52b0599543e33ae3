"""Where secrets, text and remote hosts are policed.

Loopback checks, server URLs as marimo prints them (``?access_token=…``),
redaction of every credential the client sends and of credentials recognised by
their shape (a person's session cookie), and the one check that text can be sent
at all (UTF-8: a lone surrogate cannot).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit, urlunsplit

from httpx import Headers

from .errors import ConfigurationError

__all__ = [
    "REDACTED",
    "PageURL",
    "connect_host",
    "credential_hold",
    "credential_values",
    "ensure_allowed_url",
    "ensure_encodable",
    "install_wire_log_redaction",
    "is_loopback_host",
    "redact",
    "redact_all",
    "redact_credentials",
    "redact_known",
    "split_page_url",
    "token_for",
]

REDACTED = "[REDACTED]"
_BIND_ALL = {"0.0.0.0", "::", ""}  # noqa: S104 - recognising, not binding
_MIN_SECRET = 8
"""Header and cookie values shorter than this are not treated as secrets: redacting
a value like ``1`` everywhere would garble output and hide nothing."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8, ::1 and ::ffff:127.x.y.z."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True  # not *.localhost: a resolver may send those anywhere
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def connect_host(host: str) -> str:
    """The address to dial for a server that registered ``host`` (bind-all → loopback)."""
    return "127.0.0.1" if host.strip("[]") in _BIND_ALL else host


class PageURL(NamedTuple):
    """What a URL copied from marimo's page holds: the server, the notebook, the token."""

    server: str
    """The server's base URL: scheme, host, port and base path, no query."""
    file: str | None
    """The notebook, from ``?file=``."""
    token: str | None
    """The server token, from ``?access_token=`` (never print or log it)."""


def split_page_url(url: str) -> PageURL:
    """Read a URL as copied from the browser: ``http://host:port/?file=nb.py&access_token=T``.

    marimo's page names the notebook in ``?file=`` and, on a token server, carries
    the token in ``?access_token=``; the server itself is everything before the query.
    """
    parts = urlsplit(url.strip())
    query = parse_qs(parts.query)
    server = urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")).rstrip("/")
    file = query.get("file", [""])[0] or None
    token = query.get("access_token", [""])[0] or None
    return PageURL(server=server, file=file, token=token)


def token_for(page: PageURL, given: str | None) -> str | None:
    """The token to use: ``given``, or the URL's ``?access_token=``; both, only if equal.

    Raises:
        ConfigurationError: the URL carries one token and the caller gave another
            (neither is shown).
    """
    if page.token is not None and given is not None and given != page.token:
        raise ConfigurationError(
            "The server URL carries an access_token and token=... gives a different one. "
            "Pass one of them: the URL as marimo printed it, or the base URL with "
            "token=... (or MARIMO_TOKEN)."
        )
    return given if given is not None else page.token


def ensure_allowed_url(url: str, *, allow_remote: bool) -> str:
    """Return the server's base URL (no query, no trailing slash), or refuse a non-loopback one.

    A URL copied from the page keeps only its server part: its ``?file=`` is not
    the server's address, and an ``?access_token=`` kept here would end up in reprs
    and logs (read it with `split_page_url` instead).

    Raises:
        ConfigurationError: the URL is not http(s), or not loopback and
            ``allow_remote`` is false.
    """
    parts = urlsplit(url)
    server = split_page_url(url).server  # never echo the query: it may hold a token
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigurationError(f"Not an http(s) URL with a host: {server!r}")
    if parts.username or parts.password:
        raise ConfigurationError(
            "Credentials in the URL are refused (they leak into logs); pass token=... "
            "or set MARIMO_TOKEN instead."
        )
    if not allow_remote and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"Refusing non-local marimo server {parts.hostname!r}: code you send runs "
            "there with your privileges. Pass allow_remote=True (CLI: --allow-remote) "
            "if you trust it."
        )
    return server


def redact(text: str, secret: str | None) -> str:
    """Replace every occurrence of ``secret`` in ``text``."""
    if not secret or secret not in text:
        return text
    return text.replace(secret, REDACTED)


def redact_known(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each known secret, longest first (one may contain another)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_all(text: str, secrets: Iterable[str]) -> str:
    """Replace the known secrets, then every credential recognised by its shape.

    The second part covers credentials nobody gave us: a person's marimo session
    cookie that their cell kept (``mo.app_meta().request``), a ``Cookie`` header, a
    signed token (`redact_credentials`).
    """
    return redact_credentials(redact_known(text, secrets))


# -- credentials recognised by their shape --------------------------------------------

_SEP = r"(?:=|\\*['\"][ \t]*:[ \t]*\\*['\"])"
"""``name=value`` (a cookie header) or ``'name': 'value'`` (a dict's repr, or JSON,
whose quotes may come escaped inside a JSON string)."""
_SESSION_COOKIE_RE = re.compile(rf"session_\d+(?:_\w+)?{_SEP}(?P<value>[A-Za-z0-9+/=._-]{{16,}})")
"""marimo's session cookie, ``session_<port>`` (``_<base path>`` behind a base URL): a
signed session that authenticates on its own. Values under 16 characters are left
alone, as code like ``session_1=x`` is no credential."""
_COOKIE_HEADER_RE = re.compile(
    r"cookie(?P<sep>\\*['\"][ \t]*:[ \t]*\\*['\"]|:[ \t]*)"
    r"(?P<value>[\w.!#$%&*+^|~-]+=[^'\"\\\n]*)",
    re.IGNORECASE,
)
"""A ``Cookie``/``Set-Cookie`` header's value (``name=value; …``), in a dict's repr or
JSON (``'cookie': '…'``), or on a raw header line (``Cookie: …`` at a line's start).
Matched only where ``cookie`` occurs (`_redact_cookie_headers`): a case-blind regex
scanning all output was 30 times slower than the rest of the redaction."""
_SIGNED_TOKEN_RE = re.compile(
    r"eyJ[A-Za-z0-9+/_-]{8,}={0,2}\.[A-Za-z0-9_-]{4,}={0,2}\.[A-Za-z0-9_-]{16,}={0,2}"
)
"""A signed token: base64 of a JSON object (``eyJ`` is ``{"``), then two dot-separated
parts. marimo's (Starlette's) session cookie and every JWT have this shape."""
_TRIGGERS = ("session_", "eyj", "cookie", "set-cookie")
_TRIGGER_NEEDLES = ("session_", "eyJ", "ookie", "OOKIE")
_HOLD_CAP = 256 * 1024
"""A stream holds back at most this much of one unfinished line that may hold a
credential; past it the text goes on (redacted as far as it can be seen)."""


def _value_only(match: re.Match[str]) -> str:
    text = match.group(0)
    if len(match.group("value")) < _MIN_SECRET:
        return text
    return text[: match.start("value") - match.start()] + REDACTED


def redact_credentials(text: str) -> str:
    """Replace credentials recognised by shape: marimo's session cookie by its name
    (``session_<port>``), the value of a ``Cookie``/``Set-Cookie`` header (as a dict's
    repr, JSON or a raw header line), and signed tokens (``eyJ….….…``: session cookies
    and JWTs). Names stay, so the text still says what was there."""
    if "session_" in text:
        text = _SESSION_COOKIE_RE.sub(_value_only, text)
    text = _redact_cookie_headers(text)
    if "eyJ" in text:
        text = _SIGNED_TOKEN_RE.sub(REDACTED, text)
    return text


def _occurrences(text: str, needles: Iterable[str]) -> list[int]:
    found = []
    for needle in needles:
        at = text.find(needle)
        while at != -1:
            found.append(at)
            at = text.find(needle, at + 1)
    return sorted(found)


def _redact_cookie_headers(text: str) -> str:
    parts: list[str] = []
    done = 0
    for at in _occurrences(text, ("ookie", "OOKIE")):
        start = at - 1  # the "c" of "cookie"
        if start < done:
            continue
        match = _COOKIE_HEADER_RE.match(text, start)
        if match is None or len(match.group("value")) < _MIN_SECRET:
            continue
        if match.group("sep").startswith(":"):  # a raw header: the line starts with it
            head = text[text.rfind("\n", 0, start) + 1 : start]
            if head.lower() not in {"", "set-"}:
                continue
        elif start and (text[start - 1].isalnum() or text[start - 1] == "_"):
            continue  # part of a longer name ("mycookie"), not a header
        parts += [text[done : match.start("value")], REDACTED]
        done = match.end()
    if not parts:
        return text
    return "".join([*parts, text[done:]])


def credential_hold(text: str, cut: int) -> int:
    """Where a stream must stop emitting ``text`` so no credential is cut in two.

    Shapes never span a line break, so the text from the start of the line holding
    ``cut`` is held back when it shows a credential's first letters (or ends with a
    part of them); earlier lines are complete. Returns ``cut`` or an earlier index.
    """
    start = text.rfind("\n", 0, cut) + 1
    if len(text) - start > _HOLD_CAP:
        return cut
    rest = text[start:]
    if any(needle in rest for needle in _TRIGGER_NEEDLES):
        return start
    tail = rest[-len(_TRIGGERS[-1]) :].lower()
    for size in range(1, len(tail) + 1):
        if any(trigger.startswith(tail[-size:]) for trigger in _TRIGGERS):
            return start
    return cut


# -- credentials our own requests carry -----------------------------------------------

_PLAIN_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-length",
        "content-type",
        "host",
        "origin",
        "pragma",
        "user-agent",
        # ours: the session routing, our marker, and the skew token (the client adds it
        # to its secrets itself, only where it is one)
        "marimo-session-id",
        "marimo-stable-session-id",
        "marimo-server-token",
        "x-pair-client",
    }
)
"""Headers whose values are no credential. Every other header value a request carries
is treated as one: a proxy's or identity provider's header need not say what it is
(``Cf-Access-Jwt-Assertion``, ``X-Amzn-Oidc-Data``, ``X-Ms-Client-Principal``)."""


def credential_values(headers: Mapping[str, str], cookies: Mapping[str, str]) -> set[str]:
    """The secret parts of every header a request carries, and of every cookie value.

    Every header outside a short allow-list (`_PLAIN_HEADERS`: ``Accept``, ``Host``,
    ``User-Agent``, …) counts as a credential. ``Authorization: Bearer T`` yields ``T``
    and the whole value; a ``Cookie`` header yields each value. Values under eight
    characters are left alone (see `_MIN_SECRET`), except the credential after an auth
    scheme.
    """
    found: set[str] = set()
    pairs = headers.multi_items() if isinstance(headers, Headers) else headers.items()
    for name, value in pairs:
        lower = name.lower()
        if lower in _PLAIN_HEADERS:
            continue
        if lower in {"authorization", "proxy-authorization"}:
            _, _, credential = value.partition(" ")
            if credential.strip():
                found.add(credential.strip())
        if lower == "cookie":
            for pair in value.split(";"):
                _, _, cookie = pair.partition("=")
                if len(cookie.strip()) >= _MIN_SECRET:
                    found.add(cookie.strip())
        if len(value) >= _MIN_SECRET:
            found.add(value)
    found.update(v for v in cookies.values() if v and len(v) >= _MIN_SECRET)
    return found


_WIRE_CREDENTIAL_RE = re.compile(
    r"\(b'(set-cookie|cookie|authorization|proxy-authorization|marimo-server-token)', "
    r"b'(?:[^'\\]|\\.)*'\)",
    re.IGNORECASE,
)
_WIRE_LOGGERS = ("httpcore.http11", "httpcore.http2")


class _WireLogRedaction(logging.Filter):
    """Cuts credential header values out of httpcore's DEBUG trace of raw headers.

    httpcore logs every response's headers at DEBUG, ``Set-Cookie`` included: marimo's
    session cookie, which authenticates on its own, would land in any DEBUG log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "b'" in record.msg:
            record.msg = _WIRE_CREDENTIAL_RE.sub(
                lambda m: f"(b'{m.group(1)}', b'{REDACTED}')", record.msg
            )
        return True


_wire_filter = _WireLogRedaction()


def install_wire_log_redaction() -> None:
    """Attach the redaction to httpcore's header-tracing loggers (once per process)."""
    for name in _WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if _wire_filter not in logger.filters:
            logger.addFilter(_wire_filter)


def ensure_encodable(value: Any, *, what: str) -> None:
    """Refuse text that cannot travel as UTF-8 (a lone surrogate), saying where it is.

    Walks strings, mappings (keys too) and sequences. Called before anything is
    sent, so a refusal means nothing reached the server.

    Raises:
        UnencodableTextError: the first unencodable text, with its place and a way out.
    """
    problem = _first_unencodable(value, "")
    if problem is None:
        return
    path, text, index = problem
    char = text[index]
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    around = repr(text[max(index - 20, 0) : index + 20])  # repr shows the surrogate as an escape
    where = f"{what}{(' ' + path) if path else ''}"
    place = f"line {line}, column {column}" if "\n" in text else f"position {index + 1}"
    from ._tool_errors import UnencodableTextError

    raise UnencodableTextError(
        f"{where} holds text that cannot be sent: the lone surrogate {ascii(char)[1:-1]} at "
        f"{place} (around: {around}). Nothing was sent. A lone surrogate is half of a "
        "character, usually an emoji or other character cut in two or a broken \\u escape. "
        "Remove it or write the whole character (for example 😀, not \\ud83d alone); to "
        "put such a code point in code on purpose, write the escape inside a string "
        "literal ('\\ud800'), which is plain text.",
        argument=where,
        line=line,
        column=column,
    )


def _first_unencodable(value: Any, path: str) -> tuple[str, str, int] | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return path, value, exc.start
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _first_unencodable(key, f"{path} (a key)") or _first_unencodable(
                item, f"{path}.{key}" if path else str(key)
            )
            if found is not None:
                return found
        return None
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        for index, item in enumerate(value):
            found = _first_unencodable(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
