"""The groups of cells compared by `--groupby COLUMN [--groups A,B]`: an obs column of an AnnData (categorical,
text or numbers) or a named column of a CSV/TSV table (then not a gene), read by data/cell_columns.py.

Without --groups the groups are the column's categories in their order (a categorical), else its values sorted;
a cell whose value is missing belongs to no group. Every pair of groups i < j is compared as `Gj_vs_Gi`
(log2 of Gj over Gi): --groups ctrl,treated gives `treated_vs_ctrl`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ...data.cell_columns import CellColumn, cell_column
from ...errors import UserError

if TYPE_CHECKING:
    from anndata import AnnData

MAX_GROUPS = 20  # more distinct values without --groups: likely a per-cell number, not a grouping


@dataclass(frozen=True)
class Groups:
    """Groups compared pairwise, by name in order: groups of cells (CellGroups) or tables (--compare-table)."""

    names: tuple[str, ...]

    def pairs(self) -> list[tuple[int, int]]:
        """(i, j) for every pair i < j: group j compared with group i."""
        return [(i, j) for j in range(len(self.names)) for i in range(j)]

    def pair_name(self, i: int, j: int) -> str:
        return f"{self.names[j]}_vs_{self.names[i]}"


@dataclass(frozen=True)
class CellGroups(Groups):
    """The groups of cells compared: their names in order, the column they come from, a boolean mask over the
    table's cells for each, and the cells in none of them."""

    column: str = ""
    masks: tuple[np.ndarray, ...] = ()
    outside: int = 0

    def sizes(self) -> list[int]:
        return [int(m.sum()) for m in self.masks]


def cell_groups(source: str | Path | AnnData, column: str, groups: Sequence[str] | None = None) -> CellGroups:
    """The groups of `column` (see the module docstring); UserError naming the column and the fix when there are
    fewer than two, a group named in `groups` is not there, or the column looks like numbers per cell."""
    col = cell_column(source, column, "--groupby")
    labels = _labels(col)
    present = _order(col, labels)
    if groups is None:
        names = present
        if len(names) > MAX_GROUPS:
            raise UserError(f"--groupby {column}: the column holds {len(names)} distinct values (e.g. "
                            f"{', '.join(names[:3])}); give --groups A,B to choose the groups to compare")
    else:
        names = [str(g) for g in groups]
        twice = sorted({g for g in names if names.count(g) > 1})
        if twice:
            raise UserError(f"--groups names {', '.join(twice)} more than once; name each group once")
        missing = [g for g in names if g not in present]
        if missing:
            raise UserError(f"--groups: {', '.join(repr(g) for g in missing)} not in column {column!r} (groups: "
                            f"{', '.join(present[:10])}{', ...' if len(present) > 10 else ''})")
    if len(names) < 2 and groups is not None:
        raise UserError(f"--groups {','.join(names)}: name two or more groups to compare")
    if len(names) < 2:
        found = f"one group ({names[0]!r})" if names else "no group (every value is missing)"
        raise UserError(f"--groupby {column}: the column holds {found}; give a column with two or more groups")
    values = np.array(labels, dtype=object)
    masks = tuple(values == g for g in names)
    outside = int(len(labels) - np.sum([m.sum() for m in masks]))
    return CellGroups(tuple(names), column=column, masks=masks, outside=outside)


def _labels(col: CellColumn) -> list[str | None]:
    """Each cell's group as text (whole numbers without a decimal point), None where missing."""
    if col.numeric:
        return [None if not np.isfinite(v) else (str(int(v)) if float(v).is_integer() else repr(float(v)))
                for v in col.values]
    return [None if v is None else str(v) for v in col.values]


def _order(col: CellColumn, labels: list[str | None]) -> list[str]:
    seen = {lab for lab in labels if lab is not None}
    if col.categories is not None:
        return [c for c in col.categories if c in seen]
    if col.numeric:
        return sorted(seen, key=float)
    return sorted(seen)
