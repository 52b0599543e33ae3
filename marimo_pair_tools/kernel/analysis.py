"""marimo's own static analysis of cell code, and the dataflow graph built from it.

``ctx.graph`` holds only cells the kernel has run; a notebook opened but not run
has cells missing from it. The descendant check must see every cell, so the graph
here is built from every cell's code with marimo's compiler front end, and its edges
are resolved by marimo's own dataflow code: SQL references are hierarchical
(``ATTACH``, ``CREATE TABLE db.t``, then ``FROM db.main.t``), a SQL table is no
Python variable, and a cell that ``del``-s a name comes after the cells that read it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import Any, NamedTuple

from marimo._ast.compiler import module_compile
from marimo._ast.variables import is_local
from marimo._ast.visitor import ScopedVisitor
from marimo._runtime.dataflow import edges as marimo_edges
from marimo._runtime.dataflow.definitions import DefinitionRegistry

__all__ = ["BUILTINS", "Analysis", "Graph", "static"]

BUILTINS = frozenset(dir(builtins))
_SQL_KINDS = frozenset({"table", "view", "schema", "catalog"})
_CONFLICTS = DefinitionRegistry()  # only its (stateless) rule for what counts as one object


class Analysis(NamedTuple):
    """What marimo's ``compile_cell`` knows of one cell's code, without bytecode.

    The first three fields are ``(defs, refs, syntax_error)``; the rest is what
    marimo's edge resolution reads (a ``CellImpl`` has the same attributes).
    """

    defs: frozenset[str]
    refs: frozenset[str]
    syntax_error: str | None
    variable_data: Mapping[str, list[Any]] = {}
    sql_refs: Mapping[str, Any] = {}
    language: str = "python"
    deleted_refs: frozenset[str] = frozenset()


def from_cell(impl: Any) -> Analysis:
    """The analysis marimo's kernel made when it compiled the cell (a ``CellImpl``)."""
    return Analysis(
        frozenset(impl.defs),
        frozenset(impl.refs),
        None,
        dict(impl.variable_data),
        dict(impl.sql_refs),
        str(impl.language),
        frozenset(impl.deleted_refs),
    )


# Results by code, kept while this module lives in the kernel (scratchpad bindings
# do not outlive a request; a module does).
_CACHE: dict[str, Analysis] = {}
_CACHE_LIMIT = 20_000


def static(code: str) -> Analysis:
    """What marimo's compile_cell computes for defs/refs, without building bytecode."""
    found = _CACHE.get(code)
    if found is None:
        if len(_CACHE) > _CACHE_LIMIT:
            _CACHE.clear()
        found = _CACHE[code] = _analyse(code)
    return found


def _analyse(code: str) -> Analysis:
    try:
        tree = module_compile(code.replace("\u00a0", " "))
    except SyntaxError as exc:
        return Analysis(frozenset(), frozenset(), f"line {exc.lineno}: {exc.msg}")
    except Exception as exc:  # noqa: BLE001 - e.g. NUL bytes: any failure is the code's fault
        return Analysis(frozenset(), frozenset(), f"{type(exc).__name__}: {exc}")
    visitor = ScopedVisitor("cell___marimo_pair__")
    visitor.visit(tree)
    defs = frozenset(n for n in visitor.defs if not is_local(n))
    return Analysis(
        defs,
        frozenset(visitor.refs),
        None,
        {n: visitor.variable_data[n] for n in defs if n in visitor.variable_data},
        visitor.sql_refs,
        visitor.language,
        frozenset(visitor.deleted_refs),
    )


