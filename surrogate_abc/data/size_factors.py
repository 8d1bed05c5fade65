"""Per-cell size factors of a count table, and the node-weighted gene histograms they lead to.

* `size_factors(source, spec)`: `spec` "total" gives each cell's total count over all genes divided by the mean
  total (cells with total 0: size factor 0, left out of inference); any other `spec` names a column of size
  factors: an `obs` column of an AnnData (file or object), or a named column of a CSV/TSV table (then not a gene).
  A missing, non-numeric, zero or negative size factor is one DataFileError line naming the column and the cell.
* `NodeHistograms`: a count sink (count_scan.CountSink) that adds each cell's counts to the histograms of its
  efficiency nodes with its interpolation weights (inference/transcriptome/efficiency.py): (G, K, bins + 1).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataFileError
from .count_scan import ANNDATA_SUFFIXES, scan_counts

if TYPE_CHECKING:
    from anndata import AnnData

TOTAL = "total"


def size_factors(source: str | Path | AnnData, spec: str, layer: str | None = None) -> np.ndarray:
    """(n_cells,) size factors (see the module docstring): 0 marks a cell left out (total count 0)."""
    if spec == TOTAL:
        totals = cell_totals(source, layer)
        kept = totals > 0
        if not kept.any():
            raise DataFileError(f"{_label(source, layer)}: every cell has a total count of 0; --size-factors total "
                                "needs counts")
        return np.where(kept, totals / totals[kept].mean(), 0.0)
    values, cells = _column(source, spec)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "missing" if not np.isfinite(values[i]) else f"{values[i]:g}"
        raise DataFileError(f"{_label(source, None)}: size factor column {spec!r} is {what} for cell {cells[i]} "
                            f"({int(bad.sum())} such cells); size factors must be positive numbers")
    return values / values.mean()


def gene_columns(source: str | Path | AnnData, spec: str | None) -> list[str] | None:
    """The genes of a CSV/TSV table whose column `spec` holds size factors (every column but that one); None where
    every column is a gene (AnnData, or no size factor column)."""
    if spec is None or spec == TOTAL or not isinstance(source, (str, Path)):
        return None
    p = Path(source)
    if p.suffix.lower() in ANNDATA_SUFFIXES:
        return None
    return [n for n in _table_header(p) if n != spec]


def cell_totals(source: str | Path | AnnData, layer: str | None = None) -> np.ndarray:
    """(n_cells,) each cell's total count over every gene, in one pass."""
    sink = _CellTotals()
    _, _, n_cells = scan_counts(source, None, layer, 2048, None, sink)
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
    """(values, cell names) of a size factor column."""
    if not isinstance(source, (str, Path)):
        obs = source.obs
        if name not in obs.columns:
            raise DataFileError(f"AnnData: obs has no column {name!r} (columns: {', '.join(map(str, obs.columns))}); "
                                "give --size-factors total or an obs column")
        return _numeric(obs[name].to_numpy(), name, "AnnData"), [str(c) for c in obs.index]
    p = Path(source)
    if p.suffix.lower() in ANNDATA_SUFFIXES:
        return _obs_column(p, name)
    return _table_column(p, name)


def _numeric(raw: Any, name: str, where: str) -> np.ndarray:
    try:
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataFileError(f"{where}: size factor column {name!r} is not numeric; give a column of positive "
                            "numbers") from None


def _obs_column(p: Path, name: str) -> tuple[np.ndarray, list[str]]:
    import h5py

    with h5py.File(p, "r") as f:
        obs = f.get("obs")
        if obs is None or name not in obs:
            cols = [k for k in (obs.keys() if obs is not None else []) if not k.startswith("_")]
            raise DataFileError(f"{p}: obs has no column {name!r} (columns: {', '.join(cols) or 'none'}); give "
                                "--size-factors total or an obs column")
        node = obs[name]
        if not isinstance(node, h5py.Dataset):
            raise DataFileError(f"{p}: obs column {name!r} is categorical; size factors must be numbers")
        values = _numeric(node[()], name, str(p))
        index_key = obs.attrs.get("_index", "_index")
        index_key = index_key.decode() if isinstance(index_key, bytes) else str(index_key)
        cells = [c.decode() if isinstance(c, bytes) else str(c) for c in obs[index_key][()]] if index_key in obs \
            else [str(i) for i in range(len(values))]
    return values, cells


def _table_header(p: Path) -> list[str]:
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    with p.open("rb") as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), delimiter=delimiter)
        header = next((r for r in reader if any(c.strip() for c in r)), None)
    if header is None:
        raise DataFileError(f"{p}: the file is empty; it needs a header row of gene names and one row per cell")
    return [h.strip() for h in header]


def _table_column(p: Path, name: str) -> tuple[np.ndarray, list[str]]:
    names = _table_header(p)
    if name not in names:
        raise DataFileError(f"{p}: no column {name!r} for --size-factors (the header has {len(names)} columns); give "
                            "--size-factors total or the name of a column of size factors")
    j = names.index(name)
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    values, cells = [], []
    with p.open("rb") as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), delimiter=delimiter)
        next(r for r in reader if any(c.strip() for c in r))
        for r in reader:
            if not any(c.strip() for c in r):
                continue
            text = r[j].strip() if j < len(r) else ""
            try:
                values.append(float(text) if text else np.nan)
            except ValueError:
                raise DataFileError(f"{p}: size factor column {name!r} holds {text!r} at row {reader.line_num}; size "
                                    "factors must be positive numbers") from None
            cells.append(f"at row {reader.line_num}")
    return np.array(values, dtype=np.float64), cells


def _label(source: str | Path | AnnData, layer: str | None) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"adata.layers[{layer!r}]" if layer else "adata.X"

