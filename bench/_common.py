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
