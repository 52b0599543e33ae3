"""The README's main job: `marimo-pair demo` runs end to end and leaves a valid notebook."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from marimo_pair_tools.demo import DEMO_NOTEBOOK, run_demo


def test_demo_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    original = DEMO_NOTEBOOK.read_bytes()
    assert run_demo(workdir=tmp_path, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "guard refused edit_cell" in text
    assert "guard refused delete_cell" in text
    assert "guard: 2 unsafe calls refused" in text
    assert "no errors" in text
    saved = (tmp_path / "demo.py").read_text()
    assert "statistics.mean(revenue)" in saved
    assert "by_region" in saved
    assert "scratch_value" not in saved
    assert DEMO_NOTEBOOK.read_bytes() == original  # the shipped notebook is untouched
    # The saved notebook runs top to bottom as a plain script.
    run = subprocess.run(
        [sys.executable, str(tmp_path / "demo.py")], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
