"""A tiny snapshot helper: compare text with a file under tests/snapshots/.

Run with UPDATE_SNAPSHOTS=1 to (re)write them after a deliberate change.
"""

from __future__ import annotations

import os
from pathlib import Path

SNAPSHOTS = Path(__file__).parent / "snapshots"


def assert_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        if os.environ.get("CI") and not path.exists():
            raise AssertionError(f"snapshot {name} is missing; create it with UPDATE_SNAPSHOTS=1")
        path.write_text(text, encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} changed; if deliberate, rerun with UPDATE_SNAPSHOTS=1"
