"""The notebook file as it last matched the running notebook: marimo's saves vs outside edits.

marimo saves the whole running notebook over the file. A file changed outside marimo
(an editor's in-place save, ``git checkout``, a script) and not reloaded would be
overwritten by our next change, so `apply` first asks `outside_changes` what in the
file neither the running notebook nor the file's last matching version (the baseline)
explains: code or names nobody here wrote, cells the file dropped, a new order.

A person's unsaved browser edits are not outside changes: the file then still equals
the baseline, or marimo's save made it equal the running notebook again. The baseline
is taken whenever one of our calls finds the file equal to the running notebook; reads
look only when the file's ``stat`` changed, so a read costs one ``stat``.
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from marimo._session.notebook.serializer import get_notebook_serializer

from .fidelity import stored_forms
from .state import NotebookState, cell_name

__all__ = ["FileCell", "file_cells", "norm", "observe", "outside_changes", "record_saved"]

_MAX_LISTED = 5


@dataclass(frozen=True)
class FileCell:
    """A cell as the file holds it: normalized code and its name (None when unnamed)."""

    code: str
    name: str | None


def norm(code: str) -> str:
    """Code as the file holds it: trailing spaces and blank edges do not count, comments do."""
    return "\n".join(line.rstrip() for line in code.strip("\n").splitlines())


def _same_tree(a: str, b: str) -> bool:
    """Equal up to marimo's format-on-save (same syntax tree)."""
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError:
        return False


def file_cells(path: str) -> tuple[FileCell, ...]:
    """The file's cells, parsed as marimo parses it (raises OSError/ValueError/SyntaxError)."""
    with open(path, encoding="utf-8") as handle:
        content = handle.read()
    notebook = get_notebook_serializer(Path(path)).deserialize(content, filepath=path)
    return tuple(
        FileCell(norm(cell.code), None if cell.name in ("_", "") else str(cell.name))
        for cell in notebook.cells
    )


def _document_cells(state: NotebookState) -> tuple[FileCell, ...]:
    """The running notebook's cells as its file would hold them (a ``.md`` notebook keeps
    a markdown cell as prose, read back as another string: compare that form)."""
    cells = list(state.doc.cells)
    codes = [c.code for c in cells]
    forms = stored_forms(_path(state), codes) or codes
    return tuple(FileCell(norm(code), cell_name(c)) for code, c in zip(forms, cells, strict=True))


def _stat_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_baseline: dict[str, tuple[FileCell, ...]] = {}
"""Per notebook file: its cells when they last equalled the running notebook's."""
_looked_at: dict[str, tuple[int, int, int, int] | None] = {}
"""Per notebook file: its stat when `observe` last parsed it."""


def _path(state: NotebookState) -> str | None:
    path = state.kernel.app_metadata.filename
    return str(path) if path else None


def observe(state: NotebookState) -> None:
    """Take the baseline if the file equals the running notebook (parsing only on a new stat)."""
    path = _path(state)
    if path is None:
        return
    key = _stat_key(path)
    if key is not None and _looked_at.get(path) == key:
        return
    _looked_at[path] = key
    try:
        cells = file_cells(path)
    except (OSError, ValueError, SyntaxError):
        return
    if cells == _document_cells(state):
        _baseline[path] = cells


def _known(code: str, known: set[str], trees: list[str]) -> bool:
    return code in known or any(_same_tree(code, k) for k in trees)


def _describe(problems: list[str]) -> str:
    more = len(problems) - _MAX_LISTED
    return "; ".join(problems[:_MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


def _first_line(code: str) -> str:
    line = code.split("\n", 1)[0]
    return repr(line if len(line) <= 60 else line[:57] + "...")


def outside_changes(state: NotebookState) -> tuple[bytes | None, str | None]:
    """The file's bytes, and what in it was changed outside marimo (None when nothing).

    An unreadable or unparsable file is not judged (a save can only mend it). Without
    a baseline (no call of ours has yet seen the file equal the running notebook), only
    code the running notebook lacks is detected.
    """
    path = _path(state)
    if path is None:
        return None, None
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        found = file_cells(path)
    except (OSError, ValueError, SyntaxError):
        return None, None
    running = _document_cells(state)
    if found == running:
        _baseline[path] = found
        _looked_at[path] = _stat_key(path)
        return data, None
    base = _baseline.get(path)
    if base is not None and found == base:
        return data, None  # the person's edits are not saved yet: the file is as it was
    problems = _unexplained(found, running, base or ())
    if base is not None:
        problems += _dropped(found, running, base) + _reordered(found, running, base)
    return data, _describe(problems) if problems else None


def _unexplained(
    found: tuple[FileCell, ...], running: tuple[FileCell, ...], base: tuple[FileCell, ...]
) -> list[str]:
    """Code or names in the file that neither the running notebook nor the baseline has."""
    known = {c.code for c in running} | {c.code for c in base}
    trees = [c.code for c in running]
    problems = []
    for i, cell in enumerate(found, start=1):
        if not _known(cell.code, known, trees):
            problems.append(f"cell {i} (file order) holds code the running notebook lacks")
            continue
        # A rename is judged only against a baseline: unsaved, the person's may be newer.
        names = {c.name for c in running + base if c.code == cell.code}
        if base and names and cell.name not in names:
            problems.append(f"cell {i} (file order) is named {cell.name or 'nothing'} in the file")
    return problems


def _dropped(
    found: tuple[FileCell, ...], running: tuple[FileCell, ...], base: tuple[FileCell, ...]
) -> list[str]:
    """Cells the file had and the running notebook has, but the file no longer holds."""
    in_file = Counter(c.code for c in found)
    in_both = Counter(c.code for c in base) & Counter(c.code for c in running)
    return [
        f"the file no longer holds the cell starting {_first_line(code)}"
        for code, count in in_both.items()
        if in_file[code] < count
    ]


def _reordered(
    found: tuple[FileCell, ...], running: tuple[FileCell, ...], base: tuple[FileCell, ...]
) -> list[str]:
    """The file orders shared cells unlike both the running notebook and the baseline."""
    counts = [Counter(c.code for c in cells) for cells in (found, running, base)]
    shared = {code for code in counts[0] if all(c[code] == 1 for c in counts)}

    def order(cells: tuple[FileCell, ...]) -> list[str]:
        return [c.code for c in cells if c.code in shared]

    if order(found) not in (order(running), order(base)):
        return ["the file orders the cells differently"]
    return []


def record_saved(state: NotebookState, found: tuple[FileCell, ...]) -> None:
    """After our change was found on disk (``found``: the file's cells, as `on_disk` just
    parsed them): the file equals the running notebook again, without parsing it anew."""
    path = _path(state)
    if path is not None and found == _document_cells(state):
        _baseline[path] = found
        _looked_at[path] = _stat_key(path)
