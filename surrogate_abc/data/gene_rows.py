"""Reading a CSV/TSV table of genes as rows (`--layout genes-by-cells`, txburst's allele tables): a header row
of cell ids (its first field, over the gene names, may be anything or empty), then one row per gene, the gene's
name in the first field and its count in each cell after it.

Two passes over the file: the first reads the gene names (to select and check them), the second the selected
rows, a block of genes at a time; each block goes to the sink as stored entries (gene, cell, value) of its
non-zero counts, zeros implicit as for a sparse matrix, and a missing value (empty, NaN, NA) as a NaN entry when
dropped (`drop`), else an error naming its column (cell) and row (gene). Every value is checked as
count_scan._counts does.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataFileError
from .count_scan import _TEXT_FIELDS, CountSink, Progress, _counts, _select, missing_error, parse_field


def scan_gene_rows(p: Path, delimiter: str, genes: Sequence[str] | None, chunk: int, progress: Progress | None,
                   sink: CountSink, drop: bool) -> tuple[tuple[str, ...], int]:
    """Stream the genes-as-rows table `p` into `sink` (see the module docstring); returns (genes read, cells)."""
    try:
        cells, names = _header_and_names(p, delimiter)
        sel = _select(p, names, genes, "first column", "give each gene one row")
        n_cells = len(cells)
        sink.start(len(sel.names), n_cells)
        per_block = max(1, min(chunk, _TEXT_FIELDS // n_cells))
        block: list[np.ndarray] = []
        index: list[int] = []
        done = 0
        for k, (line, row) in enumerate(_gene_rows(p, delimiter)):
            pos = int(sel.pos[k])
            if pos < 0:
                continue
            if len(row) != n_cells + 1:
                raise DataFileError(f"{p}: row {line} (gene {names[k]!r}) has {len(row)} fields but the header names "
                                    f"{n_cells} cells and the gene column")
            where = lambda j: f"column {cells[j]!r}, row {line} (gene {names[k]!r})"  # noqa: E731
            try:  # numbers and NaN at C speed; else field by field (missing texts, errors)
                values = np.array(row[1:], dtype=np.float64)
            except ValueError:
                values = np.array([parse_field(p, t, where(j), "every cell needs a count") for j, t in
                                   enumerate(row[1:])])
            if not drop:
                missing_error(p, values, where)
            _counts(p, values, lambda j: (names[k], f"column {cells[j]!r} (row {line})"), "use the raw counts",
                    missing_ok=drop)
            block.append(values)
            index.append(pos)
            if len(block) == per_block:
                done += _emit(sink, block, index)
                block, index = [], []
                if progress is not None:
                    progress(done, len(sel.names))
        if block:
            done += _emit(sink, block, index)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{p}: cannot read the table ({exc})") from None
    if progress is not None:
        progress(done, done)
    return sel.names, n_cells


def _reader(fh, delimiter: str):
    return csv.reader(io.TextIOWrapper(fh, encoding="utf-8-sig", newline=""), delimiter=delimiter)


def _header_and_names(p: Path, delimiter: str) -> tuple[list[str], list[str]]:
    """The cell ids of the header and the gene names of the first column, checked."""
    with p.open("rb") as raw:
        reader = _reader(raw, delimiter)
        header = next((r for r in reader if any(c.strip() for c in r)), None)
    if header is None:
        raise DataFileError(f"{p}: the file is empty; with --layout genes-by-cells it needs a header row of cell ids "
                            "and one row per gene")
    cells = [h.strip() for h in header[1:]]
    if not cells:
        raise DataFileError(f"{p}: the header names no cells; with --layout genes-by-cells the header holds the "
                            "cell ids after the gene-name column")
    if "" in cells:
        raise DataFileError(f"{p}: column {cells.index('') + 2} of the header has no cell id; name every cell column")
    names = []
    for line, row in _gene_rows(p, delimiter):
        name = row[0].strip()
        if not name:
            raise DataFileError(f"{p}: row {line} has no gene name in column 1; with --layout genes-by-cells each row "
                                "starts with its gene's name")
        names.append(name)
    if not names:
        raise DataFileError(f"{p}: the table has a header but no genes; add one row of counts per gene")
    if all(_is_number(n) for n in names[:50]):
        raise DataFileError(f"{p}: column 1 holds numbers ({names[0]!r}, ...), not gene names: this looks like a "
                            "table of cells as rows; omit --layout genes-by-cells")
    return cells, names


def _gene_rows(p: Path, delimiter: str):
    """(line number, fields) of every non-blank row after the header."""
    with p.open("rb") as raw:
        reader = _reader(raw, delimiter)
        next((r for r in reader if any(c.strip() for c in r)), None)
        for r in reader:
            if any(c.strip() for c in r):
                yield reader.line_num, r


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _emit(sink: CountSink, block: list[np.ndarray], index: list[int]) -> int:
    """A block of gene rows (genes, cells) to the sink as entries of its non-zero (and missing) values."""
    values = np.stack(block)
    g, c = np.nonzero(values != 0)  # NaN != 0: missing values go as NaN entries
    sink.entries(np.asarray(index, np.int64)[g], c.astype(np.int64), values[g, c])
    return len(block)
