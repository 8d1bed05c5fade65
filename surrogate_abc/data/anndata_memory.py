"""The in-memory AnnData reader of count_scan: `adata.X` or `adata.layers[name]` of an AnnData object (a numpy
array, a scipy CSR/CSC matrix, or anything that slices into rows, e.g. a dask array), streamed in blocks into the
sink with the same value checks as a file. A sparse matrix is never made dense: its stored entries are read in
row (CSR) or column (CSC) blocks by h5ad_scan's readers, which take numpy arrays as they take HDF5 datasets. An
AnnData opened with `backed="r"` is read from its file (X only; a layer is in memory).

Errors are one DataFileError line naming `adata.X` (or `adata.layers['NAME']`), the gene, the cell and the fix.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import DataFileError
from .count_scan import CountSink, Progress, _select

if TYPE_CHECKING:
    from anndata import AnnData

HINT = "pass the raw counts, e.g. layer='counts'"
DUP_FIX = "make the names unique (adata.var_names_make_unique())"


def is_anndata(obj: object) -> bool:
    """True for an AnnData object (by its attributes: anndata need not be imported to ask)."""
    return all(hasattr(obj, a) for a in ("var_names", "obs_names", "layers", "n_obs", "n_vars")) and \
        not isinstance(obj, (str, Path))


def label(layer: str | None) -> str:
    """How messages name the matrix read: adata.X or adata.layers['NAME']."""
    return "adata.X" if layer is None else f"adata.layers[{layer!r}]"


def scan_adata(adata: AnnData, genes: Sequence[str] | None, layer: str | None, chunk: int,
               progress: Progress | None, sink: CountSink) -> tuple[Path, tuple[str, ...], int]:
    """Stream adata's counts (X or `layer`) into `sink`; returns (a label standing for the path, genes, cells)."""
    from .h5ad_scan import _scan_dense, _scan_sparse, scan_anndata

    if not is_anndata(adata):
        raise DataFileError(f"{type(adata).__name__}: not an AnnData object; pass an AnnData or a file path")
    if layer is None and getattr(adata, "isbacked", False) and not getattr(adata, "is_view", False):
        filename = Path(adata.filename)
        read, n_cells = scan_anndata(filename, genes, None, chunk, progress, sink)
        return filename, read, n_cells
    p = Path(label(layer))
    matrix, what = _matrix(adata, layer)
    shape = tuple(int(n) for n in getattr(matrix, "shape", ()))
    if len(shape) != 2:
        raise DataFileError(f"{p}: has {len(shape)} dimensions, not 2 (cells x genes)")
    n_cells, n_vars = shape
    if n_cells == 0 or n_vars == 0:
        raise DataFileError(f"{p}: the count matrix is empty ({n_cells} cells x {n_vars} genes)")
    names = [str(g) for g in adata.var_names]
    if (n_cells, n_vars) != (int(adata.n_obs), len(names)):
        raise DataFileError(f"{p}: shape {n_cells} x {n_vars} does not match the AnnData's {adata.n_obs} cells x "
                            f"{len(names)} genes")
    try:
        sel = _select(p, names, genes, "var_names", DUP_FIX)
    except DataFileError as exc:  # the selection's messages speak of the command line
        raise DataFileError(str(exc).replace("named in --genes", "named in genes=")) from None
    sink.start(len(sel.names), n_cells)
    fmt = _sparse_format(matrix)
    if fmt is not None:
        if fmt not in ("csr", "csc"):
            matrix, fmt = matrix.tocsr(), "csr"
        arrays = {"data": np.asarray(matrix.data), "indices": np.asarray(matrix.indices),
                  "indptr": np.asarray(matrix.indptr)}
        _scan_sparse(p, arrays, fmt, (n_cells, n_vars), what, sel, chunk, progress, sink, hint=HINT)
    else:
        _scan_dense(p, _Rows(matrix), sel, chunk, progress, sink, hint=HINT)
    return p, sel.names, n_cells


def _matrix(adata: AnnData, layer: str | None) -> tuple[Any, str]:
    layers = list(adata.layers.keys())
    if layer is not None:
        if layer not in layers:
            raise DataFileError(f"adata: no layer {layer!r} (layers: {', '.join(layers) or 'none'}); pass layer=None "
                                "to use adata.X")
        return adata.layers[layer], f"layer {layer!r}"
    if adata.X is None:
        raise DataFileError(f"adata.X is None (no count matrix); name a layer with layer=... (layers: "
                            f"{', '.join(layers) or 'none'})")
    return adata.X, "X"


def _sparse_format(matrix: Any) -> str | None:
    """'csr', 'csc' or another scipy format name for a scipy sparse matrix/array; None for anything else."""
    from scipy import sparse

    return str(matrix.format) if sparse.issparse(matrix) else None


class _Rows:
    """A dense-like matrix as h5ad_scan._scan_dense reads it: shape, dtype and row slices as numpy arrays."""

    def __init__(self, matrix: Any) -> None:
        self.matrix = matrix
        self.shape = tuple(int(n) for n in matrix.shape)
        self.dtype = np.dtype(matrix.dtype)

    def __getitem__(self, rows: slice) -> np.ndarray:
        block = self.matrix[rows]
        if hasattr(block, "toarray"):  # a sparse block of a backed or lazy matrix
            block = block.toarray()
        return np.asarray(block)
