"""One value per cell read from beside a count table: an `obs` column of an AnnData (file or object), or a named
column of a CSV/TSV table (which is then not a gene). Size factors (size_factors.py) and cell groups
(`--groupby`, inference/differential/) are read here.

`cell_column(source, name, flag)` returns a `CellColumn`: the raw values (numbers as float64, text and
categories as str; a missing value is NaN or None), a label per cell for messages ("cell NAME", "cell at row N"), and a categorical column's
categories in their order. A missing column is one DataFileError line naming the file, the columns there and
the option (`flag`) to fix.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataFileError
from .tables import ANNDATA_SUFFIXES, TABLE_SUFFIXES

if TYPE_CHECKING:
    from anndata import AnnData


@dataclass(frozen=True)
class CellColumn:
    """A column with one value per cell: `values` (float64 for numbers, else object: str, None where missing),
    `cells` (labels for messages: "cell NAME" of obs, "cell at row N" of a table), `categories` (a categorical's, else None)."""

    name: str
    values: np.ndarray
    cells: list[str]
    categories: tuple[str, ...] | None = None

    @property
    def numeric(self) -> bool:
        return self.values.dtype.kind == "f"


def cell_column(source: str | Path | AnnData, name: str, flag: str) -> CellColumn:
    """The column `name` of `source` (see the module docstring); `flag` names the option in messages."""
    if not isinstance(source, (str, Path)):
        return _adata_column(source, name, flag)
    p = Path(source)
    if p.suffix.lower() in ANNDATA_SUFFIXES:
        return _obs_column(p, name, flag)
    return _table_column(p, name, flag)


def table_header(p: Path) -> list[str]:
    """The column names of a CSV/TSV table (its first non-blank row)."""
    with p.open("rb") as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), delimiter=_delimiter(p))
        header = next((r for r in reader if any(c.strip() for c in r)), None)
    if header is None:
        raise DataFileError(f"{p}: the file is empty; it needs a header row of gene names and one row per cell")
    return [h.strip() for h in header]


def _delimiter(p: Path) -> str:
    return TABLE_SUFFIXES.get(p.suffix.lower(), ",")


def _adata_column(adata: AnnData, name: str, flag: str) -> CellColumn:
    obs = adata.obs
    if name not in obs.columns:
        raise DataFileError(f"AnnData: obs has no column {name!r} (columns: "
                            f"{', '.join(map(str, obs.columns)) or 'none'}); give {flag} an obs column")
    col = obs[name]
    cells = [f"cell {c}" for c in obs.index]
    if hasattr(col, "cat"):
        cats = tuple(str(c) for c in col.cat.categories)
        codes = col.cat.codes.to_numpy()
        return CellColumn(name, _labels(codes, cats), cells, cats)
    return CellColumn(name, _plain_values(col.to_numpy()), cells)


def _plain_values(raw: Any) -> np.ndarray:
    """Numbers as float64 (nullable ones with NaN), anything else as str (None where missing)."""
    arr = np.asarray(raw)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    try:
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        pass
    out = np.empty(len(arr), dtype=object)
    for i, v in enumerate(arr):
        if isinstance(v, bytes):
            v = v.decode()
        out[i] = None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
    return out


def _labels(codes: np.ndarray, categories: tuple[str, ...]) -> np.ndarray:
    out = np.empty(len(codes), dtype=object)
    for i, c in enumerate(codes):
        out[i] = categories[c] if c >= 0 else None
    return out


def _obs_column(p: Path, name: str, flag: str) -> CellColumn:
    import h5py

    with h5py.File(p, "r") as f:
        obs = f.get("obs")
        if obs is None or name not in obs or name.startswith("_"):
            cols = [k for k in (obs.keys() if obs is not None else []) if not k.startswith("_")]
            raise DataFileError(f"{p}: obs has no column {name!r} (columns: {', '.join(cols) or 'none'}); give "
                                f"{flag} an obs column")
        node = obs[name]
        index_key = obs.attrs.get("_index", "_index")
        index_key = index_key.decode() if isinstance(index_key, bytes) else str(index_key)
        categories = None
        if isinstance(node, h5py.Group) and "codes" in node and "categories" in node:  # anndata >= 0.8
            categories = tuple(_text(c) for c in node["categories"][()])
            values = _labels(node["codes"][()], categories)
        elif isinstance(node, h5py.Group) and "values" in node and "mask" in node:  # nullable integer / boolean
            values = node["values"][()].astype(np.float64)
            values[node["mask"][()].astype(bool)] = np.nan
        elif isinstance(node, h5py.Dataset) and "categories" in node.attrs:  # anndata < 0.8: a reference
            categories = tuple(_text(c) for c in f[node.attrs["categories"]][()])
            values = _labels(node[()], categories)
        elif isinstance(node, h5py.Dataset):
            values = _plain_values(node[()])
        else:
            raise DataFileError(f"{p}: obs column {name!r} has a layout this reader does not know; rewrite the file "
                                "with a current anndata")
        n = len(values)
        cells = [f"cell {_text(c)}" for c in obs[index_key][()]] if index_key in obs else [f"cell {i}" for i in range(n)]
    return CellColumn(name, values, cells, categories)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _table_column(p: Path, name: str, flag: str) -> CellColumn:
    names = table_header(p)
    if name not in names:
        raise DataFileError(f"{p}: no column {name!r} for {flag} (the header has {len(names)} columns); give {flag} "
                            "the name of a column of the table")
    j = names.index(name)
    texts, cells = [], []
    with p.open("rb") as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), delimiter=_delimiter(p))
        next(r for r in reader if any(c.strip() for c in r))
        for r in reader:
            if not any(c.strip() for c in r):
                continue
            text = r[j].strip() if j < len(r) else ""
            texts.append(text or None)
            cells.append(f"cell at row {reader.line_num}")
    values = np.array(texts, dtype=object)
    try:
        values = np.array([np.nan if t is None else float(t) for t in texts], dtype=np.float64)
    except ValueError:
        pass
    return CellColumn(name, values, cells)
