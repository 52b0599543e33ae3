"""Where secrets and remote hosts are policed: loopback checks and token redaction."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .errors import ConfigurationError

__all__ = [
    "REDACTED",
    "PageURL",
    "connect_host",
    "ensure_allowed_url",
    "is_loopback_host",
    "redact",
    "split_page_url",
]

REDACTED = "[REDACTED]"
_BIND_ALL = {"0.0.0.0", "::", ""}  # noqa: S104 - recognising, not binding


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
