"""Whether the notebook's file format holds a cell's code as written.

marimo saves a ``.md`` notebook as Markdown: a markdown cell (``mo.md(...)``) becomes
prose and is read back as a raw-string ``mo.md(r'...')``, and a SQL cell becomes a ``sql``
block. Prose cannot hold everything a string can: trailing spaces that make a line
break, a leading space, the escapes of a non-raw string. Such an edit would be in the
running notebook while the file holds other text, so it is refused before anything is
applied, with the code the file would hold. A ``.py`` notebook holds code as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marimo._schemas.serialization import AppInstantiation, CellDef, NotebookSerializationV1
from marimo._session.notebook.serializer import get_notebook_serializer

__all__ = ["MARKDOWN_SUFFIXES", "stored_forms"]

MARKDOWN_SUFFIXES = (".md", ".qmd", ".markdown")


def stored_forms(path: str | None, codes: list[str]) -> list[str] | None:
    """Each code as marimo's save and load of ``path`` would give it back.

    None when the file holds code as written (a ``.py`` notebook), or when marimo's
    serializer could not say (then the check after the save still applies).
    """
    if not path or not path.lower().endswith(MARKDOWN_SUFFIXES) or not codes:
        return None
    serializer = get_notebook_serializer(Path(path))
    notebook = NotebookSerializationV1(
        app=AppInstantiation(options={}),
        cells=[CellDef(code=code) for code in codes],
        filename=path,
    )
    try:
        back = serializer.deserialize(serializer.serialize(notebook), filepath=path)
    except Exception:  # noqa: BLE001 - marimo's converter on odd code: no prediction
        return None
    found = [cell.code for cell in back.cells]
    if len(found) == len(codes):
        return found
    # Some code comes back as several cells (``<!---->`` splits a markdown cell): find it.
    return [_alone(serializer, path, code) for code in codes]


def _alone(serializer: Any, path: str, code: str) -> str:
    """One code's stored form; the parts, numbered, when the file would split it."""
    notebook = NotebookSerializationV1(
        app=AppInstantiation(options={}), cells=[CellDef(code=code)], filename=path
    )
    try:
        back = serializer.deserialize(serializer.serialize(notebook), filepath=path)
    except Exception:  # noqa: BLE001 - marimo's converter on odd code: no prediction
        return code
    parts: list[str] = [cell.code for cell in back.cells]
    if len(parts) == 1:
        return parts[0]
    return "\n\n".join(
        f"# (cell {i} of {len(parts)} in the file)\n{part}" for i, part in enumerate(parts, 1)
    )


def held(stored: str, code: str) -> bool:
    """Whether the file's text is the code (blank edges and edge spaces do not count)."""
    return stored.strip() == code.strip()
