"""Which genes of a batch run are inferred: the skip rules, each skipped gene with its reason (skipped.csv).

In order: a gene with missing values dropped (--missing drop) and no cell left or fewer than `min_cells` cells
left, no counts at all, fewer than `min_cells` non-zero cells, or a truncated mean outside
what the emulator produces for as many cells (5% margin).
"""
from __future__ import annotations

import numpy as np

from ...data.gene_histograms import GeneHistograms
from ...data.observed import binned_means, predictive_mean_ranges
from ...emulators.base import EmulatorLike


def select_genes(data: GeneHistograms, emulator: EmulatorLike, min_cells: int
                 ) -> tuple[GeneHistograms, dict[str, str]]:
    """(the genes to infer, {skipped gene: reason}) by the rules of the module docstring."""
    skipped: dict[str, str] = {}
    used = data.cells_used()
    lost = data.missing if data.missing is not None else np.zeros(len(data.genes), np.int64)
    for g, nz, n, m in zip(data.genes, data.nonzero, used, lost):
        if m and n == 0:
            skipped[g] = "no cell left (every value missing)"
        elif m and n < min_cells:
            skipped[g] = f"fewer than {min_cells} cells left after dropping missing values"
        elif nz == 0:
            skipped[g] = "all zero"
        elif nz < min_cells:
            skipped[g] = f"fewer than {min_cells} non-zero cells"
    kept = data.select(np.array([g not in skipped for g in data.genes], dtype=bool))
    if len(kept.genes):
        outside = _outside_range(emulator, kept)
        for g in np.asarray(kept.genes)[outside]:
            skipped[str(g)] = "mean outside the emulator's range"
        kept = kept.select(~outside)
    return kept, skipped


def _outside_range(emulator: EmulatorLike, data: GeneHistograms) -> np.ndarray:
    """Genes whose truncated mean lies outside what the emulator produces for as many cells (5% margin; with
    missing values dropped, for the fewest cells any gene keeps: the widest range)."""
    base = getattr(emulator, "inner", emulator)
    if getattr(base, "solves_each_set", False):
        return np.zeros(len(data.genes), bool)
    n = int(data.cells_used().min())
    ranges = np.array(list(predictive_mean_ranges(emulator, n).values()))  # (S, 2)
    hist = data.hist[:, :-1].reshape((len(data.genes),) + tuple(len(e) - 1 for e in emulator.edges))
    obs = binned_means(hist, data.hist[:, -1], tuple(emulator.edges))  # (G, S)
    return np.any((obs < ranges[:, 0] * 0.95) | (obs > ranges[:, 1] * 1.05), axis=1)
