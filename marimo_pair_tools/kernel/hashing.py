"""The two fingerprints the pairing contract is built on.

`code_hash` names the exact text of one cell (the compare-and-swap token an
edit carries); `notebook_version` names the whole notebook (ids, order, code),
so a guard can tell whether what the agent inspected is still what is there.
Pure standard library: the client and the kernel import this one definition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["code_hash", "notebook_version"]


def code_hash(code: str) -> str:
    """The 16-hex-digit fingerprint of one cell's code.

    The kernel reports this for a cell whose last-run code equals its text; when
    they differ (a person's run not yet in the document, or an edit not yet run)
    it folds the run code in, so the token changes whenever either does.
    """
    return hashlib.sha256(code.encode("utf-8")).hexdigest()[:16]


def notebook_version(cells: Iterable[tuple[str, str]]) -> str:
    """The fingerprint of a notebook: ``(cell_id, code)`` pairs in notebook order."""
    digest = hashlib.sha256()
    for cell_id, code in cells:
        digest.update(f"{cell_id}\0{code}\0".encode())
    return digest.hexdigest()[:16]
