"""Per-cell size factors of a count table, and the node-weighted gene histograms they lead to.

* `size_factors(source, spec)`: `spec` "total" gives each cell's total count over all genes divided by the mean
  total (cells with total 0: size factor 0, left out of inference); any other `spec` names a column of size
  factors: an `obs` column of an AnnData (file or object), or a named column of a CSV/TSV table (then not a gene).
  A missing, non-numeric, zero or negative size factor is one DataFileError line naming the column and the cell.
* `NodeHistograms`: a count sink (count_scan.CountSink) that adds each cell's counts to the histograms of its
  efficiency nodes with its interpolation weights (inference/transcriptome/efficiency.py): (G, K, bins + 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import DataFileError
from .cell_columns import cell_column, table_header
from .count_scan import ANNDATA_SUFFIXES, scan_counts

if TYPE_CHECKING:
    from anndata import AnnData

TOTAL = "total"


def size_factors(source: str | Path | AnnData, spec: str, layer: str | Sequence[str] | None = None,
                 genes: Sequence[str] | None = None) -> np.ndarray:
    """(n_cells,) size factors (see the module docstring): 0 marks a cell left out (total count 0). `genes`: the
    columns that are genes (default all), whose counts make the totals. `layer`: one layer, or several (the
    nascent and mature RNA of --layers) whose counts are added."""
    if spec == TOTAL:
        layers = [layer] if layer is None or isinstance(layer, str) else list(layer)
        totals = np.sum([cell_totals(source, x, genes) for x in layers], axis=0)
        kept = totals > 0
        if not kept.any():
            raise DataFileError(f"{_label(source, layers[0])}: every cell has a total count of 0; --size-factors "
                                "total needs counts")
        return np.where(kept, totals / totals[kept].mean(), 0.0)
    values, cells = _column(source, spec)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "missing" if not np.isfinite(values[i]) else f"{values[i]:g}"
        raise DataFileError(f"{_label(source, None)}: size factor column {spec!r} is {what} for {cells[i]} "
                            f"({int(bad.sum())} such cells); size factors must be positive numbers")
    return values / values.mean()


def gene_columns(source: str | Path | AnnData, *columns: str | None) -> list[str] | None:
    """The genes of a CSV/TSV table whose `columns` hold size factors or groups (every column but those); None
    where every column is a gene (AnnData, or no such column: None and "total" name none)."""
    others = {c for c in columns if c is not None and c != TOTAL}
    if not others or not isinstance(source, (str, Path)):
        return None
    p = Path(source)
    if p.suffix.lower() in ANNDATA_SUFFIXES:
        return None
    return [n for n in table_header(p) if n not in others]


def cell_totals(source: str | Path | AnnData, layer: str | None = None, genes: Sequence[str] | None = None
                ) -> np.ndarray:
    """(n_cells,) each cell's total count over every gene (or over `genes`), in one pass."""
    sink = _CellTotals()
    _, _, n_cells = scan_counts(source, genes, layer, 2048, None, sink)
    return sink.result(n_cells)


class _CellTotals:
    needs_cells = True

    def start(self, n_genes: int, n_cells: int | None) -> None:
        self.parts: list[np.ndarray] = []
        self.sparse = np.zeros(n_cells or 0)

    def dense(self, block: np.ndarray) -> None:
        self.parts.append(block.sum(axis=1))

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None:
        assert cell is not None
        self.sparse += np.bincount(cell, weights=values, minlength=len(self.sparse))

    def result(self, n_cells: int) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else self.sparse[:n_cells]


class NodeHistograms:
    """Sink: each cell's counts added to its nodes' histograms with its interpolation weights, (G, K, W) for W =
    len(edges) (bins, then the overflow). `node_idx`, `node_w` (cells, m) from EfficiencyNodes.weights."""

    needs_cells = True

    def __init__(self, edges: np.ndarray, node_idx: np.ndarray, node_w: np.ndarray, k: int):
        self.edges, self.idx, self.w, self.k = np.asarray(edges, float), node_idx, node_w, int(k)
        self.width = len(self.edges)
        self.offset = 0  # cells given so far in dense blocks (rows in order)

    def start(self, n_genes: int, n_cells: int | None) -> None:
        self.g = n_genes
        self.hist = np.zeros(n_genes * self.k * self.width)
        self.stored = np.zeros(n_genes * self.k)  # weights of the cells given per gene and node (sparse)
        self.sparse = False

    def _bins(self, values: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, values, side="right") - 1

    def dense(self, block: np.ndarray) -> None:
        rows = np.arange(self.offset, self.offset + block.shape[0])
        self.offset += block.shape[0]
        gene = np.broadcast_to(np.arange(block.shape[1]), block.shape).ravel()
        cell = np.repeat(rows, block.shape[1])
        self._add(gene, cell, block.ravel())

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None:
        assert cell is not None
        self.sparse = True
        self._add(gene, cell, values)
        for j in range(self.idx.shape[1]):
            np.add.at(self.stored, gene * self.k + self.idx[cell, j], self.w[cell, j])

    def _add(self, gene: np.ndarray, cell: np.ndarray, values: np.ndarray) -> None:
        b = self._bins(values)
        for j in range(self.idx.shape[1]):
            np.add.at(self.hist, (gene * self.k + self.idx[cell, j]) * self.width + b, self.w[cell, j])

    def result(self) -> np.ndarray:
        hist = self.hist.reshape(self.g, self.k, self.width)
        if self.sparse:  # the cells a sparse matrix does not store hold 0
            per_node = np.zeros(self.k)
            for j in range(self.idx.shape[1]):
                per_node += np.bincount(self.idx[:, j], weights=self.w[:, j], minlength=self.k)
            hist[:, :, int(self._bins(np.zeros(1))[0])] += per_node[None, :] - self.stored.reshape(self.g, self.k)
        return hist


class BothSinks:
    """Sink forwarding every block to two sinks (one pass, two results)."""

    def __init__(self, first: Any, second: Any):
        self.first, self.second = first, second
        self.needs_cells = bool(first.needs_cells or second.needs_cells)

    def start(self, n_genes: int, n_cells: int | None) -> None:
        self.first.start(n_genes, n_cells)
        self.second.start(n_genes, n_cells)

    def dense(self, block: np.ndarray) -> None:
        self.first.dense(block)
        self.second.dense(block)

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None:
        self.first.entries(gene, cell, values)
        self.second.entries(gene, cell, values)


# ---------------------------------------------------------------------------------------------------- columns
def _column(source: str | Path | AnnData, name: str) -> tuple[np.ndarray, list[str]]:
    """(values, cell labels) of a size factor column."""
    col = cell_column(source, name, "--size-factors total or")
    where = str(source) if isinstance(source, (str, Path)) else "AnnData"
    if col.categories is not None:
        raise DataFileError(f"{where}: obs column {name!r} is categorical; size factors must be numbers")
    if not col.numeric:
        i = next(i for i, v in enumerate(col.values) if v is not None)
        raise DataFileError(f"{where}: size factor column {name!r} holds {col.values[i]!r} for {col.cells[i]}; size "
                            "factors must be positive numbers")
    return col.values, col.cells


def _label(source: str | Path | AnnData, layer: str | None) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"adata.layers[{layer!r}]" if layer else "adata.X"

