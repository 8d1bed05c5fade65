"""Reading a subset of a table's cells: a count sink (count_scan.CountSink) that passes on only the cells of a
mask, renumbered 0..n-1 in file order, so that every sink (histograms, node histograms, dense columns) reads a
group of cells as if it were the whole table (`gene_histograms(..., cells=mask)`, `--groupby`)."""
from __future__ import annotations

from typing import Any

import numpy as np


class CellSubset:
    """Sink forwarding the cells where `mask` is True to `inner` (dense blocks: rows in file order)."""

    needs_cells = True

    def __init__(self, inner: Any, mask: np.ndarray):
        self.inner = inner
        self.mask = np.asarray(mask, dtype=bool)
        self.new_index = np.cumsum(self.mask) - 1  # position of each kept cell among the kept ones
        self.offset = 0

    @property
    def n_cells(self) -> int:
        return int(self.mask.sum())

    def start(self, n_genes: int, n_cells: int | None) -> None:
        if n_cells is not None and n_cells != len(self.mask):
            raise ValueError(f"a cell mask of {len(self.mask)} values for a table of {n_cells} cells")
        self.inner.start(n_genes, self.n_cells)

    def dense(self, block: np.ndarray) -> None:
        rows = block.shape[0]
        keep = self.mask[self.offset:self.offset + rows]
        if len(keep) != rows:
            raise ValueError(f"a cell mask of {len(self.mask)} values for a table of more cells")
        self.offset += rows
        if keep.any():
            self.inner.dense(block[keep])

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None:
        assert cell is not None  # needs_cells
        keep = self.mask[cell]
        self.inner.entries(gene[keep], self.new_index[cell[keep]] if self.inner.needs_cells else None, values[keep])

    def check(self, n_cells: int) -> None:
        """After the pass: the table had as many cells as the mask (a CSV's count is known only at the end)."""
        if n_cells != len(self.mask):
            raise ValueError(f"a cell mask of {len(self.mask)} values for a table of {n_cells} cells")
