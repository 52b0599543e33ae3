"""Operations that change the notebook or the kernel, through marimo's code mode.

Each is one ``async with`` code-mode context: queued operations are applied
atomically on exit, after marimo's own dry-run compile. Our checks run first, on
a model of the notebook as each change will meet it, so a refusal leaves the
context with nothing applied.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import time
from typing import Any

from . import saved, views
from .analysis import Graph
from .fidelity import held, stored_forms
from .state import NotebookState, Refused, classify, jsonable
from .text import cut, some

__all__ = ["apply", "packages_change", "set_ui_value"]

Args = dict[str, Any]


def _same_code(stored: str, wanted: str) -> bool:
    """Equal, or equal up to marimo's format-on-save (same syntax tree)."""
    if stored == wanted:
        return True
    try:
        return ast.dump(ast.parse(stored)) == ast.dump(ast.parse(wanted))
    except SyntaxError:
        return False


class Batch:
    """Replays the changes on a model of the notebook (order, code, names) while
    queueing them on the code-mode context, so every check sees the state the
    change will meet."""

    def __init__(self, state: NotebookState, ctx: Any) -> None:
        self.state = state
        self.ctx = ctx
        self.order = state.order()
        self.code: dict[str, str] = {c.id: c.code for c in state.doc.cells}
        self.names = state.names()
        self.before = self.graph()
        self.created: dict[int, str] = {}
        self.gone: dict[str, int] = {}
        self.to_run: list[str] = []
        self.changed: set[str] = set()
        self.acks: dict[str, set[str] | None] = {}
        """Cell id -> readers its changes acknowledged (None: all of them)."""

    def acknowledge(self, cid: str, ch: Args) -> None:
        """Record the readers change ``ch`` of cell ``cid`` acknowledged (its own cell only)."""
        ack = ch.get("acknowledge_descendants")
        if ack is True:
            self.acks[cid] = None
        elif self.acks.get(cid, set()) is not None:
            given = [ack] if isinstance(ack, str) else ack if isinstance(ack, list) else []
            self.acks[cid] = (self.acks.get(cid) or set()) | {
                a for a in given if isinstance(a, str)
            }

    def graph(self) -> Graph:
        """The graph of the batch's current model."""
        return self.state.graph([(cid, self.code[cid]) for cid in self.order])

    def target(self, ref: str) -> str:
        """A cell id, name, or ``@i`` (the cell change ``i`` of this batch created)."""
        if ref.startswith("@"):
            index = int(ref[1:]) if ref[1:].isdigit() else -1
            if index not in self.created:
                raise Refused(
                    "not_found",
                    f"{ref!r} must name an earlier create change of this batch by its "
                    "index, e.g. '@0'.",
                    cell=ref,
                )
            ref = self.created[index]
        if ref in self.gone:
            raise Refused(
                "validation",
                f"cell {ref!r} is deleted earlier in this batch (change {self.gone[ref]}).",
                cell_id=ref,
            )
        return self.state.resolve(ref, self.order, self.names)

    def anchor(self, ch: Args) -> tuple[str | None, bool]:
        ref = ch.get("before") or ch.get("after")
        return (self.target(ref) if ref else None), bool(ch.get("after"))

    def place(self, cid: str, anchor: str | None, after: bool) -> None:
        if anchor == cid:
            raise Refused("validation", "a cell cannot be placed next to itself.", cell_id=cid)
        if cid in self.order:
            self.order.remove(cid)
        if anchor is None:
            self.order.append(cid)
        else:
            self.order.insert(self.order.index(anchor) + (1 if after else 0), cid)

    def check_syntax(self, new_code: str) -> None:
        error = self.state.analyse("", new_code)[2]
        if error:
            raise Refused("validation", f"syntax error at {error}.", syntax_error=error)

    def check_cas(self, cid: str, expected: str | None) -> str:
        """The cell's current code, if it still hashes to ``expected``."""
        current = self.code[cid]
        now = self.state.hash(current, cid)
        if expected is not None and now != expected:
            ran = self.state.kernel_code(cid, current)
            if ran is not None:
                # Unsettled: which text is the person's newest is not known here, so no
                # hash is offered to retry with; a fresh read_cell shows both.
                raise Refused(
                    "unsettled",
                    f"cell {cid} changed since it was read, and the kernel last ran code "
                    "that differs from the notebook's text.",
                    cell_id=cid,
                    current_code=current,
                    kernel_code=ran,
                )
            raise Refused(
                "stale",
                f"cell {cid} changed since it was read (expected hash {expected}, now {now}).",
                cell_id=cid,
                current_code=current,
                current_hash=now,
            )
        return current

    def check_descendants(self, cid: str, expected: list[str] | None) -> None:
        """The delete's compare-and-swap on the graph: no dependent appeared since inspect."""
        if expected is None:
            return
        now = self.graph()
        new = now.sort(now.descendants(cid) - set(expected))
        if new:
            reads = {c: now.edge_names(cid, c) for c in new}
            detail = some([f"{c} (reads {some(reads[c], 5) or 'indirectly'})" for c in new])
            raise Refused(
                "graph_changed",
                f"cell {cid} has descendants that were not checked: {detail}.",
                cell_id=cid,
                new_descendants=new,
            )

    def replaced(self, cid: str, current: str, ch: Args) -> str:
        """The code after an exact find/replace, or a refusal that says why it missed."""
        old = ch["old"]
        count = current.count(old) if old else 0
        if count == 1 or (count > 1 and ch["replace_all"]):
            self.check_seen(cid, current, old, ch)
            return str(current.replace(old, ch["new"], -1 if ch["replace_all"] else 1))
        if count:
            lines: list[str] = []
            at = current.find(old)
            while at >= 0 and len(lines) < 20:
                lines.append(str(current.count("\n", 0, at) + 1))
                at = current.find(old, at + 1)
            why = (
                f"matches {count} times (at lines {', '.join(lines)}); add surrounding text "
                "to make it unique, or set replace_all"
            )
        else:
            loose = old.strip() and " ".join(old.split()) in " ".join(current.split())
            why = "was not found" + (
                " (it would match if whitespace were ignored: copy the exact indentation and "
                "line breaks)"
                if loose
                else ""
            )
        raise Refused(
            "match",
            f"the `old` text {why} in cell {cid}.",
            cell_id=cid,
            matches=count,
            current_code=current,
            current_hash=self.state.hash(current, cid),
        )

    def check_seen(self, cid: str, current: str, old: str, ch: Args) -> None:
        """A cell read in part: every match must lie inside a part that was shown."""
        seen = ch.get("seen_ranges")
        if seen is None:
            return
        at = current.find(old)
        while at >= 0:
            if not any(a <= at and at + len(old) <= b for a, b in seen):
                raise Refused(
                    "unread",
                    f"the `old` text matches cell {cid} at characters {at:,}–{at + len(old):,}, "
                    "outside the parts of it you have read.",
                    cell_id=cid,
                )
            if not ch["replace_all"]:
                return
            at = current.find(old, at + 1)

    def step(self, i: int, ch: Args) -> dict[str, Any]:
        """Check and queue change ``i``; returns its result entry."""
        op, ctx = ch["op"], self.ctx
        result: dict[str, Any] = {
            "index": i,
            "op": op,
            "cell_id": None,
            "action": op,
            "diff": None,
            "deleted_code": None,
            "defined_names": [],
            "dependents": [],
        }
        if op == "create":
            self.check_syntax(ch["code"])
            name = ch.get("name") or None
            if name is not None and name in self.names.values():
                raise Refused(
                    "validation",
                    f"another cell is already named {name!r}; cell names must be unique.",
                )
            anchor, after = self.anchor(ch)
            cid = ctx.create_cell(
                ch["code"],
                hide_code=ch["hide_code"],
                name=name,
                before=None if after else anchor,
                after=anchor if after else None,
            )
            self.place(cid, anchor, after)
            self.acknowledge(cid, ch)
            self.created[i] = cid
            self.code[cid], self.names[cid] = ch["code"], name
            self.changed.add(cid)
            result.update(cell_id=cid, action="created", requested=ch["code"])
        elif op in ("edit", "replace"):
            cid = self.target(ch["cell"])
            current = self.check_cas(cid, ch.get("expected_hash"))
            self.acknowledge(cid, ch)
            new = ch["code"] if op == "edit" else self.replaced(cid, current, ch)
            self.check_syntax(new)
            if new != current:
                ctx.edit_cell(cid, code=new)
                self.changed.add(cid)
                self.code[cid] = new
            if op == "replace":
                result["diff"] = "\n".join(
                    difflib.unified_diff(
                        current.splitlines(),
                        new.splitlines(),
                        f"{cid} (before)",
                        f"{cid} (after)",
                        lineterm="",
                    )
                )
            action = ("edited" if op == "edit" else "replaced") if new != current else "unchanged"
            result.update(cell_id=cid, action=action, requested=new)
        elif op == "delete":
            cid = self.target(ch["cell"])
            # Compare-and-swap on what is deleted: a person's newer code is never lost.
            self.check_cas(cid, ch.get("expected_hash"))
            self.check_descendants(cid, ch.get("expected_descendants"))
            self.acknowledge(cid, ch)
            result.update(
                cell_id=cid,
                action="deleted",
                deleted_code=self.code[cid],
                defined_names=sorted(self.state.analyse(cid, self.code[cid])[0]),
            )
            ctx.delete_cell(cid)
            self.order.remove(cid)
            del self.code[cid]
            result["name"] = self.names.pop(cid)
            self.gone[cid] = i
            return result
        elif op == "move":
            cid = self.target(ch["cell"])
            anchor, after = self.anchor(ch)
            if anchor is None:
                raise Refused("validation", "a move needs `before` or `after`.")
            self.place(cid, anchor, after)
            ctx.move_cell(cid, before=None if after else anchor, after=anchor if after else None)
            result.update(cell_id=cid, action="moved")
        elif op == "run":
            cid = self.target(ch["cell"])
            result.update(cell_id=cid, action="ran")
        else:
            raise Refused("validation", f"unknown op {op!r}.")
        if op != "move" and ch.get("run", op == "run"):
            self.to_run.append(cid)
        result["name"] = self.names.get(cid)
        return result

    def check_effects(self, after: Graph) -> None:
        """Judge the batch by its effect on cells it did not touch.

        A name that loses its last definition (a delete, or an edit that empties or
        renames it) breaks its readers; a name that gains a first definition (a create
        or an edit defining a name others read, a builtin shadowed) changes what they
        compute. Either way the change of the cell whose definitions changed must
        acknowledge those readers: an acknowledgement vouches for its own change only.
        A definition that moves between cells is judged by the changes to those cells
        (read before edit, a read of a replaced cell).
        """
        touched = self.changed | set(self.created.values())
        affected: dict[str, set[str]] = {}
        for reader in after.order:
            if reader in touched:
                continue
            was = self.before.sources(reader) if reader in self.before.pos else {}
            now = after.sources(reader)
            for name in set(was) | set(now):
                if bool(was.get(name)) == bool(now.get(name)):
                    continue
                responsible = was.get(name, set()) ^ now.get(name, set())
                if any(
                    self.acks.get(c, set()) is None or reader in (self.acks.get(c) or set())
                    for c in responsible
                ):
                    continue
                affected.setdefault(reader, set()).add(name)
        missing = after.sort(affected)
        if missing:
            detail = some([f"{c} (reads {some(sorted(affected[c]), 5)})" for c in missing])
            raise Refused(
                "effects",
                "The batch removes the last definition of names other cells read, or defines "
                f"names they read that nothing defined, so {len(missing):,} cell(s) would break "
                "or change: "
                f"{detail}. The change that removes or adds the name must acknowledge them.",
                affected=missing,
            )

    def check_replacements(self, changes: list[Args], results: list[dict[str, Any]]) -> None:
        """A delete whose names a create of the batch defines again is an edit of that cell.

        The agent must then have read the deleted code (``read_hash``), as for an edit.
        """
        created_defs: set[str] = set()
        for cid in self.created.values():
            if cid in self.code:
                created_defs |= self.state.analyse("", self.code[cid])[0]
        for change, result in zip(changes, results, strict=True):
            if result["op"] != "delete" or not set(result["defined_names"]) & created_defs:
                continue
            deleted = result["deleted_code"] or ""
            if change.get("read_hash") != self.state.hash(deleted, result["cell_id"]):
                raise Refused(
                    "unread",
                    f"change {result['index']} deletes cell {result['cell_id']} and the batch "
                    f"creates {', '.join(sorted(set(result['defined_names']) & created_defs))} "
                    "again: that replaces the cell, which is an edit of code you have not read "
                    "in its current form.",
                    cell_id=result["cell_id"],
                )

    def check_graph(self) -> Graph:
        """marimo's own dry run sees only cells the kernel has run; check every cell's code."""
        after = self.graph()
        fresh = {
            n: ids
            for n, ids in after.multiply.items()
            if not set(ids) <= set(self.before.multiply.get(n, ()))
        }
        if fresh:
            detail = some([f"{n!r} in cells {some(ids, 5)}" for n, ids in fresh.items()], 10, "; ")
            raise Refused(
                "validation",
                f"The batch would define a name in more than one cell: {detail}. Each name "
                "may be defined by one cell only.",
                multiply_defined=fresh,
            )
        old_cycles = [set(c) for c in self.before.cycles]
        cycles = [c for c in after.cycles if not any(set(c) <= old for old in old_cycles)]
        if cycles:
            detail = some([after.describe_cycle(c) for c in cycles], 3, " | ")
            raise Refused(
                "validation", f"The batch would create a dependency cycle: {detail}.", cycles=cycles
            )
        return after


