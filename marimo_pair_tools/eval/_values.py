"""Turn a Python value into a small JSON summary that graders can compare.

Why summaries instead of pickles: the values come from a notebook an agent
edited, run in a child process (or in the live kernel). A JSON summary keeps
the harness from unpickling anything the agent wrote, keeps pandas and
matplotlib out of the harness process, and is small enough to log.

This module imports nothing from the package and nothing outside the standard
library at import time: its source is also sent to the live kernel as part of
a scratchpad program, where the package need not be importable.

Summary shapes (every one has ``kind``):

- ``scalar``: ``value`` is None, bool, int, float (NaN/inf as floats) or str.
- ``json``: ``value`` is a list or dict of summaries' plain values (nested).
- ``table``: pandas DataFrame / Series / numpy array: ``columns``, ``rows``
  (row-major cells), ``index`` (list or None for a default range index),
  ``index_names``, ``source`` (``dataframe``/``series``/``array``), ``shape``
  (the full shape before rows were capped) and ``truncated``.
- ``figure``: matplotlib Figure or Axes: ``axes`` with titles, labels and
  artist counts.
- ``ui``: a marimo UI element: ``type`` and ``value`` (a summary).
- ``html``: marimo Html / markdown: ``text`` (bounded).
- ``callable``, ``module``, ``object``: ``type``/``name`` and a bounded ``repr``.
- ``error``: ``error`` text (an expression that raised).
"""

from __future__ import annotations

import math
from typing import Any

MAX_ROWS = 500
MAX_ITEMS = 500
MAX_TEXT = 2000
MAX_DEPTH = 6


def _type_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-able plain value (recursively), or None when there is none."""
    if value is None or isinstance(value, (bool, str)):
        return value if not isinstance(value, str) else value[:MAX_TEXT]
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value
    module = type(value).__module__
    if module.startswith("numpy") and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _plain(value.item(), depth)
    if module.startswith("pandas") and type(value).__name__ in {"Timestamp", "Timedelta"}:
        return str(value)
    if type(value).__name__ in {"NAType", "NaTType"}:
        return None
    if type(value).__name__ in {"date", "datetime", "time", "Decimal"}:
        return str(value)
    if depth >= MAX_DEPTH:
        return repr(value)[:200]
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_plain(item, depth + 1) for item in list(items)[:MAX_ITEMS]]
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
    return repr(value)[:200]


def _cell(value: Any) -> Any:
    plain = _plain(value)
    if isinstance(plain, float) and math.isnan(plain):
        return None  # pandas' NaN, None and NA all mean "missing" to a grader
    return plain


def _table(value: Any, source: str) -> dict[str, Any]:
    if source == "series":
        frame = value.to_frame(name=value.name if value.name is not None else 0)
    elif source == "array":
        import numpy as np

        array = np.asarray(value)
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        elif array.ndim != 2:
            return {"kind": "object", "type": _type_name(value), "repr": repr(value)[:MAX_TEXT]}
        rows = [[_cell(v) for v in row] for row in array[:MAX_ROWS].tolist()]
        return {
            "kind": "table",
            "source": "array",
            "columns": [str(i) for i in range(array.shape[1])],
            "rows": rows,
            "index": None,
            "index_names": [],
            "shape": list(value.shape),
            "truncated": array.shape[0] > MAX_ROWS,
        }
    else:
        frame = value
    index = frame.index
    default_index = type(index).__name__ == "RangeIndex" and index.start == 0 and index.step == 1
    head = frame.head(MAX_ROWS)
    rows = [[_cell(v) for v in row] for row in head.itertuples(index=False, name=None)]
    index_values = None if default_index else [_cell(v) for v in head.index.tolist()]
    names = [None if n is None else str(n) for n in index.names]
    return {
        "kind": "table",
        "source": source,
        "columns": [str(c) for c in frame.columns],
        "rows": rows,
        "index": index_values,
        "index_names": names,
        "shape": list(value.shape),
        "truncated": len(frame) > MAX_ROWS,
    }


def _axes(ax: Any) -> dict[str, Any]:
    return {
        "title": str(ax.get_title()),
        "xlabel": str(ax.get_xlabel()),
        "ylabel": str(ax.get_ylabel()),
        "lines": len(ax.get_lines()),
        "patches": len(ax.patches),
        "collections": len(ax.collections),
        "images": len(ax.images),
    }


def summarize(value: Any) -> dict[str, Any]:
    """A JSON summary of ``value`` (see the module docstring for the shapes)."""
    cls = type(value)
    module, name = cls.__module__, cls.__name__
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"kind": "scalar", "value": _plain(value)}
    if module.startswith("pandas"):
        if name == "DataFrame":
            return _table(value, "dataframe")
        if name == "Series":
            return _table(value, "series")
        if name.endswith("Index"):
            return {"kind": "json", "value": [_cell(v) for v in value.tolist()[:MAX_ITEMS]]}
    if module.startswith("numpy"):
        if getattr(value, "ndim", None) == 0:
            return {"kind": "scalar", "value": _plain(value)}
        if name == "ndarray":
            return _table(value, "array")
    if module.startswith("matplotlib"):
        if hasattr(value, "get_axes") and hasattr(value, "savefig"):
            fig_title = value._suptitle.get_text() if value._suptitle is not None else ""
            return {
                "kind": "figure",
                "suptitle": fig_title,
                "axes": [_axes(ax) for ax in value.get_axes()],
            }
        if hasattr(value, "get_title") and hasattr(value, "get_lines"):
            return {"kind": "figure", "suptitle": "", "axes": [_axes(value)]}
    if module.startswith("marimo"):
        if module.startswith("marimo._plugins.ui") and hasattr(value, "value"):
            return {"kind": "ui", "type": name, "value": summarize(value.value)}
        if hasattr(value, "text") and isinstance(getattr(value, "text", None), str):
            return {"kind": "html", "text": value.text[:MAX_TEXT]}
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return {"kind": "json", "value": _plain(value)}
    if cls.__name__ == "module":
        return {"kind": "module", "name": getattr(value, "__name__", "?")}
    if callable(value):
        return {"kind": "callable", "name": getattr(value, "__qualname__", repr(value)[:80])}
    return {"kind": "object", "type": _type_name(value), "repr": repr(value)[:MAX_TEXT]}


def summarize_safely(value: Any) -> dict[str, Any]:
    """`summarize`, but a value whose summary raises becomes an ``error`` summary.

    A notebook value is arbitrary user code (a ``__repr__`` may raise); one bad
    value must not lose the others' summaries.
    """
    try:
        return summarize(value)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - arbitrary user objects; report, don't crash
        return {"kind": "error", "error": f"{type(exc).__name__}: {exc}"[:MAX_TEXT]}
