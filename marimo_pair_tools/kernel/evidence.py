"""What an agent's scratchpad run did, as the kernel saw it: runtime evidence for the audit.

After the agent's code (`entry.run_scratchpad`), one tagged line reports

- ``refusals``: what the fence refused while the code ran (`fence.refusals`), even
  when the code caught the error and went on;
- ``version_before`` / ``version_after``: the notebook's fingerprint (ids, order,
  code; `hashing.notebook_version`) before and after the code, in the document
  snapshot this execute works on. marimo hands the scratchpad the server's document
  as the request found it, and a code-mode change applies to that snapshot, so a
  difference is a change this code made through the kernel, by whatever route.

The line goes to the stdout the cell had before the code ran, so code that swaps
``sys.stdout`` does not hide it. It carries the ``nonce`` the client sent with this
call: a line the agent's code prints without knowing it is not taken for ours. The
client strips it from what the model sees.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from marimo._messaging.notebook.document import get_current_document

from . import fence
from .hashing import notebook_version

__all__ = ["FENCE_TAG", "Watch"]

FENCE_TAG = "<<marimo-pair:fence>>"


def _version() -> str | None:
    document: Any = get_current_document()
    if document is None:
        return None
    return notebook_version((c.id, c.code) for c in document.cells)


class Watch:
    """Taken before the agent's code runs; `report` prints the evidence after it."""

    def __init__(self, nonce: str = "") -> None:
        self._nonce = nonce
        self._out = sys.stdout
        self._before = _version()
        fence.clear_refusals()

    def report(self) -> None:
        """Print the tagged evidence line (called however the code ended)."""
        payload = {
            "nonce": self._nonce,
            "refusals": fence.refusals(),
            "version_before": self._before,
            "version_after": _version(),
        }
        self._out.write(FENCE_TAG + json.dumps(payload) + "\n")
        self._out.flush()
