"""Count tables of real single-cell data: smFISH tables (CSV/TSV, one row per cell, one column per gene) and
scRNA-seq matrices in AnnData (.h5ad; `X` or a layer, genes from `var_names`, dense or sparse).

`read_count_table(path, genes=None, layer=None)` returns a `CountTable` of raw integer counts, or raises one
DataFileError line naming the file, the column (gene) and the problem: an empty file, a non-numeric,
negative, fractional (a normalised matrix: raw counts are needed) or NaN value, a gene asked for that is
missing, a gene whose counts are all zero.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataFileError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
ANNDATA_SUFFIXES = (".h5ad",)


@dataclass(frozen=True)
class CountTable:
    """Raw counts (cells, genes) int64 with the genes' names, in the order asked for."""

    path: str
    genes: tuple[str, ...]
    counts: np.ndarray

    def column(self, gene: str) -> np.ndarray:
        """The counts of one gene (cells,)."""
        return self.counts[:, self.genes.index(gene)]


def is_count_table(path: str | Path) -> bool:
    """True for the file types read_count_table reads (by suffix)."""
    suffix = Path(path).suffix.lower()
    return suffix in TABLE_SUFFIXES or suffix in ANNDATA_SUFFIXES


def read_count_table(path: str | Path, genes: Sequence[str] | None = None, layer: str | None = None) -> CountTable:
    """Read and validate a CSV/TSV table or an AnnData file (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: file not found")
    suffix = p.suffix.lower()
    values: np.ndarray | list[list[str]]
    if suffix in ANNDATA_SUFFIXES:
        names, values = _read_anndata(p, layer)
    elif suffix in TABLE_SUFFIXES:
        if layer is not None:
            raise DataFileError(f"{p}: --layer applies to AnnData (.h5ad) files only")
        names, values = _read_delimited(p, TABLE_SUFFIXES[suffix])
    else:
        raise DataFileError(f"{p}: unknown table type {suffix!r}; use .csv, .tsv or .h5ad")
    return _select_and_check(p, names, values, genes)


def _read_delimited(p: Path, delimiter: str) -> tuple[list[str], list[list[str]]]:
    try:
        with p.open(newline="") as fh:
            rows = [r for r in csv.reader(fh, delimiter=delimiter) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{p}: cannot read the table ({exc})") from None
    if not rows:
        raise DataFileError(f"{p}: the file is empty; it needs a header row of gene names and one row per cell")
    header = [h.strip() for h in rows[0]]
    if len(rows) == 1:
        raise DataFileError(f"{p}: the table has a header but no cells; add one row of counts per cell")
    if any(not h for h in header):
        raise DataFileError(f"{p}: column {header.index('') + 1} of the header has no name; name every gene column")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataFileError(f"{p}: column {dup[0]!r} appears twice in the header; give each gene one column")
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise DataFileError(f"{p}: row {i} has {len(r)} values but the header names {len(header)} columns")
    return header, rows[1:]


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


def _select_and_check(p: Path, names: list[str], values, genes: Sequence[str] | None) -> CountTable:
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


def _numeric_column(p: Path, gene: str, values, j: int) -> np.ndarray:
    if isinstance(values, np.ndarray):
        col = values[:, j]
        if col.dtype.kind not in "iuf":
            raise DataFileError(f"{p}: column {gene!r} is not numeric (dtype {col.dtype}); raw counts are needed")
        return col.astype(float)
    out = np.empty(len(values))
    for i, row in enumerate(values):
        text = row[j].strip()
        try:
            out[i] = float(text) if text else np.nan
        except ValueError:
            raise DataFileError(f"{p}: column {gene!r}, row {i + 2}: {text!r} is not a number; "
                                "every cell needs a count") from None
    return out


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
