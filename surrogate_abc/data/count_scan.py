"""Streaming a count table (CSV/TSV, or AnnData .h5ad: `X` or a layer; dense, CSR or CSC) block by block into a
sink, every value checked on the way: the reading half of `gene_histograms` (which holds the sinks). This module
holds the dispatch, the gene selection, the value checks and the CSV/TSV reader; h5ad_scan.py the AnnData reader.

Blocks are row blocks of a CSR or dense matrix or of a table, column blocks of a CSC matrix, read straight from
HDF5 with h5py, each at most _BLOCK_VALUES values (_TEXT_FIELDS text fields): memory is one block. A sparse
matrix is never made dense; the sink is given its stored entries. A bad file raises one DataFileError line naming
the file, the gene and the problem.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from ..errors import DataFileError
from .table_format import DROP_HINT, LAYOUT_HINT, TableFormat, check_format, is_missing_text
from .tables import ANNDATA_SUFFIXES, TABLE_SUFFIXES

if TYPE_CHECKING:
    from anndata import AnnData

Progress = Callable[[int, int], None]

_MAX_COUNT = 2.0**53  # counts are exact integers in float64 below this
_BLOCK_VALUES = 1 << 20  # at most this many values (dense) or stored entries (sparse) per block
_TEXT_FIELDS = 1 << 20  # at most this many text fields of a CSV/TSV per block


class CountSink(Protocol):
    """Receives validated counts (float64) block by block."""

    needs_cells: bool

    def start(self, n_genes: int, n_cells: int | None) -> None: ...

    def dense(self, block: np.ndarray) -> None: ...

    def entries(self, gene: np.ndarray, cell: np.ndarray | None, values: np.ndarray) -> None: ...


# ---------------------------------------------------------------------------------------------------- reading


def scan_counts(path: str | Path | AnnData, genes: Sequence[str] | None, layer: str | None, chunk: int,
                progress: Progress | None, sink: CountSink, fmt: TableFormat | None = None
                ) -> tuple[Path, tuple[str, ...], int]:
    """Stream the file (or an in-memory AnnData: anndata_memory.py) into `sink`; returns the path (for an AnnData
    object a label, adata.X or adata.layers['NAME']), the genes read and the number of cells. `fmt`: a CSV/TSV
    table's layout and missing-value rule (table_format.py); with missing "drop" a missing value reaches the sink
    as NaN (a dense block's entry, or a stored entry)."""
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, not {chunk}")
    if not isinstance(path, (str, Path)):
        from .anndata_memory import scan_adata

        check_format("adata", fmt, anndata=True)
        return scan_adata(path, genes, layer, int(chunk), progress, sink)
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: file not found")
    suffix = p.suffix.lower()
    if suffix in ANNDATA_SUFFIXES:
        from .h5ad_scan import scan_anndata  # h5ad_scan uses this module's helpers

        check_format(p, fmt, anndata=True)
        names, n_cells = scan_anndata(p, genes, layer, int(chunk), progress, sink)
    elif suffix in TABLE_SUFFIXES:
        if layer is not None:
            raise DataFileError(f"{p}: --layer applies to AnnData (.h5ad) files only; omit it for a table")
        fmt = check_format(p, fmt, anndata=False)
        if fmt.genes_by_cells:
            from .gene_rows import scan_gene_rows  # gene_rows uses this module's helpers

            names, n_cells = scan_gene_rows(p, TABLE_SUFFIXES[suffix], genes, int(chunk), progress, sink,
                                            fmt.drop_missing)
        else:
            names, n_cells = _scan_table(p, TABLE_SUFFIXES[suffix], genes, int(chunk), progress, sink,
                                         fmt.drop_missing)
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




def _counts(p: Path, raw: np.ndarray, locate: Callable[[int], tuple[str, str]], hint: str,
            missing_ok: bool = False) -> np.ndarray:
    """`raw` as float64 when every value is a raw count (an integer >= 0; also NaN, a missing value, when
    `missing_ok`); else a DataFileError for the first."""
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
        if missing_ok:
            bad &= ~np.isnan(v)
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
                sink: CountSink, drop: bool = False) -> tuple[tuple[str, ...], int]:
    size = max(p.stat().st_size, 1)
    try:
        with p.open("rb") as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), delimiter=delimiter)
            header = next((r for r in reader if any(c.strip() for c in r)), None)
            if header is None:
                raise DataFileError(f"{p}: the file is empty; it needs a header row of gene names and one row per "
                                    "cell")
            names = [h.strip() for h in header]
            if names[0] == "" and len(names) > 1:  # as pandas writes a table with an index: genes as rows
                raise DataFileError(f"{p}: column 1 of the header has no name: for a table with genes as rows (their "
                                    f"names in column 1, cell ids in the header) {LAYOUT_HINT}; otherwise name "
                                    "every gene column")
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
                    sink.dense(_parse_block(p, block, lines, sel.names, drop, names[0]))
                    done += len(block)
                    block, lines = [], []
                    if progress is not None:  # the rows still to come are estimated from the bytes read
                        progress(done, max(done + 1, round(done * size / max(raw.tell(), 1))))
            if block:
                sink.dense(_parse_block(p, block, lines, sel.names, drop, names[0]))
                done += len(block)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{p}: cannot read the table ({exc})") from None
    if done == 0:
        raise DataFileError(f"{p}: the table has a header but no cells; add one row of counts per cell")
    if progress is not None:
        progress(done, done)
    return sel.names, done


