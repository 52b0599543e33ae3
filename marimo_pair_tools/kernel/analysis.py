"""marimo's own static analysis of cell code, and the dataflow graph built from it.

``ctx.graph`` holds only cells the kernel has run; a notebook opened but not run
has cells missing from it. The descendant check must see every cell, so the graph
here is built from every cell's code with marimo's compiler front end.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import Any

from marimo._ast.compiler import module_compile
from marimo._ast.variables import is_local
from marimo._ast.visitor import ScopedVisitor

__all__ = ["BUILTINS", "Analysis", "Graph", "static"]

BUILTINS = frozenset(dir(builtins))

Analysis = tuple[frozenset[str], frozenset[str], str | None]
"""``(defs, refs, syntax_error)`` of one cell's code."""

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
        return frozenset(), frozenset(), f"line {exc.lineno}: {exc.msg}"
    except Exception as exc:  # noqa: BLE001 - e.g. NUL bytes: any failure is the code's fault
        return frozenset(), frozenset(), f"{type(exc).__name__}: {exc}"
    visitor = ScopedVisitor("cell___marimo_pair__")
    visitor.visit(tree)
    defs = frozenset(n for n in visitor.defs if not is_local(n))
    return defs, frozenset(visitor.refs), None


class Graph:
    """The dataflow graph of the given cells, in notebook order."""

    def __init__(
        self, pairs: Iterable[tuple[str, str]], analyse: Callable[[str, str], Analysis]
    ) -> None:
        pairs = list(pairs)
        self.order = [cid for cid, _ in pairs]
        self.pos = {cid: i for i, cid in enumerate(self.order)}
        self.info = {cid: analyse(cid, code) for cid, code in pairs}
        self.by_name: dict[str, list[str]] = {}
        for cid in self.order:
            for name in self.info[cid][0]:
                self.by_name.setdefault(name, []).append(cid)
        self.parents: dict[str, set[str]] = {cid: set() for cid in self.order}
        self.children: dict[str, set[str]] = {cid: set() for cid in self.order}
        for cid in self.order:
            for name in self.info[cid][1]:
                for parent in self.by_name.get(name, ()):
                    if parent != cid:
                        self.parents[cid].add(parent)
                        self.children[parent].add(cid)
        self.multiply = {n: ids for n, ids in self.by_name.items() if len(ids) > 1}
        self.cycles = self._cycles()

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
        """The names ``child`` reads from ``parent``."""
        return sorted(self.info[parent][0] & self.info[child][1])

    def describe_cycle(self, component: list[str]) -> str:
        """``a -> b via x; b -> a via y`` for an error message."""
        members = set(component)
        edges = [
            f"{p} -> {c} via {', '.join(self.edge_names(p, c))}"
            for p in component
            for c in self.sort(self.children[p] & members)
        ]
        return "; ".join(edges)

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
                    "uses": sorted(self.info[d][1] & defs),
                    "direct": d in self.children[cid],
                }
                for d in descendants
            ],
        }
