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
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from ..errors import DataFileError
from .tables import ANNDATA_SUFFIXES, TABLE_SUFFIXES

Progress = Callable[[int, int], None]

_MAX_COUNT = 2.0**53  # counts are exact integers in float64 below this
_BLOCK_VALUES = 1 << 20  # at most this many values (dense) or stored entries (sparse) per block
_TEXT_FIELDS = 1 << 20  # at most this many text fields of a CSV/TSV per block


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

    def mean(self) -> np.ndarray:
        """Mean count per cell (G,)."""
        return self.total / self.n_cells

    def fano(self) -> np.ndarray:
        """Sample variance (ddof=1) over mean (G,); nan where the mean is 0 or there are fewer than 2 cells."""
        n = self.n_cells
        out = np.full(len(self.genes), np.nan)
        if n < 2:
            return out
        mean = self.total / n
        var = np.maximum(self.sumsq - self.total * mean, 0.0) / (n - 1)
        ok = mean > 0
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
                              self.nonzero[idx], self.total[idx], self.sumsq[idx], self.max[idx])


def gene_histograms(path: str | Path, edges: np.ndarray, genes: Sequence[str] | None = None,
                    layer: str | None = None, chunk: int = 2048,
                    progress: Progress | None = None) -> GeneHistograms:
    """Histograms of every gene (or of `genes`, in that order) on `edges`, in one pass over the file.

    `edges` are increasing, starting at 0: a count x is in bin i when edges[i] <= x < edges[i + 1] and in the
    overflow column when x >= edges[-1]. `chunk` is the cells (CSR, dense, CSV/TSV) or genes (CSC) per block,
    fewer where a block would exceed about a million values. `progress(done, total)` is called after each block
    with the cells (genes for CSC) done; for CSV/TSV `total` is an estimate from the bytes read until the last call.
    """
    e = _check_edges(edges)
    sink = _Histograms(e)
    p, names, n_cells = _scan(path, genes, layer, chunk, progress, sink)
    return sink.result(str(p), names, n_cells)


def read_gene_counts(path: str | Path, genes: Sequence[str], layer: str | None = None) -> np.ndarray:
    """(cells, len(genes)) int64 counts of a few genes, read in blocks without making the whole matrix dense."""
    if not list(genes):
        raise ValueError("read_gene_counts needs at least one gene")
    sink = _Columns()
    _, _, n_cells = _scan(path, genes, layer, 2048, None, sink)
    return sink.result(n_cells)


# ---------------------------------------------------------------------------------------------------- sinks


class _Sink(Protocol):
    """Receives validated counts (float64) block by block."""

    needs_cells: bool

    def start(self, n_genes: int, n_cells: int | None) -> None: ...

    def dense(self, block: np.ndarray) -> None: ...

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None: ...


class _Histograms:
    """Accumulates histograms and sums; cells a sparse matrix does not store are zeros, added at the end."""

    needs_cells = False

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = edges
        self.width = len(edges)  # B bins + overflow

    def start(self, n_genes: int, n_cells: int | None) -> None:
        g, w = n_genes, self.width
        self.hist = np.zeros(g * w, np.int64)
        self.seen = np.zeros(g, np.int64)  # cells given per gene (stored entries of a sparse matrix)
        self.nonzero = np.zeros(g, np.int64)
        self.total = np.zeros(g)
        self.sumsq = np.zeros(g)
        self.max = np.zeros(g)

    def _bins(self, values: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, values, side="right") - 1  # len(edges) - 1 is the overflow column

    def dense(self, block: np.ndarray) -> None:
        rows, g = block.shape
        flat = self._bins(block) + np.arange(g) * self.width
        self.hist += np.bincount(flat.ravel(), minlength=self.hist.size)
        self.seen += rows
        self.nonzero += np.count_nonzero(block, axis=0)
        self.total += block.sum(axis=0)
        self.sumsq += np.einsum("ij,ij->j", block, block)
        np.maximum(self.max, block.max(axis=0, initial=0.0), out=self.max)

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None:
        g = len(self.seen)
        self.hist += np.bincount(gene * self.width + self._bins(values), minlength=self.hist.size)
        self.seen += np.bincount(gene, minlength=g)
        self.nonzero += np.bincount(gene[values > 0], minlength=g)
        self.total += np.bincount(gene, weights=values, minlength=g)
        self.sumsq += np.bincount(gene, weights=values * values, minlength=g)
        np.maximum.at(self.max, gene, values)

    def result(self, path: str, genes: tuple[str, ...], n_cells: int) -> GeneHistograms:
        hist = self.hist.reshape(len(genes), self.width)
        hist[:, int(self._bins(np.zeros(1))[0])] += n_cells - self.seen
        return GeneHistograms(path, genes, n_cells, hist, self.nonzero, self.total, self.sumsq,
                              self.max.astype(np.int64))


