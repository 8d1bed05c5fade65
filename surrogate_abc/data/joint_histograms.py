"""Per-gene joint histograms of two layers of one AnnData (unspliced and spliced RNA: `--layers unspliced,spliced`).

Each gene's cells are counted on the grid of two edge arrays (the first layer's bins by the second's, flattened in
C order, then one overflow column for cells at or beyond either last edge): the categories of a joint emulator
(bins, then the overflow), so the batched likelihood takes them as it takes one layer's histograms.

The two layers are read one after the other (`count_scan.scan_counts`, every value checked as for one layer),
each keeping only its stored non-zero entries as (gene, cell) keys: memory is O(non-zero entries of both layers),
the cells that are zero in both are counted at the end. A missing layer, layers of different shapes or gene names
and non-integer values stop with one DataFileError line.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import DataFileError
from .count_scan import Progress
from .gene_histograms import GeneHistograms, _check_edges, read_gene_counts, scan_cells

if TYPE_CHECKING:
    from anndata import AnnData


@dataclass(frozen=True)
class LayerEntries:
    """The non-zero counts of one layer: keys gene * n_cells + cell (sorted, unique) and their values."""

    genes: tuple[str, ...]
    n_cells: int
    keys: np.ndarray  # (nnz,) int64
    values: np.ndarray  # (nnz,) float64


def joint_gene_histograms(path: str | Path | AnnData, layers: Sequence[str], edges: Sequence[np.ndarray],
                          genes: Sequence[str] | None = None, chunk: int = 2048, progress: Progress | None = None,
                          cells: np.ndarray | None = None,
                          nodes: tuple[np.ndarray, np.ndarray, int] | None = None) -> GeneHistograms:
    """Joint histograms (G, A * B + 1) of every gene (or of `genes`) over `layers` = (first, second) on
    `edges` = (A + 1 edges, B + 1 edges); `nonzero` counts cells with a count in either layer, `total`, `sumsq`
    and `max` are the second layer's and `layer_total` (G, 2) both layers' sums. `cells`: a boolean mask of the
    cells to read, as in gene_histograms. `nodes` (each cell's efficiency nodes and interpolation weights
    (cells, m), and K): also the node-weighted histograms (G, K, A * B + 1) of per-cell capture."""
    if len(layers) != 2 or len(edges) != 2:
        raise ValueError("joint_gene_histograms needs two layers and two edge arrays")
    e = [_check_edges(x) for x in edges]
    first = layer_entries(path, layers[0], genes, chunk, progress, cells)
    second = layer_entries(path, layers[1], genes, chunk, progress, cells)
    label = str(path) if isinstance(path, (str, Path)) else "the AnnData"
    if first.n_cells != second.n_cells or first.genes != second.genes:
        raise DataFileError(f"{label}: layers {layers[0]!r} ({first.n_cells} cells x {len(first.genes)} genes) and "
                            f"{layers[1]!r} ({second.n_cells} x {len(second.genes)}) differ in shape or genes; "
                            "give two layers of the same matrix")
    return _histograms(label, first, second, e, nodes)


def read_layer_counts(path: str | Path | AnnData, genes: Sequence[str], layers: Sequence[str],
                      cells: np.ndarray | None = None) -> np.ndarray:
    """(cells, len(genes), 2) int64 counts of a few genes in the two layers (nascent, mature), dense (of the cells
    where the mask `cells` is True, when given)."""
    return np.stack([read_gene_counts(path, genes, x, cells) for x in layers], axis=-1)


def layer_entries(path: str | Path | AnnData, layer: str, genes: Sequence[str] | None, chunk: int = 2048,
                  progress: Progress | None = None, cells: np.ndarray | None = None) -> LayerEntries:
    """The non-zero entries of one layer (every value checked as counts)."""
    sink = _Entries()
    _, names, n_cells = scan_cells(path, genes, layer, chunk, progress, sink, cells)
    return sink.result(names, n_cells)


def _histograms(label: str, first: LayerEntries, second: LayerEntries, edges: list[np.ndarray],
                nodes: tuple[np.ndarray, np.ndarray, int] | None = None) -> GeneHistograms:
    n, g = first.n_cells, len(first.genes)
    keys = np.union1d(first.keys, second.keys)
    a = np.zeros(len(keys))
    b = np.zeros(len(keys))
    a[np.searchsorted(keys, first.keys)] = first.values
    b[np.searchsorted(keys, second.keys)] = second.values
    width = (len(edges[0]) - 1) * (len(edges[1]) - 1) + 1
    gene = keys // max(n, 1)
    cat = joint_categories(a, b, edges)
    zero = int(joint_categories(np.zeros(1), np.zeros(1), edges)[0])
    hist = np.bincount(gene * width + cat, minlength=g * width).reshape(g, width)
    per_gene = np.bincount(gene, minlength=g)
    hist[:, zero] += n - per_gene  # zero in both layers
    layer_total = np.stack([np.bincount(gene, weights=a, minlength=g), np.bincount(gene, weights=b, minlength=g)], 1)
    out = GeneHistograms(label, first.genes, n, hist.astype(np.int64), per_gene.astype(np.int64), layer_total[:, 1],
                         np.bincount(gene, weights=b * b, minlength=g), _max(gene, b, g))
    node_hist = None if nodes is None else _node_histograms(gene, keys % max(n, 1), cat, zero, g, width, nodes)
    return replace(out, layer_total=layer_total, node_hist=node_hist)


def _node_histograms(gene: np.ndarray, cell: np.ndarray, cat: np.ndarray, zero: int, g: int, width: int,
                     nodes: tuple[np.ndarray, np.ndarray, int]) -> np.ndarray:
    """(G, K, width): each stored cell's category added to its nodes with its interpolation weights; the cells
    zero in both layers (not stored) make up the rest of each node's weight, in the zero category."""
    idx, w, k = nodes
    hist = np.zeros(g * k * width)
    stored = np.zeros(g * k)
    for m in range(idx.shape[1]):
        at = gene * k + idx[cell, m]
        hist += np.bincount(at * width + cat, weights=w[cell, m], minlength=len(hist))
        stored += np.bincount(at, weights=w[cell, m], minlength=len(stored))
    per_node = np.sum([np.bincount(idx[:, m], weights=w[:, m], minlength=k) for m in range(idx.shape[1])], axis=0)
    out = hist.reshape(g, k, width)
    out[:, :, zero] += per_node[None, :] - stored.reshape(g, k)
    return out