def _verify(
    state: NotebookState, batch: Batch, results: list[dict[str, Any]], after: Graph
) -> bool:
    """Check every change landed, in the document and in the kernel's graph.

    The document here is the context's snapshot with the transaction applied (what
    marimo saves and sends to the browser); the kernel's graph is what runs. The
    server-side copy is re-read only by Notebook(verify=True), one execute later.
    """
    stored = {c.id: c.code for c in state.doc.cells}
    kernel = state.ctx.graph.cells
    order_ok = [c.id for c in state.doc.cells] == batch.order
    for result in results:
        cid, sets_code = result["cell_id"], result.pop("requested", None) is not None
        # Later changes of the batch may change the same cell again: compare with its final code.
        requested = batch.code.get(cid) if sets_code else None
        problem = None
        if result["op"] == "delete":
            if cid in stored:
                problem = "the cell is still in the notebook"
            elif cid in kernel:
                problem = "the kernel still has the cell"
            lost = set(result["defined_names"]) - set(after.by_name)
            was_read = batch.before.children.get(cid, set())
            result["dependents"] = [
                c
                for c in after.order
                if c in was_read and set(batch.before.edge_names(cid, c)) & lost
            ]
        elif cid not in stored:
            problem = "the cell is not in the notebook"
        elif requested is not None and not _same_code(stored[cid], requested):
            problem = "the notebook holds different code than requested"
        elif (
            requested is not None and cid in kernel and not _same_code(kernel[cid].code, requested)
        ):
            problem = "the kernel holds different code than requested"
        elif result["op"] in ("create", "move") and not order_ok:
            problem = "the cell order differs from the requested order"
        result["code_hash"] = state.hash(stored[cid], cid) if cid in stored else None
        result["length"] = len(stored[cid]) if cid in stored else None
        result["formatted"] = bool(
            requested is not None and cid in stored and stored[cid] != requested
        )
        result["verified"] = problem is None
        result["problem"] = problem
    return order_ok