class _Columns:
    """Collects the dense counts of the selected genes."""

    needs_cells = True

    def start(self, n_genes: int, n_cells: int | None) -> None:
        self.n_genes = n_genes
        self.parts: list[np.ndarray] = []
        self.out = np.zeros((n_cells, n_genes), np.int64) if n_cells is not None else None

    def dense(self, block: np.ndarray) -> None:
        self.parts.append(block.astype(np.int64))

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None:
        assert self.out is not None and cell is not None
        self.out[cell, gene] = values.astype(np.int64)

    def result(self, n_cells: int) -> np.ndarray:
        if self.parts:
            return np.concatenate(self.parts, axis=0)
        return self.out if self.out is not None else np.zeros((n_cells, self.n_genes), np.int64)


# ---------------------------------------------------------------------------------------------------- reading


def _scan(path: str | Path, genes: Sequence[str] | None, layer: str | None, chunk: int,
          progress: Progress | None, sink: _Sink) -> tuple[Path, tuple[str, ...], int]:
    """Stream the file into `sink`; returns the path, the genes read and the number of cells."""
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, not {chunk}")
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: file not found")
    suffix = p.suffix.lower()
    if suffix in ANNDATA_SUFFIXES:
        names, n_cells = _scan_anndata(p, genes, layer, int(chunk), progress, sink)
    elif suffix in TABLE_SUFFIXES:
        if layer is not None:
            raise DataFileError(f"{p}: --layer applies to AnnData (.h5ad) files only; omit it for a table")
        names, n_cells = _scan_table(p, TABLE_SUFFIXES[suffix], genes, int(chunk), progress, sink)
    else:
        raise DataFileError(f"{p}: unknown table type {suffix!r}; use .csv, .tsv or .h5ad")
    return p, names, n_cells


@dataclass(frozen=True)
class _Selection:
    """The genes read: their names, their columns in the file and each file column's position (-1: not read)."""

    names: tuple[str, ...]
    cols: np.ndarray
    pos: np.ndarray
    everything: bool  # all columns, in file order


def _select(p: Path, names: list[str], genes: Sequence[str] | None, where: str, fix: str) -> _Selection:
    counts = Counter(names)
    if genes is None:
        want = list(names)
    else:
        want = [str(g) for g in genes]
        twice = [g for g, c in Counter(want).items() if c > 1]
        if twice:
            raise DataFileError(f"{p}: {_names(twice, 'gene')} named more than once in --genes; name each gene once")
        missing = [g for g in want if g not in counts]
        if missing:
            head = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise DataFileError(f"{p}: {_names(missing, 'gene')} named in --genes {_is(missing)} not in the "
                                f"{where} ({len(names)} genes: {head})")
    dup = [g for g in dict.fromkeys(want) if counts[g] > 1]
    if dup:
        raise DataFileError(f"{p}: {_names(dup, 'gene')} {'appear' if len(dup) > 1 else 'appears'} more than once "
                            f"in the {where}; {fix}")
    index = {g: j for j, g in enumerate(names)}
    cols = np.array([index[g] for g in want], dtype=np.int64)
    pos = np.full(len(names), -1, np.int64)
    pos[cols] = np.arange(len(cols))
    return _Selection(tuple(want), cols, pos, genes is None)


