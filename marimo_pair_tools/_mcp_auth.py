"""Who may use the MCP HTTP endpoint: a bearer token from the environment.

Whoever reaches the endpoint runs code in the person's kernel and edits their
notebook, and loopback alone does not stop other users or other processes on
the machine. So every HTTP request must carry ``Authorization: Bearer <token>``,
with the token the person put in `TOKEN_ENV`. The token never comes from argv
(other users see command lines) and is never printed, logged or echoed: the
gate keeps only its SHA-256, and takes the header out of the request before
anything else sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import ConfigurationError

__all__ = ["MIN_TOKEN_LENGTH", "TOKEN_ENV", "BearerGate", "take_token"]

TOKEN_ENV = "MARIMO_PAIR_MCP_TOKEN"  # noqa: S105 - a variable name, not a secret
MIN_TOKEN_LENGTH = 16
"""Shorter tokens could be guessed by trying them against the port."""

_MAKE_ONE = (
    f"export {TOKEN_ENV}=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\""
)
_REALM = 'Bearer realm="marimo-pair"'

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def take_token(*, no_auth: bool) -> str | None:
    """The endpoint's token from `TOKEN_ENV`, removed from the environment; None with --no-auth.

    Removed, so that nothing this process starts (a marimo server, its kernel, a
    package installer) inherits it: code the model runs there could print it.

    Raises:
        ConfigurationError: no usable token and no ``--no-auth``, or both. The
            message says how to set one and never contains the value.
    """
    token = os.environ.pop(TOKEN_ENV, "")
    if no_auth:
        if token:
            raise ConfigurationError(
                f"Both {TOKEN_ENV} and --no-auth are set. Drop --no-auth to require the "
                f"token, or unset {TOKEN_ENV} to serve without authentication."
            )
        return None
    if not token:
        raise ConfigurationError(
            "The MCP HTTP endpoint runs code in the notebook's kernel, so it needs a token: "
            f"set {TOKEN_ENV} in this command's environment (for example "
            f"{_MAKE_ONE}) and have the client send the header "
            f"'Authorization: Bearer ${TOKEN_ENV}'. Or pass --no-auth to let anyone on "
            "this machine who can reach the port use the tools."
        )
    if len(token) < MIN_TOKEN_LENGTH or not all("!" <= c <= "~" for c in token):
        raise ConfigurationError(
            f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} printable ASCII characters "
            f"without spaces (it travels in an HTTP header); make one with {_MAKE_ONE}"
        )
    return token


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class BearerGate:
    """ASGI middleware: requests without the right bearer token get 401 and reach nothing.

    Tokens are compared as SHA-256 digests with `hmac.compare_digest`: constant
    time, and the length of the token does not leak either.
    """

    def __init__(self, app: App, token: str) -> None:
        self.app = app
        self._digest = _digest(token.encode("ascii"))

    def __repr__(self) -> str:
        return f"BearerGate({self.app!r})"

    def _allows(self, scope: Scope) -> bool | None:
        """True for the right token, False for a wrong one, None when none was sent."""
        values = [v for k, v in scope.get("headers", ()) if k.lower() == b"authorization"]
        if not values:
            return None
        if len(values) > 1:
            return False
        scheme, _, credentials = values[0].strip().partition(b" ")
        credentials = credentials.strip()
        if scheme.lower() != b"bearer" or not credentials:
            return None
        return hmac.compare_digest(_digest(credentials), self._digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        allowed = self._allows(scope)
        if allowed:
            # Nothing downstream (the SDK, its logs, the tools) ever sees the token.
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            await self.app({**scope, "headers": headers}, receive, send)
            return
        if scope["type"] != "http":  # a websocket: refused before it is accepted
            await send({"type": "websocket.close", "code": 1008})
            return
        challenge = _REALM if allowed is None else f'{_REALM}, error="invalid_token"'
        body = (
            b"Unauthorized: send 'Authorization: Bearer <token>' with the token set in "
            + TOKEN_ENV.encode()
            + b" where marimo-pair mcp runs.\n"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", challenge.encode()),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
