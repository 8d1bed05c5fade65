"""The AnnData (.h5ad) reader of count_scan: `X` or a layer, dense or CSR/CSC, read in blocks straight from HDF5
with h5py (a sparse matrix is never made dense: the sink is given its stored entries), var_names as the genes."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import DataFileError
from . import count_scan as scan
from .count_scan import CountSink, Progress, _counts, _report, _select, _Selection

_SPARSE = {"csr_matrix": "csr", "csc_matrix": "csc", "csr": "csr", "csc": "csc"}
_H5AD_HINT = "use the raw counts, e.g. --layer counts"
_H5AD_DUP_FIX = "make the names unique (e.g. adata.var_names_make_unique())"


def scan_anndata(p: Path, genes: Sequence[str] | None, layer: str | None, chunk: int, progress: Progress | None,
                  sink: CountSink) -> tuple[tuple[str, ...], int]:
    import h5py

    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise DataFileError(f"{p}: not a readable AnnData (HDF5) file ({exc})") from None
    with f:
        node, what = _matrix_node(p, f, layer)
        names = _var_names(p, f)
        if isinstance(node, h5py.Dataset):
            dims = tuple(int(n) for n in node.shape)
            fmt = "dense"
        else:
            fmt = _SPARSE.get(_text(node.attrs.get("encoding-type", node.attrs.get("h5sparse_format", ""))), "")
            raw_shape = node.attrs.get("shape", node.attrs.get("h5sparse_shape"))
            if not fmt or raw_shape is None or any(k not in node for k in ("data", "indices", "indptr")):
                raise DataFileError(f"{p}: {what} is neither a dense matrix nor a CSR/CSC sparse matrix in AnnData's "
                                    "layout; re-save the file with a recent anndata (adata.write_h5ad)")
            dims = tuple(int(n) for n in np.atleast_1d(raw_shape))
        if len(dims) != 2:
            raise DataFileError(f"{p}: {what} has {len(dims)} dimensions, not 2 (cells x genes)")
        shape = (dims[0], dims[1])
        if shape[0] == 0 or shape[1] == 0:
            raise DataFileError(f"{p}: the count matrix {what} is empty ({shape[0]} cells x {shape[1]} genes)")
        if len(names) != shape[1]:
            raise DataFileError(f"{p}: var_names has {len(names)} names but {what} has {shape[1]} genes (columns); "
                                "the file is damaged, re-save it")
        sel = _select(p, names, genes, "var_names", _H5AD_DUP_FIX)
        sink.start(len(sel.names), shape[0])
        try:
            if fmt == "dense":
                _scan_dense(p, node, sel, chunk, progress, sink)
            else:
                _scan_sparse(p, node, fmt, shape, what, sel, chunk, progress, sink)
        except OSError as exc:  # a truncated or damaged dataset
            raise DataFileError(f"{p}: cannot read {what} ({exc}); the file is damaged") from None
    return sel.names, shape[0]


def _text(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _matrix_node(p: Path, f, layer: str | None):
    layers = f.get("layers")
    names = list(layers.keys()) if layers is not None and hasattr(layers, "keys") else []
    if layer is not None:
        if layer not in names:
            raise DataFileError(f"{p}: no layer {layer!r} (layers: {', '.join(names) or 'none'}); omit --layer to "
                                "use X")
        return layers[layer], f"layer {layer!r}"
    if "X" not in f:
        raise DataFileError(f"{p}: the file has no X matrix; name a layer with --layer (layers: "
                            f"{', '.join(names) or 'none'})")
    return f["X"], "X"


def _var_names(p: Path, f) -> list[str]:
    """Gene names from `var`: the dataset `var.attrs['_index']`, an old compound `var` with an `index` field, or
    whatever anndata's own reader makes of it."""
    import h5py

    var = f.get("var")
    try:
        if isinstance(var, h5py.Group) and "_index" in var.attrs and _text(var.attrs["_index"]) in var:
            ds = var[_text(var.attrs["_index"])]
            if isinstance(ds, h5py.Dataset):
                return [_text(x) for x in ds[...]]
        if isinstance(var, h5py.Dataset) and var.dtype.names and "index" in var.dtype.names:
            return [_text(x) for x in var["index"]]
    except (OSError, ValueError, TypeError) as exc:
        raise DataFileError(f"{p}: cannot read the gene names (var_names): {exc}") from None
    if var is None:
        raise DataFileError(f"{p}: the file has no var table, so no gene names; it is not an AnnData file")
    try:
        try:
            from anndata.io import read_elem
        except ImportError:
            from anndata.experimental import read_elem
        return [str(x) for x in read_elem(var).index]
    except ImportError:
        raise DataFileError(f"{p}: the gene names (var) are in a layout this reader does not know; reading it needs "
                            "the anndata package (pip install anndata)") from None
    except Exception as exc:  # anndata raises several types for layouts it does not know either
        raise DataFileError(f"{p}: cannot read the gene names (var_names) ({type(exc).__name__}: {exc}); re-save "
                            "the file with a recent anndata (adata.write_h5ad)") from None


