"""The server's own view of a notebook, read without running anything in the kernel.

The eval's audit must not believe evidence that the audited code can rewrite. Code an
agent runs with ``execute_code`` shares the kernel with our kernel package, so anything
the package reports can be forged by it. This reads two things the kernel's code cannot
reach:

- the server's copy of the document (cell ids, order, code, names and config), as
  marimo sends it to a read-only (kiosk) viewer in its ``kernel-ready`` message when
  the viewer connects: the server builds it from its own ``session.document``;
- the notebook file's bytes, when the file is on this machine.

`document_fingerprint` and `file_digest` turn each into a short hash to compare.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ._sse import SSEDecoder

__all__ = ["ABSENT", "DocumentReader", "document_fingerprint", "file_digest"]

ABSENT = "absent"


def document_fingerprint(ready: dict[str, Any]) -> str:
    """A hash of a ``kernel-ready`` message's cells: ids, order, code, names and config.

    A disabled or hidden cell, or a renamed one, changes it, as a code change does.
    """
    cells = [
        ready.get("cell_ids") or [],
        ready.get("codes") or [],
        ready.get("names") or [],
        ready.get("configs") or [],
    ]
    text = json.dumps(cells, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_digest(path: str | None) -> str | None:
    """The sha256 of the file at ``path`` (cut to 16 hex digits).

    ``"absent"`` when no file is there (removed, or the server is on another machine),
    so a removal shows as a change; None when ``path`` is not an absolute path or the
    file cannot be read.
    """
    if not path or not os.path.isabs(path):
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return ABSENT
    except OSError:
        return None
    return digest.hexdigest()[:16]


@dataclass
class DocumentReader:
    """Reads a kiosk replay (SSE text) up to its ``kernel-ready`` message.

    Only the fingerprint is kept: the code and outputs are parsed and dropped.
    """

    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    fingerprint: str | None = None
    closed: bool = False

    @property
    def done(self) -> bool:
        return self.fingerprint is not None or self.closed

    def feed(self, text: str) -> None:
        for event in self.decoder.feed(text):
            if event.event == "close":
                self.closed = True
                continue
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                message = json.loads(event.data)
                body = message.get("data")
                if message.get("op") == "kernel-ready" and isinstance(body, dict):
                    self.fingerprint = document_fingerprint(body)
            if self.fingerprint is not None:
                return
