"""Multinomial log-likelihoods of many genes at many parameter sets, from one emulator.

A gene's log-likelihood at a parameter set is its histogram (categories: bins, then the overflow) dotted with
the log pmf there. At parameter sets shared by all genes that is one matrix product,
hist (G, C) @ log_pmf (C, S); at a gene's own sets, the dot of its row with each set's log pmf. Only the
categories up to a gene's largest count are needed (the rest hold no cells), so genes are grouped by that
cut and the emulator is asked for those categories alone (`category_probs`: an MDN then computes its pmf only
that far, which is most of the speed for the low counts of scRNA-seq).
"""
from __future__ import annotations

import numpy as np

from ...emulators.base import EmulatorLike
from ...metrics import log_probs

CHUNK = 32768  # parameter sets per emulator call
CUT_STEP = 8   # category cuts are rounded up to a multiple of this (fewer, larger emulator calls)


class GeneLikelihoods:
    """The log-likelihood of each gene of `hist` (G, C) under `emulator`, at shared or per-gene parameter sets."""

    def __init__(self, emulator: EmulatorLike, hist: np.ndarray):
        self.emulator = emulator
        self.hist = np.asarray(hist, float)
        n_cat = self.hist.shape[1]
        self.n_categories = n_cat
        last = np.array([np.flatnonzero(row)[-1] if row.any() else 0 for row in self.hist])
        overflow = last == n_cat - 1
        cut = np.minimum(((last // CUT_STEP) + 1) * CUT_STEP, n_cat - 1)
        self.cut = np.where(overflow, n_cat, cut)  # categories 0..cut-1 are needed; n_cat: all, with the overflow

    def shared(self, log_pmf: np.ndarray) -> np.ndarray:
        """(G, S) log-likelihoods at S shared sets given their log pmf (S, C)."""
        return self.hist @ log_pmf.T

    def at(self, genes: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """(n,) log-likelihood of gene genes[i] at theta[i] (natural scale, emulator order)."""
        genes = np.asarray(genes, dtype=np.int64)
        out = np.empty(len(genes))
        cuts = self.cut[genes]
        for c in np.unique(cuts):
            rows = np.flatnonzero(cuts == c)
            cats = np.arange(c)
            for s in range(0, len(rows), CHUNK):
                r = rows[s:s + CHUNK]
                p = self.emulator.category_probs(theta[r], cats)
                out[r] = np.einsum("ij,ij->i", log_probs(p), self.hist[genes[r], :c])
        return out


def full_log_pmf(emulator: EmulatorLike, theta: np.ndarray) -> np.ndarray:
    """(n, C) log pmf over every category (bins, then the overflow), in chunks."""
    parts = []
    for s in range(0, len(theta), CHUNK):
        probs, over = emulator.pmf(theta[s:s + CHUNK])
        parts.append(log_probs(np.concatenate([np.asarray(probs).reshape(len(probs), -1),
                                               np.asarray(over)[:, None]], axis=1)))
    n_categories = int(np.prod([len(e) - 1 for e in emulator.edges])) + 1  # bins, then the overflow
    return np.concatenate(parts) if parts else np.zeros((0, n_categories))
