"""How a CSV/TSV count table is laid out and what its missing values mean (`--layout`, `--missing`).

* layout `cells-by-genes` (the default): a header row of gene names, one row per cell;
  `genes-by-cells` (txburst's allele tables, Larsson et al. 2019): one row per gene whose first field is the
  gene's name, a header row of cell ids (its first field, over the names, may be anything or empty).
* missing `error` (the default): an empty field, `NaN` or `NA` is an error naming the column and row;
  `drop`: such a value leaves that cell out of that gene's data only (each gene keeps every cell it has).

AnnData files are cells by genes by construction and hold no missing values: the options are for tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataFileError, UserError

CELLS_BY_GENES = "cells-by-genes"
GENES_BY_CELLS = "genes-by-cells"
LAYOUTS = (CELLS_BY_GENES, GENES_BY_CELLS)
MISSING = ("error", "drop")
MISSING_TEXT = frozenset({"", "nan", "na", "n/a"})  # lower-cased field texts that mean "no value"
DROP_HINT = "give --missing drop to leave missing values out of that gene's data"
LAYOUT_HINT = "give --layout genes-by-cells"


@dataclass(frozen=True)
class TableFormat:
    """A table's layout and missing-value rule (see the module docstring)."""

    layout: str = CELLS_BY_GENES
    missing: str = "error"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.missing not in MISSING:
            raise ValueError(f"missing must be one of {', '.join(MISSING)}, not {self.missing!r}")

    @property
    def genes_by_cells(self) -> bool:
        return self.layout == GENES_BY_CELLS

    @property
    def drop_missing(self) -> bool:
        return self.missing == "drop"

    @property
    def default(self) -> bool:
        """The plain reading (cells by genes, missing values an error)."""
        return self == TableFormat()

    def options(self) -> str:
        """The command-line options that give this format ("" for the default)."""
        parts = [f"--layout {self.layout}"] if self.genes_by_cells else []
        return " ".join(parts + (["--missing drop"] if self.drop_missing else []))


def is_missing_text(text: str) -> bool:
    """True for a field that holds no value: empty, NaN, NA or N/A (any case, spaces around)."""
    return text.strip().lower() in MISSING_TEXT


def check_format(path: str | Path, fmt: TableFormat | None, anndata: bool) -> TableFormat:
    """`fmt` (None: the default); DataFileError when it is not the default for an AnnData source."""
    fmt = fmt or TableFormat()
    if anndata and not fmt.default:
        raise DataFileError(f"{path}: {fmt.options()} applies to CSV/TSV tables; an AnnData matrix is cells by genes "
                            "and has no missing values (omit the option)")
    return fmt


def check_per_cell_options(fmt: TableFormat, size_factors: str | None, groupby: str | None) -> None:
    """UserError for the per-cell options a format cannot serve: a table of genes as rows has no column of cells
    (--groupby, --size-factors); with missing values dropped a cell's total count is unknown (--size-factors)."""
    if fmt.genes_by_cells and (groupby is not None or size_factors is not None):
        flag = "--groupby" if groupby is not None else "--size-factors"
        raise UserError(f"{flag} applies to tables of cells as rows, not --layout genes-by-cells (to compare two "
                        "tables, e.g. two alleles, give --compare-table)")
    if fmt.drop_missing and size_factors is not None:
        raise UserError("--size-factors needs every cell's counts; with --missing drop a cell's total is unknown "
                        "(omit --size-factors, or fill the missing values)")
