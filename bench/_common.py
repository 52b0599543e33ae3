"""Shared helpers for the benchmarks: a throwaway server and robust timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path


def write_notebook(path: Path, cells: list[str]) -> Path:
    """Write a marimo notebook with these cells (marimo's own code generator)."""
    from marimo._ast.cell import CellConfig
    from marimo._ast.codegen import generate_filecontents

    path.write_text(
        generate_filecontents(list(cells), ["_"] * len(cells), [CellConfig() for _ in cells]),
        encoding="utf-8",
    )
    return path


def median_seconds(fn: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    """Median wall time of ``fn`` over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def write_chain_notebook(path: Path, cells: int) -> Path:
    """A notebook of ``cells`` cells in chains of ten (``v1 = v0 + 1``, ...).

    Written directly: marimo's code generator takes minutes for 10,000 cells.
    """
    parts = ['import marimo\n\n__generated_with = "0.25.2"\napp = marimo.App()\n\n']
    for i in range(cells):
        if i % 10 == 0:
            parts.append(f"\n@app.cell\ndef _():\n    v{i} = {i}\n    return (v{i},)\n\n")
        else:
            parts.append(
                f"\n@app.cell\ndef _(v{i - 1}):\n    v{i} = v{i - 1} + 1\n    return (v{i},)\n\n"
            )
    parts.append('\nif __name__ == "__main__":\n    app.run()\n')
    path.write_text("".join(parts), encoding="utf-8")
    return path