def _check_format(state: NotebookState, batch: Batch, results: list[dict[str, Any]]) -> None:
    """Refuse code the notebook's file format would save as other text (a ``.md`` file)."""
    touched = [
        r["cell_id"]
        for r in results
        if r["op"] in ("create", "edit", "replace") and r["cell_id"] in batch.code
    ]
    touched = list(dict.fromkeys(touched))
    codes = [batch.code[cid] for cid in touched]
    stored = stored_forms(state.kernel.app_metadata.filename, codes)
    if stored is None:
        return
    for cid, code, kept in zip(touched, codes, stored, strict=True):
        if not held(kept, code):
            raise Refused(
                "format",
                f"marimo's Markdown notebook format cannot hold cell {cid} as written: it "
                "saves a markdown cell as prose (and a SQL cell as a sql block) and would "
                "read this one back as other code, so the file would not hold your text. "
                "Nothing was applied. The file would hold:\n```python\n"
                f"{cut(kept, 2000)}\n```" + _format_remedy(code),
                cell_id=cid,
                stored_code=cut(kept, 2000),
            )


def _format_remedy(code: str) -> str:
    """A way to keep markdown text as written; a SQL cell's only way is the form shown."""
    if "mo.md(" in code:
        return (
            "\nOr keep the text in a code cell the format holds as written: assign it "
            "(`_text = mo.md(...)`) and put `_text` on the last line."
        )
    return ""