def _parse_block(p: Path, block: list[list[str]], lines: list[int], genes: tuple[str, ...], drop: bool = False,
                 first: str | None = None) -> np.ndarray:
    """A block of table rows as validated float64 counts (rows, genes); a missing value (an empty field, NaN, NA)
    is NaN with `drop`, else an error naming its column and row. `first`: the file's first column (whose text,
    not a number, hints at a table of genes as rows)."""
    try:
        values = np.array(block, dtype=np.float64)
    except ValueError:
        values = np.empty((len(block), len(genes)))
        for i, (row, line) in enumerate(zip(block, lines)):
            for j, (text, gene) in enumerate(zip(row, genes)):
                values[i, j] = parse_field(p, text, f"column {gene!r}, row {line}",
                                           _names_hint(p) if gene == first else "every cell needs a count")
    g = len(genes)
    locate = lambda k: (genes[k % g], f"row {lines[k // g]}")  # noqa: E731
    if not drop:
        missing_error(p, values, lambda k: f"column {genes[k % g]!r}, row {lines[k // g]}")
    return _counts(p, values, locate, "use the raw counts", missing_ok=drop)


def parse_field(p: Path, text: str, where: str, fix: str) -> float:
    """A table field as a number; NaN for a missing value (empty, NaN, NA, N/A); else a DataFileError naming
    `where` (its column and row) with `fix`."""
    t = text.strip()
    if is_missing_text(t):
        return np.nan
    try:
        return float(t)
    except ValueError:
        raise DataFileError(f"{p}: {where}: {t!r} is not a number; {fix}") from None


def missing_error(p: Path, values: np.ndarray, locate: Callable[[int], str]) -> None:
    """A DataFileError naming the first missing value's column and row (`locate` of its flat index) and the fix;
    nothing when no value is missing."""
    nan = np.isnan(values)
    if nan.any():
        k = int(np.argmax(nan))
        raise DataFileError(f"{p}: {locate(k)} is missing (an empty field or NaN); every cell needs a count, or "
                            f"{DROP_HINT}")


def _names_hint(p: Path) -> str:
    return (f"the first column holds names: for a table with genes as rows and cells as columns (txburst's) "
            f"{LAYOUT_HINT} (or --genes to read only the gene columns)")


# ------------------------------------------------------------------------------------------------- AnnData

def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)
