"""One notebook on one marimo server, as typed operations.

`Notebook` and `AsyncNotebook` differ only in how they call the client. Every
operation is a `_Call`: a call into the kernel-side package (built by
`_kernel_calls`) plus a pure function that shapes the kernel's answer into a
model. The two classes just send the call and hand the answer to that function,
so they cannot drift apart.

Changes go through `apply`, one atomic batch per kernel request. By default a
second, read-only request then re-reads the notebook from the session (a fresh
snapshot, not the one the batch was applied to) to confirm every change landed
where the person and the file will see it.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import TypeAdapter

from . import _kernel_calls as kernel
from ._server_view import file_digest
from .client import ScratchpadEvidence
from .errors import NotSavedError
from .models import (
    ApplyResult,
    CellDetail,
    CellsPage,
    CellsRead,
    Change,
    CreateCell,
    DeleteCell,
    EditCell,
    ErrorInfo,
    ErrorsReport,
    KernelStatus,
    MoveCell,
    NotebookGraph,
    NotebookSnapshot,
    OutputView,
    PackagesList,
    PackagesResult,
    ReplaceInCell,
    RunCell,
    RunReport,
    UIValueResult,
    VariablesReport,
)

if TYPE_CHECKING:
    from .client import (
        AsyncMarimoClient,
        ExecuteResult,
        MarimoClient,
        RestartResult,
        SessionInfo,
    )

__all__ = ["AsyncNotebook", "Notebook", "output_view"]

T = TypeVar("T")

_CHANGES = TypeAdapter(list[Change])
_PACKAGE_TIMEOUT = 600.0


@dataclass(frozen=True)
class _Call(Generic[T]):
    """A call into the kernel package and how to turn its result into ``T``."""

    request: kernel.KernelCall
    shape: Callable[[Any, str], T]
    timeout: float | None = None

    def finish(self, result: ExecuteResult, collector: kernel.ResultCollector) -> T:
        """Shape the answer.

        Raises:
            KernelCodeMissing: the kernel lacks the package: send ``kernel.source(install=True)``.
        """
        stdout = collector.stdout or result.stdout
        return self.shape(kernel.parse_result(stdout, result.stderr), collector.console)


# --------------------------------------------------------------------------
# Output shaping (pure)
# --------------------------------------------------------------------------


class _HTMLText(HTMLParser):
    """Reduce marimo's HTML outputs to text a model can read.

    marimo widgets (`<marimo-slider>`, `<marimo-table>`, …) carry their state in
    attributes, not text; they are described from those attributes.
    """

    _BLOCK = frozenset(
        [
            "p",
            "div",
            "br",
            "li",
            "tr",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "pre",
            "table",
            "section",
            "ul",
            "ol",
            "blockquote",
            "hr",
        ]
    )
    _SKIP = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.image: tuple[str, str] | None = None
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "img" and self.image is None:
            self.image = _data_url(values.get("src", ""))
        elif tag == "marimo-table":
            self.parts.append("\n" + _describe_table(values) + "\n")
        elif tag.startswith("marimo-") and tag != "marimo-ui-element":
            self.parts.append(_describe_widget(tag, values))
        elif tag in ("td", "th"):
            self.parts.append(" | ")
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)

    def text(self) -> str:
        lines = [" ".join(line.split()) for line in "".join(self.parts).splitlines()]
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):
                out.append(line)
        return "\n".join(out).strip()


def _describe_widget(tag: str, attrs: Mapping[str, str]) -> str:
    kind = tag.removeprefix("marimo-")
    details = []
    for key in ("data-label", "data-initial-value", "data-start", "data-stop", "data-options"):
        value = attrs.get(key)
        if value and value != "null":
            details.append(f"{key.removeprefix('data-')}={value[:80]}")
    return f"[{kind}{' ' if details else ''}{' '.join(details)}]"


def _describe_table(attrs: Mapping[str, str], max_rows: int = 10) -> str:
    total = attrs.get("data-total-rows", "?")
    try:
        data = json.loads(attrs.get("data-data", ""))
        rows = json.loads(data) if isinstance(data, str) else data
    except ValueError:
        rows = None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return f"[table: {total} rows; data not inline]"
    columns = list(rows[0]) if rows else []
    lines = [f"[table: {total} rows]", " | ".join(columns)]
    lines += [" | ".join(str(row.get(c, "")) for c in columns) for row in rows[:max_rows]]
    if len(rows) > max_rows or str(total) not in (str(len(rows)), "?"):
        lines.append("…")
    return "\n".join(lines)


def _data_url(value: str) -> tuple[str, str] | None:
    """``data:image/png;base64,XXX`` → (mimetype, base64); None if not an image."""
    if not value.startswith("data:image/") or ";base64," not in value:
        return None
    head, payload = value.split(",", 1)
    mimetype = head.removeprefix("data:").split(";", 1)[0]
    return (mimetype, payload) if mimetype != "image/svg+xml" else None


def _html_text(html: str) -> tuple[str, tuple[str, str] | None]:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text(), parser.image


def _as_base64_image(mimetype: str, data: str) -> tuple[str, str] | None:
    found = _data_url(data)
    if found is not None:
        return found
    try:
        base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return mimetype, data


def output_view(raw: Mapping[str, Any] | None) -> OutputView | None:
    """Shape a cell's raw output (as the kernel program reports it) into an `OutputView`.

    HTML and markdown become text; an image (``image/*``, or a matplotlib
    figure's ``image/png`` inside a mime bundle) becomes base64 bytes.
    """
    if raw is None:
        return None
    mimetype = str(raw.get("mimetype", "text/plain"))
    data = raw.get("data")
    errors = [
        ErrorInfo(
            kind="note" if e.get("note") else "marimo",
            message=f"{e.get('type')}: {e.get('message')}",
            exception_type=e.get("type"),
        )
        for e in raw.get("errors") or []
    ]
    text: str | None = None
    image: tuple[str, str] | None = None
    if isinstance(data, str):
        if mimetype == "application/vnd.marimo+mimebundle":
            try:
                bundle = json.loads(data)
            except ValueError:
                bundle = {}
            bundle = bundle if isinstance(bundle, dict) else {}
            for key, value in bundle.items():
                if key.startswith("image/") and isinstance(value, str) and image is None:
                    image = _as_base64_image(key, value)
            for key in ("text/plain", "text/markdown", "text/html"):
                if isinstance(bundle.get(key), str):
                    text = bundle[key] if key == "text/plain" else _html_text(bundle[key])[0]
                    break
        elif mimetype.startswith("image/") and mimetype != "image/svg+xml":
            image = _as_base64_image(mimetype, data)
        elif mimetype in ("text/html", "text/markdown"):
            text, image = _html_text(data)
        else:
            text = data
    return OutputView(
        mimetype=mimetype,
        text=text or None,
        image_base64=image[1] if image else None,
        image_mimetype=image[0] if image else None,
        size=int(raw.get("size") or 0),
        omitted=bool(raw.get("omitted")),
        errors=errors,
    )


# --------------------------------------------------------------------------
# Calls (pure: program + shaping)
# --------------------------------------------------------------------------


def _cells_call(offset: int, limit: int | None) -> _Call[CellsPage]:
    return _Call(
        kernel.cells(offset=offset, limit=limit),
        lambda result, _: CellsPage.model_validate(result),
    )


def _shape_detail(result: Any, _console: str) -> CellDetail:
    return CellDetail.model_validate({**result, "output": output_view(result.get("output"))})


def _read_call(cell: str, max_output_chars: int) -> _Call[CellDetail]:
    return _Call(kernel.read_cell(cell, max_output_chars=max_output_chars), _shape_detail)


def _shape_many(result: Any, _console: str) -> CellsRead:
    version, document = result["notebook_version"], result.get("document")
    cells = [
        _shape_detail({**cell, "notebook_version": version, "document": document}, "")
        for cell in result["cells"]
    ]
    return CellsRead(
        cells=cells, missing=result["missing"], notebook_version=version, document=document
    )


def _read_many_call(cells: Sequence[str], max_output_chars: int) -> _Call[CellsRead]:
    return _Call(kernel.read_cells(cells, max_output_chars=max_output_chars), _shape_many)


def _codes_call(cells: Sequence[str]) -> _Call[dict[str, str]]:
    return _Call(kernel.codes(cells), lambda result, _: dict(result["codes"]))


def _graph_call(cell: str | None) -> _Call[NotebookGraph]:
    return _Call(kernel.graph(cell), lambda result, _: NotebookGraph.model_validate(result))


def _errors_call() -> _Call[ErrorsReport]:
    return _Call(kernel.errors(), lambda result, _: ErrorsReport.model_validate(result))


def _to_changes(changes: Sequence[Change | Mapping[str, Any]]) -> list[dict[str, Any]]:
    models = _CHANGES.validate_python(
        [c.model_dump() if not isinstance(c, Mapping) else dict(c) for c in changes]
    )
    return [m.model_dump(mode="json") for m in models]


def _apply_call(
    changes: Sequence[Change | Mapping[str, Any]],
    timeout: float | None,
    check_effects: bool = False,
    document: str | None = None,
) -> _Call[ApplyResult]:
    payload = _to_changes(changes)

    def shape(result: Any, console: str) -> ApplyResult:
        return ApplyResult.model_validate({**result, "console": console})

    return _Call(
        kernel.apply(payload, check_effects=check_effects, document=document), shape, timeout
    )


def _saved(result: ApplyResult) -> ApplyResult:
    """Done means on disk: a change the notebook file does not hold is not reported as done."""
    if result.saved is not False:
        return result
    raise NotSavedError(
        f"The change is in the running notebook (the person's page shows it), but the "
        f"notebook file does not hold it: {result.save_problem} Do not redo the change. Tell "
        "the person: once the cause is fixed, saving from the browser (Ctrl/Cmd-S) writes it.",
        result=result,
        save_problem=result.save_problem,
    )


def _verify_call(applied: ApplyResult) -> _Call[ApplyResult]:
    """Re-read the session's document: did each change land where the person sees it?"""
    expect: dict[str, dict[str, Any]] = {}
    for change in applied.changes:
        if change.cell_id is None:
            continue
        present = change.op != "delete"
        expect[change.cell_id] = {
            "cell_id": change.cell_id,
            "present": present,
            "code_hash": change.code_hash if present else None,
        }
    explicit = {report.cell_id: report.explicit for report in applied.ran}

    def shape(result: Any, _console: str) -> ApplyResult:
        problems: dict[str, str] = dict(result["problems"])
        order_ok = result["order"] == applied.order
        if not order_ok:
            for change in applied.changes:
                if change.op in ("create", "move") and change.cell_id is not None:
                    problems.setdefault(
                        change.cell_id,
                        "the cell order differs (someone may have edited the notebook meanwhile)",
                    )
        changes = [
            c.model_copy(
                update={"verified": False, "problem": f"fresh re-read: {problems[c.cell_id]}"}
            )
            if c.cell_id in problems and c.verified
            else c
            for c in applied.changes
        ]
        ran = [
            RunReport.model_validate({**report, "explicit": explicit.get(report["cell_id"], False)})
            for report in result["ran"]
        ]
        return applied.model_copy(
            update={
                "changes": changes,
                "ran": ran or applied.ran,
                "order": result["order"],
                "order_ok": applied.order_ok and order_ok,
                "notebook_version": result["notebook_version"],
                "fresh_check": True,
            }
        )

    return _Call(kernel.verify(list(expect.values()), list(explicit)), shape)


def _packages_list_call() -> _Call[PackagesList]:
    return _Call(kernel.packages_list(), lambda result, _: PackagesList.model_validate(result))


def _packages_change_call(
    action: str, names: Sequence[str], timeout: float | None
) -> _Call[PackagesResult]:
    if action not in ("add", "remove"):
        raise ValueError(f"unknown package action {action!r}")
    if not names:
        raise ValueError("name at least one package")
    return _Call(
        kernel.packages_change("add" if action == "add" else "remove", names),
        lambda result, _: PackagesResult.model_validate(result),
        timeout if timeout is not None else _PACKAGE_TIMEOUT,
    )


def _set_ui_call(name: str, value: Any) -> _Call[UIValueResult]:
    return _Call(
        kernel.set_ui_value(name, value),
        lambda result, _: UIValueResult.model_validate(result),
    )


def _variables_call(
    names: Sequence[str] | None, limit: int, max_repr: int
) -> _Call[VariablesReport]:
    return _Call(
        kernel.variables(names, limit=limit, max_repr=max_repr),
        lambda result, _: VariablesReport.model_validate(result),
    )


def _status_call(timeout: float | None) -> _Call[KernelStatus]:
    return _Call(kernel.status(), lambda result, _: KernelStatus.model_validate(result), timeout)


def _snapshot_call() -> _Call[NotebookSnapshot]:
    return _Call(kernel.snapshot(), lambda result, _: NotebookSnapshot.model_validate(result))


def _rechecked(
    result: ExecuteResult,
    before: tuple[str | None, str | None],
    after: tuple[str | None, str | None],
) -> ExecuteResult:
    """A fenced run's result with the server's and the file's views before and after it.

    A run whose kernel line is missing still gets evidence: the client's views do not
    depend on the kernel.
    """
    evidence = result.evidence or ScratchpadEvidence()
    evidence = evidence.model_copy(
        update={
            "server_before": before[0],
            "server_after": after[0],
            "file_before": before[1],
            "file_after": after[1],
        }
    )
    return result.model_copy(update={"evidence": evidence})


# --------------------------------------------------------------------------
# Notebook classes
# --------------------------------------------------------------------------


class _NotebookBase:
    def __init__(
        self,
        notebook: str | None,
        *,
        session_id: str | None,
        timeout: float | None,
        verify: bool,
    ) -> None:
        self.notebook = notebook
        self.session_id = session_id
        self.timeout = timeout
        self.verify = verify
        self._package_seen = False
        """A kernel call answered, so the kernel package (and its interrupt hook) is there."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(notebook={self.notebook!r})"

    def _timeout(self, call: _Call[Any]) -> float | None:
        return call.timeout if call.timeout is not None else self.timeout


class Notebook(_NotebookBase):
    """One notebook on one marimo server, with typed, verified operations.

    Example:
        >>> nb = Notebook(client, "analysis.py")
        >>> page = nb.cells()
        >>> cell = nb.read_cell(page.cells[0].id)
        >>> nb.apply([EditCell(cell=cell.id, code="x = 2", expected_hash=cell.code_hash)])

    Args:
        client: the server's client; it owns transport, sessions and tokens.
        notebook: the notebook file (for directory servers or several sessions).
        session_id: target one session exactly instead of by file.
        timeout: per-request limit in seconds (``None``: the client's default).
            When it passes, marimo interrupts the kernel, the person's cell included.
        verify: re-read the notebook after every `apply` (one extra request).
    """

    def __init__(
        self,
        client: MarimoClient,
        notebook: str | None = None,
        *,
        session_id: str | None = None,
        timeout: float | None = None,
        verify: bool = True,
    ) -> None:
        super().__init__(notebook, session_id=session_id, timeout=timeout, verify=verify)
        self.client = client

    def _run(self, call: _Call[T]) -> T:
        try:
            result = self._send(call, install=False)
        except kernel.KernelCodeMissing:
            # A new or restarted kernel: nothing ran, so sending the package with it is safe.
            result = self._send(call, install=True)
        self._package_seen = True
        return result

    def _send(self, call: _Call[T], *, install: bool) -> T:
        collector = kernel.ResultCollector()
        result = self.client.execute(
            call.request.source(install=install),
            notebook=self.notebook,
            session_id=self.session_id,
            timeout=self._timeout(call),
            on_chunk=collector,
        )
        return call.finish(result, collector)

    def cells(self, offset: int = 0, limit: int | None = None) -> CellsPage:
        """The cell map in notebook order (ids, previews, status, defs/refs, hashes)."""
        return self._run(_cells_call(offset, limit))

    def read_cell(self, cell: str, *, max_output_chars: int = 2_000_000) -> CellDetail:
        """One cell by id or name: code, code_hash, status, output, console, errors."""
        return self._run(_read_call(cell, max_output_chars))

    def read_cells(self, cells: Sequence[str], *, max_output_chars: int = 20_000) -> CellsRead:
        """Several cells in one request, each as `read_cell` gives it; unknown ones listed."""
        return self._run(_read_many_call(cells, max_output_chars))

    def codes_of(self, cells: Sequence[str]) -> dict[str, str]:
        """The current code of each cell that exists, in one request (for approval requests)."""
        return self._run(_codes_call(cells)) if cells else {}

    def graph(self, cell: str | None = None) -> NotebookGraph:
        """The static dataflow graph; with ``cell``, its ancestors and dependents."""
        return self._run(_graph_call(cell))

    def errors(self) -> ErrorsReport:
        """Every cell with an error, plus syntax errors, cycles and multiply-defined names."""
        return self._run(_errors_call())

    def apply(
        self,
        changes: Sequence[Change | Mapping[str, Any]],
        *,
        verify: bool | None = None,
        timeout: float | None = None,
        check_effects: bool = False,
        document: str | None = None,
    ) -> ApplyResult:
        """Apply changes atomically: all of them, or none and a clear error.

        Args:
            changes: the batch.
            verify: re-read the session afterwards (default: the notebook's setting).
            timeout: seconds for the request.
            check_effects: refuse a batch that changes which cell defines a name other
                cells read (a delete, an emptied or renamed definition, a new definition of
                a name others read) unless the changes acknowledge those cells.
            document: the document id (``document`` of an earlier result) the changes
                were planned on; another one (a restart, a new server, the file replaced
                on disk) refuses the batch, since cell ids are positional and reused.

        Raises:
            ValidationFailedError, StaleCellError, EditMatchError, CellNotFoundError:
                nothing was applied.
            NotSavedError: applied in the session, but the notebook file does not hold it.
        """
        result = self._run(_apply_call(changes, timeout, check_effects, document))
        if self.verify if verify is None else verify:
            result = self._run(_verify_call(result))
        return _saved(result)

    def create(
        self,
        code: str,
        *,
        before: str | None = None,
        after: str | None = None,
        name: str | None = None,
        hide_code: bool = False,
        run: bool = True,
    ) -> ApplyResult:
        """Create one cell (see `apply`)."""
        return self.apply(
            [
                CreateCell(
                    code=code, before=before, after=after, name=name, hide_code=hide_code, run=run
                )
            ]
        )

    def edit(self, cell: str, code: str, *, expected_hash: str, run: bool = True) -> ApplyResult:
        """Replace one cell's code if it still hashes to ``expected_hash`` (see `apply`)."""
        return self.apply([EditCell(cell=cell, code=code, expected_hash=expected_hash, run=run)])

    def replace(
        self,
        cell: str,
        old: str,
        new: str,
        *,
        replace_all: bool = False,
        expected_hash: str | None = None,
        run: bool = True,
    ) -> ApplyResult:
        """Find/replace in one cell (see `apply`)."""
        return self.apply(
            [
                ReplaceInCell(
                    cell=cell,
                    old=old,
                    new=new,
                    replace_all=replace_all,
                    expected_hash=expected_hash,
                    run=run,
                )
            ]
        )

    def delete(self, cell: str, *, expected_descendants: list[str] | None = None) -> ApplyResult:
        """Delete one cell; the result names the cells that read its names.

        Args:
            cell: the cell's id or name.
            expected_descendants: the descendants that were checked; if the cell has
                others by now, nothing is deleted (`StaleCellError`).
        """
        return self.apply([DeleteCell(cell=cell, expected_descendants=expected_descendants)])

    def move(
        self, cell: str, *, before: str | None = None, after: str | None = None
    ) -> ApplyResult:
        """Move one cell (see `apply`)."""
        return self.apply([MoveCell(cell=cell, before=before, after=after)])

    def run(self, cell: str) -> ApplyResult:
        """Run one cell (and its descendants in autorun mode)."""
        return self.apply([RunCell(cell=cell)])

    def packages_list(self) -> PackagesList:
        """Installed packages of the kernel's environment."""
        return self._run(_packages_list_call())

    def packages_add(self, *names: str, timeout: float | None = None) -> PackagesResult:
        """Install packages with the notebook's package manager."""
        return self._run(_packages_change_call("add", names, timeout))

    def packages_remove(self, *names: str, timeout: float | None = None) -> PackagesResult:
        """Remove packages with the notebook's package manager."""
        return self._run(_packages_change_call("remove", names, timeout))

    def set_ui_value(self, name: str, value: Any) -> UIValueResult:
        """Set the `mo.ui` element held by global ``name``; reports whether it took."""
        return self._run(_set_ui_call(name, value))

    def variables(
        self, names: Sequence[str] | None = None, *, limit: int = 50, max_repr: int = 200
    ) -> VariablesReport:
        """Kernel variables defined by cells: type, short repr, shape and columns."""
        return self._run(_variables_call(names, limit, max_repr))

    def status(self, *, timeout: float | None = None) -> KernelStatus:
        """Cell status counts. The request waits while a cell runs (executes queue)."""
        return self._run(_status_call(timeout))

    def interrupt(self) -> None:
        """Interrupt the running cell (a person's too: the kernel runs one thing at a time)."""
        self.client.interrupt(self.notebook, session_id=self.session_id)

    def restart(self) -> RestartResult:
        """Restart the kernel (the way out of a wedged one); says which variables were lost."""
        return self.client.restart(self.notebook, session_id=self.session_id)

    def snapshot(self) -> NotebookSnapshot:
        """Cells with full code, graph, errors and the file's sha256, in one request."""
        return self._run(_snapshot_call())

    def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        fence: bool = True,
        recheck: bool = False,
    ) -> ExecuteResult:
        """Run code in this notebook's scratchpad (nothing is saved).

        Args:
            code: Python; top-level ``await`` works.
            timeout: seconds (default: the notebook's).
            fence: run it inside the kernel's fence (`marimo_pair_tools.kernel.fence`):
                it may read the notebook, not change it behind the tools' rules. The
                result's ``evidence`` then says what the fence refused and whether
                the notebook changed.
            recheck: with the fence, also read the server's own copy of the notebook
                (a kiosk view: nothing runs in the kernel) and the notebook file's
                digest just before and right after, so ``evidence`` catches changes
                the kernel never sees or that the code hid from the kernel's report
                (two short requests more).
        """
        if not fence:
            return self._execute(code, timeout)
        before = self._server_view() if recheck else (None, None)
        nonce = secrets.token_hex(8)
        result = self._execute(kernel.scratchpad_source(code, nonce=nonce), timeout)
        if kernel.needs_install(result.stdout):  # a new kernel: the code did not run
            source = kernel.scratchpad_source(code, install=True, nonce=nonce)
            result = self._execute(source, timeout)
        self._package_seen = True
        result = kernel.with_evidence(result, nonce)
        if recheck:
            result = _rechecked(result, before, self._server_view())
        return result

    def _server_view(self) -> tuple[str | None, str | None]:
        """The server's copy of the notebook and the file's digest (`_server_view`).

        Neither is asked of the kernel, where the agent's code runs.
        """
        session = self.client.resolve_session(self.notebook, session_id=self.session_id)
        document = self.client.document_fingerprint(self.notebook, session_id=self.session_id)
        return document, file_digest(session.path)

    def _execute(self, code: str, timeout: float | None) -> ExecuteResult:
        return self.client.execute(
            code,
            notebook=self.notebook,
            session_id=self.session_id,
            timeout=timeout if timeout is not None else self.timeout,
        )

    def change_packages(self, add: Sequence[str], remove: Sequence[str]) -> PackagesResult:
        """Install ``add`` and uninstall ``remove`` (one request per direction)."""
        added = [self.packages_add(*add)] if add else []
        removed = [self.packages_remove(*remove)] if remove else []
        return _merge_packages(added + removed)

    def sessions_overview(self) -> dict[str, Any]:
        """This notebook and the notebooks open on its server (no ids a model needs)."""
        return _overview(self.notebook, self.client.base_url, self.client.sessions())


class AsyncNotebook(_NotebookBase):
    """The asyncio twin of `Notebook`: same operations, awaitable."""

    def __init__(
        self,
        client: AsyncMarimoClient,
        notebook: str | None = None,
        *,
        session_id: str | None = None,
        timeout: float | None = None,
        verify: bool = True,
    ) -> None:
        super().__init__(notebook, session_id=session_id, timeout=timeout, verify=verify)
        self.client = client

    async def _run(self, call: _Call[T]) -> T:
        try:
            result = await self._send(call, install=False)
        except kernel.KernelCodeMissing:
            result = await self._send(call, install=True)
        self._package_seen = True
        return result

    async def _send(self, call: _Call[T], *, install: bool) -> T:
        collector = kernel.ResultCollector()
        result = await self.client.execute(
            call.request.source(install=install),
            notebook=self.notebook,
            session_id=self.session_id,
            timeout=self._timeout(call),
            on_chunk=collector,
        )
        return call.finish(result, collector)

    async def cells(self, offset: int = 0, limit: int | None = None) -> CellsPage:
        """See `Notebook.cells`."""
        return await self._run(_cells_call(offset, limit))

    async def read_cell(self, cell: str, *, max_output_chars: int = 2_000_000) -> CellDetail:
        """See `Notebook.read_cell`."""
        return await self._run(_read_call(cell, max_output_chars))

    async def read_cells(
        self, cells: Sequence[str], *, max_output_chars: int = 20_000
    ) -> CellsRead:
        """See `Notebook.read_cells`."""
        return await self._run(_read_many_call(cells, max_output_chars))

    async def codes_of(self, cells: Sequence[str]) -> dict[str, str]:
        """See `Notebook.codes_of`."""
        return await self._run(_codes_call(cells)) if cells else {}

    async def graph(self, cell: str | None = None) -> NotebookGraph:
        """See `Notebook.graph`."""
        return await self._run(_graph_call(cell))

    async def errors(self) -> ErrorsReport:
        """See `Notebook.errors`."""
        return await self._run(_errors_call())

    async def apply(
        self,
        changes: Sequence[Change | Mapping[str, Any]],
        *,
        verify: bool | None = None,
        timeout: float | None = None,
        check_effects: bool = False,
        document: str | None = None,
    ) -> ApplyResult:
        """See `Notebook.apply`."""
        result = await self._run(_apply_call(changes, timeout, check_effects, document))
        if self.verify if verify is None else verify:
            result = await self._run(_verify_call(result))
        return _saved(result)

    async def create(
        self,
        code: str,
        *,
        before: str | None = None,
        after: str | None = None,
        name: str | None = None,
        hide_code: bool = False,
        run: bool = True,
    ) -> ApplyResult:
        """See `Notebook.create`."""
        return await self.apply(
            [
                CreateCell(
                    code=code, before=before, after=after, name=name, hide_code=hide_code, run=run
                )
            ]
        )

    async def edit(
        self, cell: str, code: str, *, expected_hash: str, run: bool = True
    ) -> ApplyResult:
        """See `Notebook.edit`."""
        return await self.apply(
            [EditCell(cell=cell, code=code, expected_hash=expected_hash, run=run)]
        )

    async def replace(
        self,
        cell: str,
        old: str,
        new: str,
        *,
        replace_all: bool = False,
        expected_hash: str | None = None,
        run: bool = True,
    ) -> ApplyResult:
        """See `Notebook.replace`."""
        return await self.apply(
            [
                ReplaceInCell(
                    cell=cell,
                    old=old,
                    new=new,
                    replace_all=replace_all,
                    expected_hash=expected_hash,
                    run=run,
                )
            ]
        )

    async def delete(
        self, cell: str, *, expected_descendants: list[str] | None = None
    ) -> ApplyResult:
        """See `Notebook.delete`."""
        return await self.apply([DeleteCell(cell=cell, expected_descendants=expected_descendants)])

    async def move(
        self, cell: str, *, before: str | None = None, after: str | None = None
    ) -> ApplyResult:
        """See `Notebook.move`."""
        return await self.apply([MoveCell(cell=cell, before=before, after=after)])

    async def run(self, cell: str) -> ApplyResult:
        """See `Notebook.run`."""
        return await self.apply([RunCell(cell=cell)])

    async def packages_list(self) -> PackagesList:
        """See `Notebook.packages_list`."""
        return await self._run(_packages_list_call())

    async def packages_add(self, *names: str, timeout: float | None = None) -> PackagesResult:
        """See `Notebook.packages_add`."""
        return await self._run(_packages_change_call("add", names, timeout))

    async def packages_remove(self, *names: str, timeout: float | None = None) -> PackagesResult:
        """See `Notebook.packages_remove`."""
        return await self._run(_packages_change_call("remove", names, timeout))

    async def set_ui_value(self, name: str, value: Any) -> UIValueResult:
        """See `Notebook.set_ui_value`."""
        return await self._run(_set_ui_call(name, value))

    async def variables(
        self, names: Sequence[str] | None = None, *, limit: int = 50, max_repr: int = 200
    ) -> VariablesReport:
        """See `Notebook.variables`."""
        return await self._run(_variables_call(names, limit, max_repr))

    async def status(self, *, timeout: float | None = None) -> KernelStatus:
        """See `Notebook.status`."""
        return await self._run(_status_call(timeout))

    async def interrupt(self) -> None:
        """See `Notebook.interrupt`."""
        await self.client.interrupt(self.notebook, session_id=self.session_id)

    async def restart(self) -> RestartResult:
        """See `Notebook.restart`."""
        return await self.client.restart(self.notebook, session_id=self.session_id)

    async def snapshot(self) -> NotebookSnapshot:
        """See `Notebook.snapshot`."""
        return await self._run(_snapshot_call())

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        fence: bool = True,
        recheck: bool = False,
    ) -> ExecuteResult:
        """See `Notebook.execute`."""
        if not fence:
            return await self._execute(code, timeout)
        before = await self._server_view() if recheck else (None, None)
        nonce = secrets.token_hex(8)
        result = await self._execute(kernel.scratchpad_source(code, nonce=nonce), timeout)
        if kernel.needs_install(result.stdout):
            source = kernel.scratchpad_source(code, install=True, nonce=nonce)
            result = await self._execute(source, timeout)
        self._package_seen = True
        result = kernel.with_evidence(result, nonce)
        if recheck:
            result = _rechecked(result, before, await self._server_view())
        return result

    async def _server_view(self) -> tuple[str | None, str | None]:
        """See `Notebook._server_view`."""
        session = await self.client.resolve_session(self.notebook, session_id=self.session_id)
        document = await self.client.document_fingerprint(self.notebook, session_id=self.session_id)
        return document, file_digest(session.path)

    async def _execute(self, code: str, timeout: float | None) -> ExecuteResult:
        return await self.client.execute(
            code,
            notebook=self.notebook,
            session_id=self.session_id,
            timeout=timeout if timeout is not None else self.timeout,
        )

    async def change_packages(self, add: Sequence[str], remove: Sequence[str]) -> PackagesResult:
        """See `Notebook.change_packages`."""
        added = [await self.packages_add(*add)] if add else []
        removed = [await self.packages_remove(*remove)] if remove else []
        return _merge_packages(added + removed)

    async def sessions_overview(self) -> dict[str, Any]:
        """See `Notebook.sessions_overview`."""
        return _overview(self.notebook, self.client.base_url, await self.client.sessions())


def _merge_packages(parts: Sequence[PackagesResult]) -> PackagesResult:
    return PackagesResult(
        manager=next((p.manager for p in parts if p.manager), None),
        results=[r for p in parts for r in p.results],
        restart_required=any(p.restart_required for p in parts),
        manager_missing=any(p.manager_missing for p in parts),
    )


def _overview(notebook: str | None, url: str, sessions: Sequence[SessionInfo]) -> dict[str, Any]:
    return {
        "notebook": notebook or (sessions[0].path if len(sessions) == 1 else None),
        "server": url,
        "open_notebooks": sorted({s.path or s.filename or "(unsaved)" for s in sessions}),
    }