SAVE_WAIT = 3.0
"""Seconds to wait for marimo's save of a change (measured: ~10 ms on a local disk)."""


def _count(codes: list[str], code: str) -> int:
    want = saved.norm(code)
    return sum(saved.norm(c) == want for c in codes)


def _missing_on_disk(codes: list[str], batch: Batch, results: list[dict[str, Any]]) -> list[str]:
    """What of this batch the file does not hold (other people's unsaved edits aside).

    Exact code, counted: a cell whose code is also another cell's, or an edit that only
    changes a comment, is on disk only when the file holds that code as often as the
    notebook does.
    """
    final = list(batch.code.values())
    problems = []
    for result in results:
        cid = result["cell_id"]
        if result["op"] == "delete":
            code = result["deleted_code"] or ""
            if _count(codes, code) > _count(final, code):
                problems.append(f"deleted cell {cid} is still in the file")
        elif (
            result["op"] in ("create", "edit", "replace")
            and cid in batch.code
            and _count(codes, batch.code[cid]) < _count(final, batch.code[cid])
        ):
            problems.append(f"the new code of cell {cid} is not in the file")
    return problems


def _why_unsaved(path: str) -> str:
    """Likely causes a kernel can see; marimo's own error stays in the server's log."""
    hints = []
    try:
        if not os.access(path, os.W_OK) or not os.access(os.path.dirname(path) or ".", os.W_OK):
            hints.append("the file or its folder is not writable")
        stats = os.statvfs(os.path.dirname(path) or ".")
        if stats.f_bavail * stats.f_frsize < 1 << 20:
            hints.append("the disk is (nearly) full")
    except OSError as exc:
        hints.append(f"{type(exc).__name__}: {exc}")
    return "; ".join(hints) or (
        "the server's save failed (read-only or immutable file, full disk, or the file is "
        "locked); the server's log has marimo's error"
    )