def _names(items: list[str], noun: str) -> str:
    shown = ", ".join(repr(g) for g in items[:5])
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return f"{noun}{'s' if len(items) > 1 else ''} {shown}{more}"


def _is(items: list[str]) -> str:
    return "are" if len(items) > 1 else "is"


def _check_edges(edges) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.isfinite(e).all() or (np.diff(e) <= 0).any() or e[0] > 0:
        raise ValueError("edges must be a 1-D, finite, strictly increasing array of at least 2 values from 0")
    return e


def _counts(p: Path, raw: np.ndarray, locate: Callable[[int], tuple[str, str]], hint: str) -> np.ndarray:
    """`raw` as float64 when every value is a raw count (an integer >= 0); else a DataFileError for the first."""
    kind = raw.dtype.kind
    if kind not in "biuf":
        raise DataFileError(f"{p}: the matrix holds {raw.dtype} values, not numbers; raw integer counts are needed")
    v = raw.astype(np.float64, copy=False)
    if kind == "b" or v.size == 0:
        return v
    if kind in "iu":
        bad = (v < 0) | (v >= _MAX_COUNT) if (raw.min() < 0 or raw.max() >= _MAX_COUNT) else None
    else:
        bad = ~((v >= 0) & (v < _MAX_COUNT) & (np.floor(v) == v))  # NaN fails every comparison
        bad = bad if bad.any() else None
    if bad is None:
        return v
    k = int(np.argmax(bad))
    x = float(v.flat[k])
    gene, cell = locate(k)
    where = f"{p}: gene {gene!r} has"
    if np.isnan(x):
        raise DataFileError(f"{where} a missing value (NaN) in {cell}; raw integer counts are needed "
                            "(fill or drop that cell)")
    if np.isinf(x):
        raise DataFileError(f"{where} an infinite value ({x}) in {cell}; raw integer counts are needed")
    if x < 0:
        raise DataFileError(f"{where} negative counts (e.g. {x:g} in {cell}); raw integer counts (>= 0) are needed")
    if x >= _MAX_COUNT:
        raise DataFileError(f"{where} a value too large for a count ({x:g} in {cell}); raw integer counts are needed")
    raise DataFileError(f"{where} fractional values (e.g. {x:g} in {cell}): this looks like a normalised matrix; "
                        f"raw integer counts are needed ({hint})")


# ----------------------------------------------------------------------------------------------- CSV / TSV


