"""Count tables of real single-cell data: smFISH tables (CSV/TSV, one row per cell, one column per gene) and
scRNA-seq matrices in AnnData (.h5ad; `X` or a layer, genes from `var_names`, dense or sparse).

`read_count_table(path, genes=None, layer=None, fmt=None)` returns a `CountTable` of raw integer counts, or raises
one DataFileError line naming the file, the column (gene) and the problem: an empty file, a non-numeric,
negative, fractional (a normalised matrix: raw counts are needed) or missing value, a gene asked for that is
missing, a gene whose counts are all zero. CSV/TSV tables are read by the streaming reader (count_scan.py), with
`fmt` (table_format.py) for genes as rows (`--layout genes-by-cells`) and dropped missing values (`--missing drop`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataFileError
from .table_format import TableFormat, check_format

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
ANNDATA_SUFFIXES = (".h5ad",)


@dataclass(frozen=True)
class CountTable:
    """Raw counts (cells, genes) int64 with the genes' names, in the order asked for; `missing` (cells, genes) bool
    marks the values that were missing and dropped (--missing drop; their counts read 0), None when none were."""

    path: str
    genes: tuple[str, ...]
    counts: np.ndarray
    missing: np.ndarray | None = None

    def column(self, gene: str) -> np.ndarray:
        """The counts of one gene (cells it has a value in,)."""
        j = self.genes.index(gene)
        col = self.counts[:, j]
        return col if self.missing is None else col[~self.missing[:, j]]


def is_count_table(path: str | Path) -> bool:
    """True for the file types read_count_table reads (by suffix)."""
    suffix = Path(path).suffix.lower()
    return suffix in TABLE_SUFFIXES or suffix in ANNDATA_SUFFIXES


def read_count_table(path: str | Path, genes: Sequence[str] | None = None, layer: str | None = None,
                     fmt: TableFormat | None = None) -> CountTable:
    """Read and validate a CSV/TSV table or an AnnData file (see the module docstring); `fmt`: a table's layout
    and missing-value rule (table_format.py)."""
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: file not found")
    suffix = p.suffix.lower()
    if suffix in ANNDATA_SUFFIXES:
        check_format(p, fmt, anndata=True)
        names, values = _read_anndata(p, layer)
        return _select_and_check(p, names, values, genes)
    if suffix in TABLE_SUFFIXES:
        return _read_delimited(p, genes, layer, fmt)
    raise DataFileError(f"{p}: unknown table type {suffix!r}; use .csv, .tsv or .h5ad")


def _read_delimited(p: Path, genes: Sequence[str] | None, layer: str | None, fmt: TableFormat | None) -> CountTable:
    """A CSV/TSV table read (and every value checked) by the streaming reader, then each gene checked for counts."""
    from .gene_histograms import read_values

    want, values = read_values(p, list(genes) if genes else None, layer, fmt=check_format(p, fmt, anndata=False))
    missing = np.isnan(values)
    counts = np.where(missing, 0.0, values).astype(np.int64)
    for j, g in enumerate(want):
        if missing[:, j].all():
            raise DataFileError(f"{p}: gene {g!r} has no value in any cell (every value missing); leave the gene out "
                                "(--genes)")
        if not counts[:, j].any():
            raise DataFileError(f"{p}: gene {g!r} is zero in every cell; leave the gene out (--genes)")
    return CountTable(str(p), want, counts, missing if missing.any() else None)


def _read_anndata(p: Path, layer: str | None) -> tuple[list[str], np.ndarray]:
    try:
        import anndata  # optional: only AnnData input needs it
    except ImportError:
        raise DataFileError(f"{p}: reading .h5ad needs the anndata package (pip install anndata)") from None
    try:
        ad = anndata.read_h5ad(p)
    except Exception as exc:  # anndata raises several types for damaged files
        raise DataFileError(f"{p}: not a readable AnnData file ({type(exc).__name__}: {exc})") from None
    if layer is not None and layer not in ad.layers:
        raise DataFileError(f"{p}: no layer {layer!r} (layers: {', '.join(ad.layers) or 'none'}); "
                            "omit --layer to use X")
    m = ad.layers[layer] if layer is not None else ad.X
    if m is None or ad.n_obs == 0 or ad.n_vars == 0:
        raise DataFileError(f"{p}: the count matrix is empty")
    m = m.toarray() if hasattr(m, "toarray") else np.asarray(m)  # scipy sparse or dense
    return [str(g) for g in ad.var_names], m


def _select_and_check(p: Path, names: list[str], values: np.ndarray, genes: Sequence[str] | None) -> CountTable:
    want = list(genes) if genes else list(names)
    missing = [g for g in want if g not in names]
    if missing:
        raise DataFileError(f"{p}: gene {missing[0]!r} named in --genes is not a column of the table "
                            f"(columns: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
    cols = []
    for g in want:
        j = names.index(g)
        col = _numeric_column(p, g, values, j)
        cols.append(_check_counts(p, g, col))
    return CountTable(str(p), tuple(want), np.stack(cols, axis=1))


def _numeric_column(p: Path, gene: str, values: np.ndarray, j: int) -> np.ndarray:
    col = values[:, j]
    if col.dtype.kind not in "iuf":
        raise DataFileError(f"{p}: column {gene!r} is not numeric (dtype {col.dtype}); raw counts are needed")
    return col.astype(float)


def _check_counts(p: Path, gene: str, col: np.ndarray) -> np.ndarray:
    if np.isnan(col).any():
        i = int(np.flatnonzero(np.isnan(col))[0])
        raise DataFileError(f"{p}: column {gene!r} has a missing value (NaN) in cell {i + 1}; remove or fill that cell")
    if not np.isfinite(col).all():
        raise DataFileError(f"{p}: column {gene!r} has infinite values; counts must be finite")
    if (col < 0).any():
        raise DataFileError(f"{p}: column {gene!r} has negative counts (e.g. {col[col < 0][0]:g}); counts are >= 0")
    frac = col != np.round(col)
    if frac.any():
        raise DataFileError(f"{p}: column {gene!r} has fractional values (e.g. {col[frac][0]:g}): this looks like a "
                            "normalised matrix; raw integer counts are needed (use the raw counts, e.g. --layer counts)")
    if not col.any():
        raise DataFileError(f"{p}: column {gene!r} is zero in every cell; leave the gene out (--genes)")
    return col.astype(np.int64)
