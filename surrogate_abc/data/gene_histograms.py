"""Per-gene count histograms of a whole single-cell count table, read in one streaming pass with bounded memory.

`gene_histograms(path, edges)` reads a CSV/TSV table (a header row of gene names, one row per cell) or an AnnData
file (.h5ad: `X` or a layer; dense, CSR or CSC) and returns a `GeneHistograms`: per gene the number of cells in
each bin of `edges` (plus an overflow column), the cells with a non-zero count, the sum and sum of squares of the
counts and the largest count. The file is read in blocks (row blocks of a CSR or dense matrix or of a table, column
blocks of a CSC matrix) straight from HDF5 with h5py, so memory is O(genes x bins + one block): a sparse matrix is
never made dense, its implicit zeros are counted as `cells - stored entries`.

`read_gene_counts(path, genes)` returns the dense (cells, genes) counts of a few genes, read the same way.

Every value is checked in the same pass; a bad file raises one DataFileError line naming the file, the gene and
the problem: an empty matrix, a missing layer or gene, duplicated gene names, a non-numeric, negative, NaN,
infinite or fractional (normalised) value. Genes whose counts are all zero are not an error here.

A CSV/TSV table may hold genes as rows (`fmt`: table_format.TableFormat, `--layout genes-by-cells`) and missing
values (`--missing drop`): each gene's histogram then counts only the cells where it has a value
(`GeneHistograms.missing`, `cells_used()`).

Both also take an in-memory AnnData object in place of the path (its X or `layer`, read in the same blocks with
the same checks: data/anndata_memory.py); messages then name adata.X or adata.layers['NAME'].
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .cell_subset import CellSubset
from .count_scan import CountSink, Progress, scan_counts
from .table_format import TableFormat

if TYPE_CHECKING:
    from anndata import AnnData


@dataclass(frozen=True)
class GeneHistograms:
    """Per-gene histograms on B bins plus an overflow column (cells at or beyond edges[-1]) and count summaries."""

    path: str
    genes: tuple[str, ...]
    n_cells: int
    hist: np.ndarray  # (G, B + 1) int64
    nonzero: np.ndarray  # (G,) int64 cells with a count > 0
    total: np.ndarray  # (G,) float64 sum of counts
    sumsq: np.ndarray  # (G,) float64 sum of squared counts
    max: np.ndarray  # (G,) int64 largest count
    node_hist: np.ndarray | None = None  # (G, K, B + 1) node-weighted histograms (per-cell size factors), or None
    left_out: int = 0  # cells left out (size factor 0: no counts at all), not in n_cells
    layer_total: np.ndarray | None = None  # (G, 2) each layer's sum of counts (joint histograms of two layers)
    missing: np.ndarray | None = None  # (G,) int64 cells whose value was missing and dropped (--missing drop)

    def cells_used(self) -> np.ndarray:
        """(G,) the cells each gene's histogram holds: n_cells less its missing values."""
        n = np.full(len(self.genes), self.n_cells, np.int64)
        return n if self.missing is None else n - self.missing

    def mean(self) -> np.ndarray:
        """Mean count per cell used (G,); nan for a gene with no cell."""
        n = self.cells_used()
        return np.divide(self.total, n, out=np.full(len(n), np.nan), where=n > 0)

    def fano(self) -> np.ndarray:
        """Sample variance (ddof=1) over mean (G,); nan where the mean is 0 or there are fewer than 2 cells."""
        n = self.cells_used().astype(float)
        out = np.full(len(self.genes), np.nan)
        ok = n >= 2
        mean = np.divide(self.total, n, out=np.zeros(len(n)), where=ok)
        var = np.divide(np.maximum(self.sumsq - self.total * mean, 0.0), n - 1, out=np.zeros(len(n)), where=ok)
        ok &= mean > 0
        out[ok] = var[ok] / mean[ok]
        return out

    def select(self, index) -> GeneHistograms:
        """The genes at `index` (an integer index array or a boolean mask over the genes)."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self.genes),):
                raise ValueError(f"boolean mask of shape {idx.shape} for {len(self.genes)} genes")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.intp).reshape(-1)
        return GeneHistograms(self.path, tuple(self.genes[i] for i in idx), self.n_cells, self.hist[idx],
                              self.nonzero[idx], self.total[idx], self.sumsq[idx], self.max[idx],
                              None if self.node_hist is None else self.node_hist[idx], self.left_out,
                              None if self.layer_total is None else self.layer_total[idx],
                              None if self.missing is None else self.missing[idx])

    def without_empty_cells(self, n: int) -> GeneHistograms:
        """The same genes without n cells whose every count is 0 (cells with no counts at all: left out)."""
        hist = self.hist.copy()
        hist[:, 0] -= n  # bin 0 starts at 0: the zeros
        return dataclasses.replace(self, n_cells=self.n_cells - n, hist=hist, left_out=self.left_out + n)


def gene_histograms(path: str | Path | AnnData, edges: np.ndarray, genes: Sequence[str] | None = None,
                    layer: str | None = None, chunk: int = 2048, progress: Progress | None = None,
                    nodes: tuple[np.ndarray, np.ndarray, int] | None = None,
                    cells: np.ndarray | None = None, fmt: TableFormat | None = None) -> GeneHistograms:
    """Histograms of every gene (or of `genes`, in that order) on `edges`, in one pass over the file.

    `edges` are increasing, starting at 0: a count x is in bin i when edges[i] <= x < edges[i + 1] and in the
    overflow column when x >= edges[-1]. `chunk` is the cells (CSR, dense, CSV/TSV) or genes (CSC) per block,
    fewer where a block would exceed about a million values. `progress(done, total)` is called after each block
    with the cells (genes for CSC) done; for CSV/TSV `total` is an estimate from the bytes read until the last call.
    `nodes` (each cell's efficiency nodes and interpolation weights (cells, m), and K): also the node-weighted
    histograms of per-cell capture (size_factors.NodeHistograms), in the same pass. `cells` (a boolean mask over
    the table's cells): only those cells are read, as if they were the whole table (`nodes` then per kept cell).
    `fmt`: a CSV/TSV table's layout and missing-value rule (see the module docstring).
    """
    e = _check_edges(edges)
    sink = _Histograms(e)
    if nodes is None:
        p, names, n_cells = scan_cells(path, genes, layer, chunk, progress, sink, cells, fmt)
        return sink.result(str(p), names, n_cells)
    if fmt is not None and fmt.drop_missing:
        raise ValueError("per-cell capture (nodes) needs every cell's counts: missing values cannot be dropped")
    from .size_factors import BothSinks, NodeHistograms

    node_sink = NodeHistograms(e, *nodes)
    p, names, n_cells = scan_cells(path, genes, layer, chunk, progress, BothSinks(sink, node_sink), cells)
    return dataclasses.replace(sink.result(str(p), names, n_cells), node_hist=node_sink.result())


def scan_cells(path: str | Path | AnnData, genes: Sequence[str] | None, layer: str | None, chunk: int,
               progress: Progress | None, sink: CountSink, cells: np.ndarray | None,
               fmt: TableFormat | None = None) -> tuple[Path, tuple[str, ...], int]:
    """scan_counts, of the cells where `cells` (a boolean mask over the table's cells) is True when given."""
    if cells is None:
        return scan_counts(path, genes, layer, chunk, progress, sink, fmt)
    subset = CellSubset(sink, cells)
    p, names, n_cells = scan_counts(path, genes, layer, chunk, progress, subset, fmt)
    subset.check(n_cells)
    return p, names, subset.n_cells


def read_gene_counts(path: str | Path | AnnData, genes: Sequence[str], layer: str | None = None,
                     cells: np.ndarray | None = None, fmt: TableFormat | None = None) -> np.ndarray:
    """(cells, len(genes)) int64 counts of a few genes, read in blocks without making the whole matrix dense
    (of the cells where the mask `cells` is True, when given). A table with missing values: `read_gene_cells`."""
    values = read_gene_values(path, genes, layer, cells, fmt)
    if np.isnan(values).any():
        raise ValueError("the table has missing values: read it with read_gene_cells")
    return values.astype(np.int64)


def read_gene_cells(path: str | Path | AnnData, genes: Sequence[str], layer: str | None = None,
                    cells: np.ndarray | None = None, fmt: TableFormat | None = None) -> list[np.ndarray]:
    """Each gene's int64 counts in the cells where it has a value (missing values dropped: `fmt` missing "drop")."""
    values = read_gene_values(path, genes, layer, cells, fmt)
    return [col[~np.isnan(col)].astype(np.int64) for col in values.T]


def read_gene_values(path: str | Path | AnnData, genes: Sequence[str], layer: str | None = None,
                     cells: np.ndarray | None = None, fmt: TableFormat | None = None) -> np.ndarray:
    """(cells, len(genes)) float64 counts of a few genes, NaN where a value is missing (`fmt` missing "drop")."""
    if not list(genes):
        raise ValueError("read_gene_counts needs at least one gene")
    return read_values(path, genes, layer, cells, fmt)[1]


def read_values(path: str | Path | AnnData, genes: Sequence[str] | None, layer: str | None = None,
                cells: np.ndarray | None = None, fmt: TableFormat | None = None
                ) -> tuple[tuple[str, ...], np.ndarray]:
    """(genes read, (cells, genes) float64 counts, NaN where missing) of `genes` (None: all), dense."""
    sink = _Columns()
    _, names, n_cells = scan_cells(path, genes, layer, 2048, None, sink, cells, fmt)
    return names, sink.result(n_cells)


# ---------------------------------------------------------------------------------------------------- sinks




class _Histograms:
    """Accumulates histograms and sums; cells a sparse matrix does not store are zeros, added at the end."""

    needs_cells = False

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = edges
        self.width = len(edges)  # B bins + overflow

    def start(self, n_genes: int, n_cells: int | None) -> None:
        g, w = n_genes, self.width
        self.hist = np.zeros(g * w, np.int64)
        self.seen = np.zeros(g, np.int64)  # values given per gene (stored entries of a sparse matrix), not missing
        self.missing = np.zeros(g, np.int64)  # missing values given per gene (NaN: --missing drop)
        self.nonzero = np.zeros(g, np.int64)
        self.total = np.zeros(g)
        self.sumsq = np.zeros(g)
        self.max = np.zeros(g)

    def _bins(self, values: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, values, side="right") - 1  # len(edges) - 1 is the overflow column

    def dense(self, block: np.ndarray) -> None:
        rows, g = block.shape
        flat = self._bins(block) + np.arange(g) * self.width
        nan = np.isnan(block)
        if nan.any():  # missing values (dropped): in no bin, not seen
            flat = flat[~nan]
            lost = nan.sum(axis=0)
            self.missing += lost
            self.seen -= lost
            block = np.where(nan, 0.0, block)
        self.hist += np.bincount(flat.ravel(), minlength=self.hist.size)
        self.seen += rows
        self.nonzero += np.count_nonzero(block, axis=0)
        self.total += block.sum(axis=0)
        self.sumsq += np.einsum("ij,ij->j", block, block)
        np.maximum(self.max, block.max(axis=0, initial=0.0), out=self.max)

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None:
        g = len(self.seen)
        nan = np.isnan(values)
        if nan.any():  # missing values (dropped)
            self.missing += np.bincount(gene[nan], minlength=g)
            gene, values = gene[~nan], values[~nan]
        self.hist += np.bincount(gene * self.width + self._bins(values), minlength=self.hist.size)
        self.seen += np.bincount(gene, minlength=g)
        self.nonzero += np.bincount(gene[values > 0], minlength=g)
        self.total += np.bincount(gene, weights=values, minlength=g)
        self.sumsq += np.bincount(gene, weights=values * values, minlength=g)
        np.maximum.at(self.max, gene, values)

    def result(self, path: str, genes: tuple[str, ...], n_cells: int) -> GeneHistograms:
        hist = self.hist.reshape(len(genes), self.width)
        hist[:, int(self._bins(np.zeros(1))[0])] += n_cells - self.seen - self.missing
        return GeneHistograms(path, genes, n_cells, hist, self.nonzero, self.total, self.sumsq,
                              self.max.astype(np.int64), missing=self.missing if self.missing.any() else None)


class _Columns:
    """Collects the dense float64 counts of the selected genes (NaN where missing)."""

    needs_cells = True

    def start(self, n_genes: int, n_cells: int | None) -> None:
        self.n_genes = n_genes
        self.parts: list[np.ndarray] = []
        self.out = np.zeros((n_cells, n_genes)) if n_cells is not None else None

    def dense(self, block: np.ndarray) -> None:
        self.parts.append(np.array(block, dtype=np.float64))

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None:
        assert self.out is not None and cell is not None
        self.out[cell, gene] = values

    def result(self, n_cells: int) -> np.ndarray:
        if self.parts:
            return np.concatenate(self.parts, axis=0)
        return self.out if self.out is not None else np.zeros((n_cells, self.n_genes))

def _check_edges(edges) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.isfinite(e).all() or (np.diff(e) <= 0).any() or e[0] > 0:
        raise ValueError("edges must be a 1-D, finite, strictly increasing array of at least 2 values from 0")
    return e