def _scan_table(p: Path, delimiter: str, genes: Sequence[str] | None, chunk: int, progress: Progress | None,
                sink: _Sink) -> tuple[tuple[str, ...], int]:
    size = max(p.stat().st_size, 1)
    try:
        with p.open("rb") as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), delimiter=delimiter)
            header = next((r for r in reader if any(c.strip() for c in r)), None)
            if header is None:
                raise DataFileError(f"{p}: the file is empty; it needs a header row of gene names and one row per "
                                    "cell")
            names = [h.strip() for h in header]
            if "" in names:
                raise DataFileError(f"{p}: column {names.index('') + 1} of the header has no name; name every gene "
                                    "column")
            sel = _select(p, names, genes, "header", "give each gene one column")
            sink.start(len(sel.names), None)
            per_block = max(1, min(chunk, _TEXT_FIELDS // len(names)))
            cols = sel.cols.tolist()
            done = 0
            block: list[list[str]] = []
            lines: list[int] = []
            for r in reader:
                if not any(c.strip() for c in r):
                    continue
                if len(r) != len(names):
                    raise DataFileError(f"{p}: row {reader.line_num} has {len(r)} values but the header names "
                                        f"{len(names)} columns")
                block.append(r if sel.everything else [r[j] for j in cols])
                lines.append(reader.line_num)
                if len(block) == per_block:
                    sink.dense(_parse_block(p, block, lines, sel.names))
                    done += len(block)
                    block, lines = [], []
                    if progress is not None:  # the rows still to come are estimated from the bytes read
                        progress(done, max(done + 1, round(done * size / max(raw.tell(), 1))))
            if block:
                sink.dense(_parse_block(p, block, lines, sel.names))
                done += len(block)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{p}: cannot read the table ({exc})") from None
    if done == 0:
        raise DataFileError(f"{p}: the table has a header but no cells; add one row of counts per cell")
    if progress is not None:
        progress(done, done)
    return sel.names, done


def _parse_block(p: Path, block: list[list[str]], lines: list[int], genes: tuple[str, ...]) -> np.ndarray:
    """A block of table rows as validated float64 counts (rows, genes)."""
    try:
        values = np.array(block, dtype=np.float64)
    except ValueError:
        for row, line in zip(block, lines):
            for text, gene in zip(row, genes):
                t = text.strip()
                if not t:
                    raise DataFileError(f"{p}: column {gene!r}, row {line} is empty; every cell needs a count") from None
                try:
                    float(t)
                except ValueError:
                    raise DataFileError(f"{p}: column {gene!r}, row {line}: {t!r} is not a number; every cell needs "
                                        "a count") from None
        values = np.array([[float(t) for t in row] for row in block], dtype=np.float64)
    g = len(genes)
    return _counts(p, values, lambda k: (genes[k % g], f"row {lines[k // g]}"), "use the raw counts")


# ------------------------------------------------------------------------------------------------- AnnData

_SPARSE = {"csr_matrix": "csr", "csc_matrix": "csc", "csr": "csr", "csc": "csc"}
_H5AD_HINT = "use the raw counts, e.g. --layer counts"
_H5AD_DUP_FIX = "make the names unique (e.g. adata.var_names_make_unique())"


def _scan_anndata(p: Path, genes: Sequence[str] | None, layer: str | None, chunk: int, progress: Progress | None,
                  sink: _Sink) -> tuple[tuple[str, ...], int]:
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


def _scan_dense(p: Path, ds, sel: _Selection, chunk: int, progress: Progress | None, sink: _Sink) -> None:
    n_cells, n_vars = ds.shape
    if ds.dtype.kind not in "biuf":
        raise DataFileError(f"{p}: the matrix holds {ds.dtype} values, not numbers; raw integer counts are needed")
    step = max(1, min(chunk, _BLOCK_VALUES // n_vars))
    g = len(sel.names)
    for r0 in range(0, n_cells, step):
        block = ds[r0:r0 + step]
        if not sel.everything:
            block = block[:, sel.cols]
        v = _counts(p, block, lambda k: (sel.names[k % g], f"cell {r0 + k // g + 1}"), _H5AD_HINT)
        sink.dense(v)
        if progress is not None:
            progress(min(r0 + step, n_cells), n_cells)


def _spans(indptr: np.ndarray, chunk: int) -> Iterator[tuple[int, int]]:
    """Consecutive [a, b) of at most `chunk` rows (columns) and, unless one alone is more, _BLOCK_VALUES entries."""
    n = len(indptr) - 1
    a = 0
    while a < n:
        b = min(n, a + chunk)
        if indptr[b] - indptr[a] > _BLOCK_VALUES:
            b = max(a + 1, min(b, int(np.searchsorted(indptr, indptr[a] + _BLOCK_VALUES, side="right")) - 1))
        yield a, b
        a = b


def _scan_sparse(p: Path, grp, fmt: str, shape: tuple[int, int], what: str, sel: _Selection, chunk: int,
                 progress: Progress | None, sink: _Sink) -> None:
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

        v = _counts(p, raw, locate, _H5AD_HINT)
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


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _may_repeat(minor: np.ndarray, lengths: np.ndarray) -> bool:
    """False when the indices within every row (column) strictly increase, as scipy's canonical format has them."""
    if minor.size < 2:
        return False
    rising = np.diff(minor) > 0
    starts = np.cumsum(lengths)[:-1]  # entry index where each next row (column) begins
    starts = starts[(starts > 0) & (starts < minor.size)]
    rising[starts - 1] = True
    return not rising.all()