def on_disk(
    state: NotebookState, batch: Batch, results: list[dict[str, Any]], before: bytes | None
) -> tuple[bool | None, str | None]:
    """Whether the notebook file holds the batch, waiting briefly for marimo's save.

    A save cut short (a full disk) leaves a truncated file; it is put back as it was
    (``before``), and the change stays in the session for a later save.
    Returns ``(None, None)`` when nothing needed saving or the notebook has no file.
    """
    path = state.kernel.app_metadata.filename
    if not path or not any(r["op"] in ("create", "edit", "replace", "delete") for r in results):
        return None, None
    deadline = time.monotonic() + SAVE_WAIT
    problems: list[str] = []
    found: tuple[saved.FileCell, ...] = ()
    while True:
        try:
            found = saved.file_cells(path)
            problems = _missing_on_disk([c.code for c in found], batch, results)
        except (OSError, ValueError, SyntaxError) as exc:  # a half-written file parses badly
            problems = [f"the file cannot be read back ({type(exc).__name__}: {exc})"]
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if not problems:
        saved.record_saved(state, found)
        return True, None
    restored = _restore_if_cut(path, before)
    return False, f"{path}: {'; '.join(problems)}. Likely cause: {_why_unsaved(path)}.{restored}"


def _is_cut(path: str) -> bool:
    """A write cut short: the file no longer parses (as Python, for a .py notebook)."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
        if path.endswith(".py"):
            ast.parse(content)  # marimo's own parser is lenient with broken cells
        else:
            saved.file_cells(path)
    except (OSError, ValueError, SyntaxError):
        return True
    return False


def _restore_if_cut(path: str, before: bytes | None) -> str:
    if not _is_cut(path):
        return ""  # the file parses: it is someone's whole version, not ours to replace
    if before is None:
        return " The file no longer parses (a cut write)."
    try:
        with open(path, "wb") as handle:  # in place, as marimo writes: same inode
            handle.write(before)
    except OSError as exc:
        return f" The file no longer parses and could not be restored ({exc})."
    return " The cut write was undone: the file holds its previous version again."


def _check_document(state: NotebookState, expected: str | None) -> None:
    """Refuse a change planned on another document (restart, new server, file replaced).

    Cell ids are positional and reused, so what the agent read in the old document
    says nothing about the cells that carry those ids now.
    """
    if expected is None:
        return
    current = state.document_id()
    if current != expected:
        raise Refused(
            "document_changed",
            "the notebook behind these tools changed since your reads (the kernel restarted, "
            "a new server took the port, or the notebook file was replaced on disk); cell ids "
            "may now name other cells.",
        )


async def apply(state: NotebookState, args: Args) -> dict[str, Any]:
    """Apply a batch of changes atomically: all of them, or none and a refusal."""
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    if any(c.get("op") != "run" for c in args["changes"]):
        _check_document(state, args.get("document"))
    before, outside = saved.outside_changes(state)
    if outside and any(c.get("op") != "run" for c in args["changes"]):
        raise Refused(
            "diverged",
            f"the notebook file was changed outside marimo (an editor, git checkout) and not "
            f"reloaded: {outside}. Any change now would save the running notebook over that "
            "work.",
        )
    async with state.ctx as ctx:
        batch = Batch(state, ctx)
        for i, ch in enumerate(args["changes"]):
            try:
                results.append(batch.step(i, ch))
            except (Refused, ValueError, KeyError) as exc:
                kind = exc.kind if isinstance(exc, Refused) else classify(exc)
                details = exc.details if isinstance(exc, Refused) else {}
                text = str(exc) if isinstance(exc, Refused) else f"{type(exc).__name__}: {exc}"
                raise Refused(
                    kind, f"change {i} ({ch.get('op')}): {text}", change_index=i, **details
                ) from None
        for cid in dict.fromkeys(batch.to_run):
            if cid in batch.gone:
                raise Refused(
                    "validation",
                    f"cell {cid} is deleted in this batch and cannot also run.",
                    cell_id=cid,
                )
            ctx.run_cell(cid)
        after = batch.check_graph()
        if args.get("check_effects"):
            batch.check_effects(after)
            batch.check_replacements(args["changes"], results)
        _check_format(state, batch, results)
        checked = time.perf_counter()
    # Leaving the context applied the batch (or raised: then nothing was applied).
    applied = time.perf_counter()
    order_ok = _verify(state, batch, results, after)
    held, save_problem = on_disk(state, batch, results, before)
    saved_at = time.perf_counter()
    explicit, reactive = set(batch.to_run), set()
    if explicit and state.kernel.reactive_execution_mode == "autorun":
        for cid in explicit | (batch.changed & set(after.order)):
            reactive |= after.descendants(cid)
    names = state.names()
    ran = [
        views.run_report(state, c.id, c.id in explicit, names)
        for c in state.doc.cells
        if c.id in explicit or c.id in reactive
    ]
    timings = {
        "check_ms": (checked - started) * 1000,
        "apply_ms": (applied - checked) * 1000,
        "disk_ms": (saved_at - applied) * 1000,
        "report_ms": (time.perf_counter() - saved_at) * 1000,
    }
    return {
        "saved": held,
        "save_problem": save_problem,
        "changes": results,
        "ran": ran,
        "order_ok": order_ok,
        "timings": timings,
        "order": state.order(),
        "notebook_version": state.version(),
    }


async def packages_change(state: NotebookState, args: Args) -> dict[str, Any]:
    """Install or remove packages with the notebook's package manager."""
    manager = state.kernel.packages_callbacks.package_manager
    async with state.ctx as ctx:
        queue = ctx.packages.add if args["action"] == "add" else ctx.packages.remove
        queue(*args["names"])
        # Flushed here rather than on exit: exit prints the outcomes but drops them.
        outcomes = await ctx.packages._flush()
    results = [
        {"package": r.op.package, "action": args["action"], "outcome": r.outcome} for r in outcomes
    ]
    return {
        "manager": getattr(manager, "name", None),
        "results": results,
        "restart_required": any(r["outcome"] == "restart-required" for r in results),
        "manager_missing": manager is None,
    }