class Graph:
    """The dataflow graph of the given cells, in notebook order.

    Edges are marimo's (``marimo._runtime.dataflow.edges``). marimo's kernel finds a
    cell's edges when it registers the cell, partly from the new cell's references and
    partly from its definitions, so the result can depend on the order cells were
    registered in; here both ways are taken for every pair of cells, which yields
    every edge marimo has in any order, and an extra edge only where its two ways
    disagree (a safe extra: one more descendant to check before a delete).
    """

    def __init__(
        self, pairs: Iterable[tuple[str, str]], analyse: Callable[[str, str], Analysis]
    ) -> None:
        pairs = list(pairs)
        self.order = [cid for cid, _ in pairs]
        self.pos = {cid: i for i, cid in enumerate(self.order)}
        self.info: dict[str, Analysis] = {cid: analyse(cid, code) for cid, code in pairs}
        self.by_name: dict[str, list[str]] = {}
        for cid in self.order:
            for name in self.info[cid].defs:
                self.by_name.setdefault(name, []).append(cid)
        # marimo's index of definitions, for resolving SQL references (only they need it).
        self.registry = DefinitionRegistry()
        if any(facts.sql_refs for facts in self.info.values()):
            for cid in self.order:
                for name, data in self.info[cid].variable_data.items():
                    self.registry.register_definition(cid, name, data)  # type: ignore[arg-type]
        self.parents: dict[str, set[str]] = {cid: set() for cid in self.order}
        self.children: dict[str, set[str]] = {cid: set() for cid in self.order}
        # (parent, child) -> names of the parent the child reads
        self.via: dict[tuple[str, str], set[str]] = {}
        self._link()
        self.multiply = self._multiply()
        self.cycles = self._cycles()

    # -- edges, by marimo's rules ---------------------------------------------------

    def _edge(self, parent: str, child: str, name: str) -> None:
        if parent == child:
            return
        self.parents[child].add(parent)
        self.children[parent].add(child)
        self.via.setdefault((parent, child), set()).add(name)

    def _link(self) -> None:
        readers: dict[str, set[str]] = {}
        for cid in self.order:
            for name in self.info[cid].refs:
                readers.setdefault(name, set()).add(cid)
        topology = SimpleNamespace(cells=self.info)
        sql_cells = SimpleNamespace(
            cells={cid: f for cid, f in self.info.items() if f.language == "sql"}
        )
        for cid in self.order:
            facts = self.info[cid]
            # Its definitions -> the cells that refer to them (marimo's children rule).
            for name, data in facts.variable_data.items():
                if data[-1].language == "sql":
                    found: set[str] = set(marimo_edges.get_referring_cells(name, "sql", sql_cells))
                else:
                    found = readers.get(name, set())
                for child in found:
                    self._edge(cid, child, name)
            # Its references -> the cells that define them (marimo's parents rule).
            if facts.sql_refs:
                resolved = marimo_edges.resolve_cell_references(
                    cid,  # type: ignore[arg-type]
                    facts,  # type: ignore[arg-type]
                    topology,
                    self.registry,
                )
                for ref, parents in resolved.items():
                    for parent in parents:
                        self._edge(parent, cid, self._defined_as(parent, ref, facts))
            else:
                self._link_plain(cid, facts)
            # A cell that deletes a name runs after every cell that reads it.
            for name in facts.deleted_refs:
                for reader in readers.get(name, ()):
                    self._edge(reader, cid, name)
        self._link_containers()

    container_edges: set[tuple[str, str]]
    """The extra edges `_link_containers` made (not in marimo's graph)."""

    def _link_containers(self) -> None:
        """A table created inside a catalog or schema another cell makes (``ATTACH ... AS
        db`` then ``CREATE TABLE db.t``) needs that cell: marimo's graph has no such edge,
        so deleting the ATTACH went through unacknowledged. An extra edge, safe side."""
        containers: dict[str, set[str]] = {}
        self.container_edges: set[tuple[str, str]] = set()
        for cid in self.order:
            for name, data in self.info[cid].variable_data.items():
                if data and data[-1].kind in ("catalog", "schema"):
                    containers.setdefault(name, set()).add(cid)
        if not containers:
            return
        for cid in self.order:
            for data in self.info[cid].variable_data.values():
                ref = getattr(data[-1], "sql_ref", None) if data else None
                for qualifier in (getattr(ref, "catalog", None), getattr(ref, "schema", None)):
                    for parent in containers.get(qualifier or "", ()):
                        if parent != cid:
                            self._edge(parent, cid, qualifier or "")
                            self.container_edges.add((parent, cid))

    def _link_plain(self, cid: str, facts: Analysis) -> None:
        """marimo's ``resolve_cell_references`` for a cell without SQL references.

        Without them it reduces to this; spelled out because it runs for every cell of
        10,000-cell notebooks, on every change. ``tests/test_corpus.py`` compares the
        result with marimo's own graph.
        """
        python = facts.language == "python"
        for name in facts.refs:
            for parent in self.by_name.get(name, ()):
                data = self.info[parent].variable_data.get(name)
                if parent == cid or not data:
                    continue
                if python and data[-1].kind in _SQL_KINDS:
                    continue  # a SQL table or schema is no Python variable
                self._edge(parent, cid, name)

    def _defined_as(self, parent: str, ref: str, reader: Analysis) -> str:
        """The name ``parent`` defines that ``ref`` resolved to (``db.main.t`` -> ``t``)."""
        defs = self.info[parent].variable_data
        if ref in defs:
            return ref
        sql_ref = reader.sql_refs.get(ref)
        for name, data in defs.items():
            if sql_ref is not None and sql_ref.contains_hierarchical_ref(name, data[-1].kind):
                return str(name)
        return ref

    def _multiply(self) -> dict[str, list[str]]:
        """Names defined by more than one cell, as marimo's ``DefinitionRegistry`` counts them.

        Qualified SQL tables with one leaf name (``a.t`` and ``b.t``) are different
        objects: marimo does not count them as one name defined twice.
        """
        found: dict[str, set[str]] = {}
        for name, ids in self.by_name.items():
            if len(ids) < 2:
                continue
            groups: dict[tuple[str, str], set[str]] = {}
            for cid in ids:
                data = self.info[cid].variable_data.get(name)
                # A definition marimo has no data for (none today) still counts by name.
                key = _CONFLICTS._conflict_key(name, data[-1]) if data else ("global", name)
                groups.setdefault(key, set()).add(cid)
            for cells in groups.values():
                if len(cells) > 1:
                    found.setdefault(name, set()).update(cells)
        return {name: self.sort(cells) for name, cells in sorted(found.items())}

    def sources(self, cid: str) -> dict[str, set[str]]:
        """Each name ``cid`` reads from other cells, and the cells it comes from."""
        found: dict[str, set[str]] = {}
        for parent in self.parents[cid]:
            for name in self.via[(parent, cid)]:
                found.setdefault(name, set()).add(parent)
        return found

    def sort(self, ids: Iterable[str]) -> list[str]:
        """Cell ids in notebook order."""
        return sorted(ids, key=self.pos.__getitem__)

    def defs(self, cid: str) -> frozenset[str]:
        """Names the cell defines."""
        return self.info[cid][0]

    def refs(self, cid: str) -> list[str]:
        """Refs worth showing: builtins only when some cell redefines them."""
        return sorted(r for r in self.info[cid][1] if r not in BUILTINS or r in self.by_name)

    def closure(self, cid: str, edges: dict[str, set[str]]) -> set[str]:
        """Every cell reachable from ``cid`` along ``edges`` (children or parents)."""
        seen: set[str] = set()
        todo = list(edges[cid])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(edges[node])
        seen.discard(cid)
        return seen

    def descendants(self, cid: str) -> set[str]:
        """Every cell that reads, directly or not, a name ``cid`` defines."""
        return self.closure(cid, self.children)

    def _cycles(self) -> list[list[str]]:
        # Tarjan's strongly connected components, iteratively (notebooks get long).
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []
        for root in self.order:
            if root in index:
                continue
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            work = [(root, iter(self.children[root]))]
            while work:
                node, children = work[-1]
                pushed = False
                for child in children:
                    if child not in index:
                        index[child] = low[child] = len(index)
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(self.children[child])))
                        pushed = True
                        break
                    if child in on_stack:
                        low[node] = min(low[node], index[child])
                if pushed:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(self.sort(component))
        return found

    def edge_names(self, parent: str, child: str) -> list[str]:
        """The names of ``parent`` that ``child`` reads (a ``del`` counts as a read)."""
        return sorted(self.via.get((parent, child), ()))

    def describe_cycle(self, component: list[str]) -> str:
        """``a -> b via x; b -> a via y`` for an error message."""
        members = set(component)
        edges = [
            f"{p} -> {c} via {', '.join(self.edge_names(p, c)[:5])}"
            for p in component
            for c in self.sort(self.children[p] & members)
        ]
        more = len(edges) - 20
        return "; ".join(edges[:20]) + (f"; and {more:,} more edges" if more > 0 else "")

    def payload(self, names: dict[str, str | None]) -> dict[str, Any]:
        """The whole graph as JSON: cells with defs/refs/edges, cycles, multiply-defined names."""
        cells = [
            {
                "id": cid,
                "name": names.get(cid),
                "defs": sorted(self.info[cid][0]),
                "refs": self.refs(cid),
                "parents": self.sort(self.parents[cid]),
                "children": self.sort(self.children[cid]),
                "syntax_error": self.info[cid][2],
            }
            for cid in self.order
        ]
        return {
            "cells": cells,
            "cycles": self.cycles,
            "multiply_defined": dict(sorted(self.multiply.items())),
        }

    def focus(self, cid: str, names: dict[str, str | None]) -> dict[str, Any]:
        """One cell's ancestors and dependents, each dependent with the names it uses."""
        defs = self.info[cid][0]
        descendants = self.sort(self.descendants(cid))
        return {
            "cell_id": cid,
            "name": names.get(cid),
            "defs": sorted(defs),
            "ancestors": self.sort(self.closure(cid, self.parents)),
            "descendants": descendants,
            "dependents": [
                {
                    "id": d,
                    "name": names.get(d),
                    "uses": self.edge_names(cid, d),
                    "direct": d in self.children[cid],
                }
                for d in descendants
            ],
        }