def joint_categories(a: np.ndarray, b: np.ndarray, edges: Sequence[np.ndarray]) -> np.ndarray:
    """The flat category of each cell's counts (a, b) on the grid of `edges`: first bin * bins of the second + second
    bin, or the overflow (the last category) where either count is at or beyond its last edge."""
    na, nb = len(edges[0]) - 1, len(edges[1]) - 1
    ia = np.searchsorted(edges[0], a, side="right") - 1
    ib = np.searchsorted(edges[1], b, side="right") - 1
    return np.where((ia >= na) | (ib >= nb), na * nb, ia * nb + ib)


def _max(gene: np.ndarray, values: np.ndarray, g: int) -> np.ndarray:
    out = np.zeros(g)
    np.maximum.at(out, gene, values)
    return out.astype(np.int64)


class _Entries:
    """Collects the non-zero counts of a layer as sorted (gene * n_cells + cell) keys."""

    needs_cells = True

    def start(self, n_genes: int, n_cells: int | None) -> None:
        self.n_genes = n_genes
        self.row = 0
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (gene, cell, value)

    def dense(self, block: np.ndarray) -> None:
        r, c = np.nonzero(block)
        self.parts.append((c.astype(np.int64), (r + self.row).astype(np.int64), block[r, c]))
        self.row += block.shape[0]

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None:
        assert cell is not None
        keep = values != 0
        self.parts.append((np.asarray(gene, np.int64)[keep], np.asarray(cell, np.int64)[keep], values[keep]))

    def result(self, genes: tuple[str, ...], n_cells: int) -> LayerEntries:
        if self.parts:
            gene, cell, values = (np.concatenate(x) for x in zip(*self.parts))
        else:
            gene, cell, values = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        keys = gene * max(n_cells, 1) + cell
        order = np.argsort(keys, kind="stable")
        return LayerEntries(genes, n_cells, keys[order], np.asarray(values, float)[order])
