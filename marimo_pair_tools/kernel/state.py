"""The notebook as one call sees it: marimo's code-mode context, read without side effects.

Every call builds one `NotebookState`. One code-mode context per execute: several
contexts in one execute lose cells on disk (autosave applies an older snapshot).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any, cast

import marimo._code_mode as cm
from marimo._ast.names import is_internal_cell_name

from .analysis import Analysis, Graph, from_cell, static
from .hashing import code_hash, notebook_version
from .text import listing

__all__ = ["NotebookState", "Refused", "classify", "jsonable"]

KERNEL_ID = uuid.uuid4().hex[:12]
"""Names this kernel process: the package is installed anew in every kernel, so a
restarted kernel or a new server on the same port gets another id."""

TRACEBACK_MIME = "application/vnd.marimo+traceback"
ERROR_MIME = "application/vnd.marimo+error"


class Refused(Exception):
    """A refusal the caller can act on; ``kind`` picks the client-side error class."""

    def __init__(self, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details


class NotebookState:
    """The session's document, kernel graph and outputs for the duration of one call."""

    def __init__(self) -> None:
        # skip_staleness_check: our own compare-and-swap (expected_hash) is checked
        # against the same document snapshot before anything is queued. marimo's read
        # tracker is shared by every agent in this kernel and counts any scratchpad
        # read (our cell listings included) as "the agent read it", so it would both
        # refuse edits we know are safe and wave through edits we know are stale.
        self.ctx: Any = cast("Any", cm.get_context(skip_staleness_check=True))
        # The document snapshot marimo applies our transaction to on context exit.
        # Read it directly rather than through `ctx.cells[...].code`, which would
        # record reads in that shared tracker.
        self.doc: Any = self.ctx._document
        # marimo prints a prose summary of a batch on exit; our structured result
        # replaces it, and in the stream it would pass for output of the cells that ran.
        self.ctx._print_summary = lambda *args, **kwargs: None

    # -- cells -----------------------------------------------------------------

    def pairs(self) -> list[tuple[str, str]]:
        """``(cell_id, code)`` in notebook order."""
        return [(c.id, c.code) for c in self.doc.cells]

    def order(self) -> list[str]:
        """Cell ids in notebook order."""
        return [c.id for c in self.doc.cells]

    def names(self) -> dict[str, str | None]:
        """Each cell's given name (marimo's generated names are no names)."""
        return {c.id: cell_name(c) for c in self.doc.cells}

    def version(self) -> str:
        """The notebook's fingerprint: ids, order and code."""
        return notebook_version(self.pairs())

    def kernel_code(self, cid: str | None, code: str) -> str | None:
        """The code the kernel last ran for the cell, when it differs from the text.

        A person's run whose text is still reaching the notebook, or an edit not yet run.
        """
        impl = self.ctx.graph.cells.get(cid) if cid is not None else None
        ran = getattr(impl, "code", None)
        return ran if isinstance(ran, str) and ran != code else None

    def hash(self, code: str, cid: str | None = None) -> str:
        """The cell's compare-and-swap token.

        A person's run reaches the kernel about a second before the document: fold in
        the code the kernel last ran when it differs, so an edit based on the older
        text loses its compare-and-swap in that window too.
        """
        ran = self.kernel_code(cid, code)
        return code_hash(code if ran is None else code + "\0ran\0" + ran)

    def analyse(self, cid: str, code: str) -> Analysis:
        """(defs, refs, syntax_error, ...): the kernel's own when it ran this code, else static."""
        impl = self.ctx.graph.cells.get(cid)
        if impl is not None and impl.code == code:
            return from_cell(impl)
        return static(code)

    def graph(self, pairs: list[tuple[str, str]] | None = None) -> Graph:
        """The dataflow graph of every cell (or of ``pairs``), from code."""
        return Graph(self.pairs() if pairs is None else pairs, self.analyse)

    def resolve(
        self,
        target: str,
        order: list[str] | None = None,
        names: dict[str, str | None] | None = None,
    ) -> str:
        """A cell id or name -> cell id; refuses unknown or ambiguous targets."""
        if order is None or names is None:
            order, names = self.order(), self.names()
        hits = [cid for cid in order if names.get(cid) == target]
        if target in names:
            if hits and hits != [target]:
                # One rule everywhere: a reference names one cell, or it is refused.
                raise Refused(
                    "ambiguous",
                    f"{target!r} is ambiguous: it is the id of cell {target} and the name of "
                    f"cell {', '.join(h for h in hits if h != target)}. Nothing was done.",
                    cell=target,
                    candidates=[target, *(h for h in hits if h != target)],
                )
            return target
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise Refused(
                "not_found",
                f"Several cells are named {target!r} ({', '.join(hits)}).",
                cell=target,
                candidates=hits,
            )
        definers = [c.id for c in self.doc.cells if target in self.analyse(c.id, c.code)[0]]
        if len(definers) == 1:
            # A variable given for a cell: the cell that defines it is the likely meaning.
            raise Refused(
                "not_found",
                f"No cell is called {target!r}; {target!r} is a variable, defined by cell "
                f"{definers[0]}. Refer to that cell by its id: cell={definers[0]!r}.",
                cell=target,
                candidates=definers,
            )
        raise Refused(
            "not_found",
            f"No cell {target!r} in the notebook. Cells ({len(order)}): "
            f"{listing(order, names) or '(none)'}.",
            cell=target,
        )

    def document_id(self) -> str:
        """Which document the results describe: this kernel, and the notebook file itself.

        A restart or a new server is a new kernel; a file replaced on disk (``git
        checkout``, an editor's save-by-rename) is a new inode. marimo saves in place,
        so its own saves and a person's edits keep the id. A ledger of what the agent
        saw belongs to one document id: cell ids are positional and reused.
        """
        filename = self.kernel.app_metadata.filename
        try:
            stat = os.stat(filename) if filename else None
        except OSError:
            stat = None
        return f"{KERNEL_ID}:{stat.st_dev}:{stat.st_ino}" if stat else f"{KERNEL_ID}:-"

    @property
    def kernel(self) -> Any:
        """marimo's kernel object (package manager, execution mode, file name)."""
        return self.ctx._kernel


def cell_name(cell: Any) -> str | None:
    """A cell's given name, or None for marimo's generated ones."""
    name = cell.name
    return None if not name or is_internal_cell_name(name) else str(name)


def jsonable(value: Any) -> Any:
    """``value`` as JSON data, or its repr when it is not JSON."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


def classify(exc: BaseException) -> str:
    """A marimo exception -> error kind (its checks run when the context exits)."""
    text = str(exc)
    if isinstance(exc, SyntaxError):
        return "validation"
    if isinstance(exc, RuntimeError) and (text.startswith(("Multiply-defined", "Cycles detected"))):
        return "validation"
    if type(exc).__name__ == "StaleCellError":
        return "stale"
    if isinstance(exc, ValueError):
        return "validation"
    if isinstance(exc, KeyError):
        return "not_found"
    return "internal"


def write_stdout(text: str) -> None:
    """Write to the cell's stdout in pieces: marimo caps one print near 1 MB."""
    for start in range(0, len(text), 65536):
        sys.stdout.write(text[start : start + 65536])
        sys.stdout.flush()