def _scan_dense(p: Path, ds, sel: _Selection, chunk: int, progress: Progress | None, sink: CountSink,
                hint: str = _H5AD_HINT) -> None:
    n_cells, n_vars = ds.shape
    if ds.dtype.kind not in "biuf":
        raise DataFileError(f"{p}: the matrix holds {ds.dtype} values, not numbers; raw integer counts are needed")
    step = max(1, min(chunk, scan._BLOCK_VALUES // n_vars))
    g = len(sel.names)
    for r0 in range(0, n_cells, step):
        block = ds[r0:r0 + step]
        if not sel.everything:
            block = block[:, sel.cols]
        v = _counts(p, block, lambda k: (sel.names[k % g], f"cell {r0 + k // g + 1}"), hint)
        sink.dense(v)
        if progress is not None:
            progress(min(r0 + step, n_cells), n_cells)


def _spans(indptr: np.ndarray, chunk: int) -> Iterator[tuple[int, int]]:
    """Consecutive [a, b) of at most `chunk` rows (columns) and, unless one alone is more, scan._BLOCK_VALUES entries."""
    n = len(indptr) - 1
    a = 0
    while a < n:
        b = min(n, a + chunk)
        if indptr[b] - indptr[a] > scan._BLOCK_VALUES:
            b = max(a + 1, min(b, int(np.searchsorted(indptr, indptr[a] + scan._BLOCK_VALUES, side="right")) - 1))
        yield a, b
        a = b


def _scan_sparse(p: Path, grp, fmt: str, shape: tuple[int, int], what: str, sel: _Selection, chunk: int,
                 progress: Progress | None, sink: CountSink, hint: str = _H5AD_HINT) -> None:
    """Stream row blocks of a CSR or column blocks of a CSC matrix: the stored entries of the genes read."""
    n_cells, n_vars = shape
    n_major, n_minor = (n_cells, n_vars) if fmt == "csr" else (n_vars, n_cells)
    data, indices = grp["data"], grp["indices"]
    indptr = grp["indptr"][...].astype(np.int64)
    if (indptr.shape != (n_major + 1,) or indptr[0] != 0 or (np.diff(indptr) < 0).any()
            or indptr[-1] != data.shape[0] or indices.shape != data.shape):
        raise DataFileError(f"{p}: the sparse matrix {what} is inconsistent (indptr, indices and data do not match "
                            f"its shape {n_cells} x {n_vars}); the file is damaged, re-save it")
    if data.dtype.kind not in "biuf":
        raise DataFileError(f"{p}: the matrix holds {data.dtype} values, not numbers; raw integer counts are needed")
    g = len(sel.names)
    for start, stop in _spans(indptr, chunk):
        a, b = start, stop
        if fmt == "csc" and not sel.everything:  # read only the columns asked for
            wanted = np.flatnonzero(sel.pos[a:b] >= 0)
            if wanted.size == 0:
                _report(progress, stop, n_major)
                continue
            a, b = start + int(wanted[0]), start + int(wanted[-1]) + 1
        lo, hi = int(indptr[a]), int(indptr[b])
        raw = data[lo:hi]
        minor = indices[lo:hi].astype(np.int64)
        if minor.size and (minor.min() < 0 or minor.max() >= n_minor):
            raise DataFileError(f"{p}: the sparse matrix {what} has an index out of range; the file is damaged, "
                                "re-save it")
        lengths = np.diff(indptr[a:b + 1])
        if fmt == "csr":
            gene_file, cell = minor, None  # the cells (rows) of the entries are made only when needed
        else:
            gene_file, cell = np.repeat(np.arange(a, b, dtype=np.int64), lengths), minor
        gene = gene_file if sel.everything else sel.pos[gene_file]
        keep = None if sel.everything else np.flatnonzero(gene >= 0)
        if keep is not None:
            gene, raw = gene[keep], raw[keep]
            cell = None if cell is None else cell[keep]

        def cells() -> np.ndarray:
            rows = np.repeat(np.arange(a, b, dtype=np.int64), lengths)
            return rows if keep is None else rows[keep]

        def locate(k: int) -> tuple[str, str]:
            c = cell[k] if cell is not None else cells()[k]
            return sel.names[gene[k]], f"cell {c + 1}"

        v = _counts(p, raw, locate, hint)
        repeats = _may_repeat(minor, lengths)
        if cell is None and (sink.needs_cells or repeats):
            cell = cells()
        if repeats:  # an entry stored twice (a non-canonical matrix): they add up, as in scipy
            assert cell is not None  # made just above
            key, inverse = np.unique(cell * g + gene, return_inverse=True)
            if key.size < v.size:
                v = np.bincount(inverse.reshape(-1), weights=v, minlength=key.size)
                cell, gene = key // g, key % g
        sink.entries(gene, cell if sink.needs_cells else None, v)
        _report(progress, stop, n_major)


def _may_repeat(minor: np.ndarray, lengths: np.ndarray) -> bool:
    """False when the indices within every row (column) strictly increase, as scipy's canonical format has them."""
    if minor.size < 2:
        return False
    rising = np.diff(minor) > 0
    starts = np.cumsum(lengths)[:-1]  # entry index where each next row (column) begins
    starts = starts[(starts > 0) & (starts < minor.size)]
    rising[starts - 1] = True
    return not rising.all()
