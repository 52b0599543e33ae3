"""Where secrets and remote hosts are policed: loopback checks and token redaction."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = ["REDACTED", "connect_host", "ensure_allowed_url", "is_loopback_host", "redact"]

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


def ensure_allowed_url(url: str, *, allow_remote: bool) -> str:
    """Return ``url`` without a trailing slash, or refuse a non-loopback one.

    Raises:
        ConfigurationError: the URL is not http(s), or not loopback and
            ``allow_remote`` is false.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigurationError(f"Not an http(s) URL with a host: {url!r}")
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
    return url.rstrip("/")


def redact(text: str, secret: str | None) -> str:
    """Replace every occurrence of ``secret`` in ``text``."""
    if not secret or secret not in text:
        return text
    return text.replace(secret, REDACTED)
