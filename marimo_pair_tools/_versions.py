"""Which marimo servers we support, checked once per client at connect time."""

from __future__ import annotations

import logging
import re

from .errors import UnsupportedServerError

__all__ = [
    "MAX_TESTED",
    "MIN_SUPPORTED",
    "SUPPORTED_RANGE",
    "check_server_version",
    "parse_version",
]

logger = logging.getLogger(__name__)

MIN_SUPPORTED = (0, 21, 1)
"""`marimo._code_mode` and `/api/kernel/execute` exist from this release on."""
MAX_TESTED = (0, 25)
"""The newest minor release our test suite runs against."""
SUPPORTED_RANGE = ">=0.21.1,<0.26"


def parse_version(version: str) -> tuple[int, ...]:
    """Leading numeric release parts of a version string (``0.25.2.dev1`` → (0, 25, 2))."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if not match:
        raise UnsupportedServerError(f"Cannot read the marimo server version {version!r}.")
    return tuple(int(p) for p in match.group(1).split("."))


def check_server_version(version: str) -> None:
    """Refuse servers too old for code mode; log (not refuse) newer untested ones."""
    parsed = parse_version(version)
    if parsed < MIN_SUPPORTED:
        raise UnsupportedServerError(
            f"marimo {version} is too old: pairing needs marimo {SUPPORTED_RANGE} "
            "(code mode arrived in 0.21.1). Upgrade marimo on the server."
        )
    if parsed[:2] > MAX_TESTED:
        logger.warning(
            "marimo %s is newer than the versions marimo-pair-tools was tested with (%s); "
            "the private code-mode API may have changed.",
            version,
            SUPPORTED_RANGE,
        )
