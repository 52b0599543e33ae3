"""Our static graph next to marimo's own ``DirectedGraph``, cell by cell.

marimo's graph is built the way its kernel builds it when a notebook runs: every cell
that compiles is registered, in notebook order. Ours is the kernel package's ``Graph``
over the same code. Both run in this process (the kernel package imports marimo).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from marimo._ast.compiler import compile_cell
from marimo._ast.load import load_app
from marimo._runtime.dataflow import DirectedGraph

from marimo_pair_tools.kernel.analysis import Graph, static

CORPUS = Path(__file__).parent / "notebooks"


def notebook_cells(path: Path) -> list[tuple[str, str]]:
    """``(cell_id, code)`` of every cell of a notebook file, as marimo loads it."""
    app = load_app(str(path))
    assert app is not None, path
    return [(str(d.cell_id), d.code) for d in app._cell_manager.cell_data()]


def marimo_graph(pairs: list[tuple[str, str]]) -> DirectedGraph:
    """marimo's graph of the cells that compile, registered in notebook order."""
    graph = DirectedGraph()
    for cid, code in pairs:
        try:
            impl = compile_cell(code, cell_id=cid)  # type: ignore[arg-type]
        except SyntaxError:
            continue
        graph.register_cell(cid, impl)  # type: ignore[arg-type]
    return graph


@dataclass
class Comparison:
    """Edges marimo has that we lack (unsafe) and edges we have that marimo lacks."""

    cells: int = 0
    missing: list[tuple[str, str, str]] = field(default_factory=list)
    extra: list[tuple[str, str, str]] = field(default_factory=list)
    mismatched_cells: set[tuple[str, str]] = field(default_factory=set)


def compare(path: Path) -> Comparison:
    """Compare parents and children of every cell of one notebook."""
    pairs = notebook_cells(path)
    theirs = marimo_graph(pairs)
    ours = Graph(pairs, lambda cid, code: static(code))
    result = Comparison(cells=len(pairs))
    for cid, _ in pairs:
        their_children = set(theirs.topology.children.get(cid, set()))  # type: ignore[arg-type]
        our_children = set(ours.children[cid])
        for child in their_children - our_children:
            result.missing.append((path.name, cid, child))
            result.mismatched_cells.update({(path.name, cid), (path.name, child)})
        for child in our_children - their_children:
            result.extra.append((path.name, cid, child))
            result.mismatched_cells.update({(path.name, cid), (path.name, child)})
    return result


def corpus() -> list[Path]:
    """The notebooks that ship with the tests."""
    return sorted(p for p in CORPUS.iterdir() if p.suffix in (".py", ".md"))


if __name__ == "__main__":
    total = Comparison()
    for nb in corpus():
        found = compare(nb)
        total.cells += found.cells
        total.missing += found.missing
        total.extra += found.extra
        total.mismatched_cells |= found.mismatched_cells
        print(f"{nb.name}: {found.cells} cells, missing {found.missing}, extra {found.extra}")
    print(
        f"corpus: {len(corpus())} notebooks, {total.cells} cells; "
        f"cells with a mismatch: {len(total.mismatched_cells)}; "
        f"edges missing: {len(total.missing)}, extra: {len(total.extra)}"
    )