def _value_for(element: Any, value: Any) -> Any:
    """A JSON array sent as text means a list for a widget whose page value is a list (a
    dropdown, a multiselect), and stays text for one that holds text (a text box)."""
    # The value the page started with: its type is the widget's (a set may have changed it).
    page_value = getattr(element, "_initial_value_frontend", element.value)
    if isinstance(value, str) and isinstance(page_value, (list, tuple)):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, list) else value
    return value


async def set_ui_value(state: NotebookState, args: Args) -> dict[str, Any]:
    """Set the `mo.ui` element held by global ``name`` and read its value back."""
    name = args["name"]
    async with state.ctx as ctx:
        if name not in ctx.globals:
            raise Refused(
                "not_found",
                f"No variable {name!r} in the kernel: the cell that defines it may not have run.",
                cell=name,
            )
        element = ctx.globals[name]
        if not (hasattr(element, "_id") and hasattr(element, "value")):
            raise Refused(
                "validation",
                f"{name!r} is a {type(element).__name__}, not a marimo UI element (mo.ui.*).",
            )
        before = jsonable(element.value)
        wanted = _value_for(element, args["value"])
        ctx.set_ui_value(element, wanted)
    # Values are applied (and dependent cells re-run) when the context exits.
    current = state.ctx.globals.get(name)
    value = jsonable(getattr(current, "value", None))
    names = state.names()
    built = state.graph()
    readers = {cid for cid in built.order if name in built.info[cid][1]}
    for cid in list(readers):
        readers |= built.descendants(cid)
    ran = [views.run_report(state, cid, False, names) for cid in built.sort(readers)]
    return {
        "name": name,
        "element_type": type(element).__name__,
        "requested": args["value"],
        "before": before,
        "value": value,
        "took": value == jsonable(wanted),
        "ran": ran,
    }
