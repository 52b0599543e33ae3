"""Compare value summaries with tolerance and partial credit (pandas-aware).

Both sides are summaries (see `_values`): what a notebook computed, and what a
task expects, written as a plain Python value or a `Frame`. Comparing
summaries, not live objects, keeps pandas out of the harness and makes every
verdict reproducible from the logged JSON.

Pandas-aware means what a person checking the result would accept:

- a ``groupby`` result (named index) matches the same data with the index as
  a column (``reset_index()``), and a Series matches a one-column frame;
- dtypes do not matter (``3`` equals ``3.0``), floats compare with tolerance,
  and NaN, None and ``pd.NA`` are all "missing" and equal to each other;
- column order does not matter; row order does unless ``ignore_row_order``.

Partial credit is the fraction of expected cells (rows x columns) that match,
so a frame with one wrong column out of four scores 0.75.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._values import summarize

__all__ = ["Comparison", "Frame", "compare", "expected_summary"]


@dataclass(frozen=True)
class Frame:
    """An expected table: column names and row-major cells.

    Example:
        >>> Frame(["region", "total"], [["EU", 10], ["US", 7]])
    """

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]

    def summary(self) -> dict[str, Any]:
        """The `table` summary of this frame."""
        return {
            "kind": "table",
            "source": "dataframe",
            "columns": [str(c) for c in self.columns],
            "rows": [list(r) for r in self.rows],
            "index": None,
            "index_names": [None],
            "shape": [len(self.rows), len(self.columns)],
            "truncated": False,
        }


@dataclass(frozen=True)
class Comparison:
    """The verdict of `compare`: equal or not, a score in [0, 1], and why."""

    equal: bool
    score: float
    detail: str = ""
    mismatches: list[str] = field(default_factory=list)


def expected_summary(expected: Any) -> dict[str, Any]:
    """The summary of an expected value (a `Frame`, a summary dict, or a plain value)."""
    if isinstance(expected, Frame):
        return expected.summary()
    if isinstance(expected, Mapping) and "kind" in expected and "__summary__" in expected:
        return {k: v for k, v in expected.items() if k != "__summary__"}
    return summarize(expected)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def values_equal(actual: Any, expected: Any, rtol: float, atol: float) -> bool:
    """Plain values equal with numeric tolerance; missing equals missing."""
    if _is_missing(actual) or _is_missing(expected):
        return _is_missing(actual) and _is_missing(expected)
    if _number(actual) and _number(expected):
        if math.isinf(actual) or math.isinf(expected):
            return bool(actual == expected)
        return math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol)
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(
            values_equal(a, e, rtol, atol) for a, e in zip(actual, expected, strict=True)
        )
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            values_equal(actual[k], expected[k], rtol, atol) for k in expected
        )
    return bool(actual == expected) and type(actual) is type(expected)


def _plain_score(actual: Any, expected: Any, rtol: float, atol: float) -> float:
    """Partial credit for nested plain values: lists by position, dicts by key."""
    if values_equal(actual, expected, rtol, atol):
        return 1.0
    if isinstance(actual, list) and isinstance(expected, list) and expected:
        hits = sum(_plain_score(a, e, rtol, atol) for a, e in zip(actual, expected, strict=False))
        return hits / max(len(actual), len(expected))
    if isinstance(actual, dict) and isinstance(expected, dict) and expected:
        keys = set(actual) | set(expected)
        hits = sum(
            _plain_score(actual[k], expected[k], rtol, atol) for k in expected if k in actual
        )
        return hits / len(keys)
    return 0.0


def _variants(table: Mapping[str, Any]) -> list[tuple[list[str], list[list[Any]], str]]:
    """The ways to read a table: as is, and with its index as leading columns."""
    columns = list(table["columns"])
    rows = [list(r) for r in table["rows"]]
    variants = [(columns, rows, "values")]
    index = table.get("index")
    if index is not None:
        names = [n if n is not None else "index" for n in table.get("index_names") or ["index"]]
        if len(names) == 1:
            index_rows = [[v] for v in index]
        else:
            index_rows = [list(v) if isinstance(v, list) else [v] for v in index]
        variants.append(
            (names + columns, [i + r for i, r in zip(index_rows, rows, strict=False)], "reset")
        )
    return variants


def _sort_key(row: Sequence[Any]) -> tuple[tuple[int, str], ...]:
    return tuple((0, "") if _is_missing(v) else (1, repr(v)) for v in row)


def _table_score(
    actual: Mapping[str, Any],
    expected: Mapping[str, Any],
    *,
    rtol: float,
    atol: float,
    ignore_row_order: bool,
    check_names: bool,
) -> Comparison:
    exp_cols = list(expected["columns"])
    exp_rows = [list(r) for r in expected["rows"]]
    best: Comparison | None = None
    for act_cols, act_rows, how in _variants(actual):
        if check_names:
            mapping = {c: act_cols.index(c) for c in exp_cols if c in act_cols}
        elif len(act_cols) == len(exp_cols):
            mapping = {c: i for i, c in enumerate(exp_cols)}
        else:
            mapping = {}
        if ignore_row_order:
            keyed = [c for c in exp_cols if c in mapping]
            exp_sorted = sorted(
                exp_rows, key=lambda r: _sort_key([r[exp_cols.index(c)] for c in keyed])
            )
            act_sorted = sorted(act_rows, key=lambda r: _sort_key([r[mapping[c]] for c in keyed]))
        else:
            exp_sorted, act_sorted = exp_rows, act_rows
        n_rows = max(len(exp_sorted), len(act_sorted))
        total = n_rows * len(exp_cols)
        hits = 0
        bad_cols: list[str] = []
        for j, col in enumerate(exp_cols):
            if col not in mapping:
                bad_cols.append(f"missing column {col!r}")
                continue
            k = mapping[col]
            col_hits = sum(
                values_equal(a[k], e[j], rtol, atol)
                for a, e in zip(act_sorted, exp_sorted, strict=False)
            )
            hits += col_hits
            if col_hits < n_rows:
                bad_cols.append(f"column {col!r}: {col_hits}/{n_rows} cells match")
        # An empty table scores on its columns alone.
        score = hits / total if total else len(mapping) / max(1, len(exp_cols))
        extra = [c for c in act_cols if c not in exp_cols] if check_names else []
        equal = score == 1.0 and len(act_sorted) == len(exp_sorted) and not extra
        mismatches = list(bad_cols)
        if len(act_sorted) != len(exp_sorted):
            mismatches.append(f"{len(act_sorted)} rows, expected {len(exp_sorted)}")
        if extra and how == "values":
            mismatches.append(f"extra columns {extra}")
        detail = "equal" if equal else "; ".join(mismatches) or "differs"
        candidate = Comparison(equal, score if not extra else score * 0.95, detail, mismatches)
        if best is None or (candidate.equal, candidate.score) > (best.equal, best.score):
            best = candidate
    assert best is not None
    return best


def _as_table(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if summary.get("kind") == "table":
        return summary
    if summary.get("kind") == "json":
        value = summary["value"]
        if isinstance(value, list) and value and all(isinstance(r, list) for r in value):
            width = len(value[0])
            return {
                "kind": "table",
                "columns": [str(i) for i in range(width)],
                "rows": value,
                "index": None,
            }
    return None


def compare(
    actual: Mapping[str, Any] | None,
    expected: Any,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    ignore_row_order: bool = False,
    check_names: bool = True,
) -> Comparison:
    """Compare an actual summary with an expected value or summary.

    Args:
        actual: the summary of what the notebook computed; ``None`` if undefined.
        expected: a plain value, a `Frame`, or a summary.
        rtol: relative tolerance for numbers.
        atol: absolute tolerance for numbers.
        ignore_row_order: tables match whatever the row order.
        check_names: tables match columns by name (else by position).
    """
    if actual is None:
        return Comparison(False, 0.0, "not defined")
    want = expected_summary(expected)
    if actual.get("kind") == "error":
        return Comparison(False, 0.0, str(actual.get("error")))
    if actual.get("kind") == "ui" and want.get("kind") != "ui":
        actual = actual["value"]
    if want.get("kind") == "table":
        table = _as_table(actual)
        if table is None:
            return Comparison(False, 0.0, f"expected a table, got {actual.get('kind')}")
        if want.get("source") == "array" and table.get("source") != "array":
            check_names = False
        return _table_score(
            table,
            want,
            rtol=rtol,
            atol=atol,
            ignore_row_order=ignore_row_order,
            check_names=check_names,
        )
    if actual.get("kind") == "table" and want.get("kind") == "json":
        table = _as_table(want)
        if table is not None:
            return _table_score(
                actual,
                table,
                rtol=rtol,
                atol=atol,
                ignore_row_order=ignore_row_order,
                check_names=False,
            )
        # A 1-D series/array compared with a list: compare the single column.
        if len(actual["columns"]) == 1:
            column = [row[0] for row in actual["rows"]]
            score = _plain_score(column, want["value"], rtol, atol)
            return Comparison(score == 1.0, score, "equal" if score == 1.0 else "differs")
    if want.get("kind") in {"scalar", "json"} and actual.get("kind") in {"scalar", "json"}:
        score = _plain_score(actual["value"], want["value"], rtol, atol)
        equal = score == 1.0
        detail = (
            "equal" if equal else f"got {actual['value']!r:.200}, expected {want['value']!r:.200}"
        )
        return Comparison(equal, score, detail)
    equal = dict(actual) == want
    return Comparison(equal, 1.0 if equal else 0.0, "equal" if equal else "differs")
