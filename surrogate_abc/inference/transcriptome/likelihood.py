"""Multinomial log-likelihoods of many genes at many parameter sets, from one emulator.

A gene's log-likelihood at a parameter set is its histogram (categories: bins, then the overflow) dotted with
the log pmf there. At parameter sets shared by all genes that is one matrix product,
hist (G, C) @ log_pmf (C, S); at a gene's own sets, the dot of its row with each set's log pmf. Only the
categories up to a gene's largest count are needed (the rest hold no cells; for two species the box of bins up to
its largest count of each), so genes are grouped by that cut and the emulator is asked for those categories alone
(`category_probs`: an MDN then computes its pmf only that far, which is most of the speed for the low counts of
scRNA-seq). The shared sets' log pmf is needed only at the categories any gene uses (`used_categories`).

With per-cell capture (efficiency.py) each gene has one node-weighted histogram per efficiency node (G, K, C)
and the model one emulator per node; a gene's log-likelihood is the sum over nodes, the shared sets' one product
over the K x C flattened categories.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ...emulators.base import EmulatorLike
from ...metrics import log_probs

CHUNK = 32768  # parameter sets per emulator call
VALUES = 1 << 24  # at most this many probabilities per emulator call (a joint emulator has ~1e4 categories)
CUT_STEP = 8   # category cuts are rounded up to a multiple of this (fewer, larger emulator calls)


class GeneLikelihoods:
    """The log-likelihood of each gene of `hist` under `emulators`, at shared or per-gene parameter sets: hist (G, C)
    with one emulator, or (G, K, C) with one emulator per efficiency node (efficiency.node_emulators)."""

    def __init__(self, emulators: EmulatorLike | Sequence[EmulatorLike], hist: np.ndarray,
                 shared_categories: np.ndarray | None = None):
        self.emulators = list(emulators) if isinstance(emulators, Sequence) else [emulators]
        h = np.asarray(hist, float)
        self.hist = h[:, None, :] if h.ndim == 2 else h  # (G, K, C)
        self.shared_categories = shared_categories  # the columns of the shared sets' log pmf (None: all)
        if self.hist.shape[1] != len(self.emulators):
            raise ValueError(f"{self.hist.shape[1]} node histograms per gene for {len(self.emulators)} emulators")
        n_cat = self.hist.shape[2]
        self.n_categories = n_cat
        used = np.abs(self.hist).sum(axis=1) > 0  # (G, C): categories holding cells at any node
        bins = tuple(len(e) - 1 for e in self.emulators[0].edges)
        keys = [_needed(row, bins) for row in used]
        self.groups = sorted(set(keys))  # each: (cut per axis, overflow needed)
        index = {k: i for i, k in enumerate(self.groups)}
        self.group = np.array([index[k] for k in keys], dtype=np.int64)
        self.categories = [_categories(k, bins) for k in self.groups]

    def shared(self, log_pmf: np.ndarray) -> np.ndarray:
        """(G, S) log-likelihoods at S shared sets given their log pmf (S, C), or (K, S, C) per node; C the
        `shared_categories` when given (the categories holding cells, `used_categories`)."""
        lp = np.asarray(log_pmf)
        lp = lp[None] if lp.ndim == 2 else lp
        hist = self.hist if self.shared_categories is None else self.hist[:, :, self.shared_categories]
        g, k, c = hist.shape
        return hist.reshape(g, k * c) @ np.transpose(lp, (1, 0, 2)).reshape(lp.shape[1], k * c).T

    def at(self, genes: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """(n,) log-likelihood of gene genes[i] at theta[i] (natural scale, emulator order)."""
        genes = np.asarray(genes, dtype=np.int64)
        out = np.zeros(len(genes))
        group = self.group[genes]
        for j in np.unique(group):
            rows = np.flatnonzero(group == j)
            cats = self.categories[j]
            for s in range(0, len(rows), CHUNK):
                r = rows[s:s + CHUNK]
                for k, em in enumerate(self.emulators):
                    p = em.category_probs(theta[r], cats)
                    out[r] += np.einsum("ij,ij->i", log_probs(p), self.hist[genes[r], k][:, cats])
        return out


def _needed(used: np.ndarray, bins: tuple[int, ...]) -> tuple[tuple[int, ...], bool]:
    """The categories a gene needs: per axis the bins up to its last used one (rounded up to CUT_STEP bins), a box
    in the flat grid (for one species the bins up to the last), and whether its overflow holds cells."""
    overflow = bool(used[-1])
    idx = np.flatnonzero(used[:-1])
    if not len(idx):
        return tuple(min(CUT_STEP, b) for b in bins), overflow
    last = np.unravel_index(idx, bins)
    return tuple(min((int(a.max()) // CUT_STEP + 1) * CUT_STEP, b) for a, b in zip(last, bins)), overflow


def _categories(key: tuple[tuple[int, ...], bool], bins: tuple[int, ...]) -> np.ndarray:
    """The flat categories of a `_needed` key: the box of bins (C order), then the overflow when needed."""
    cut, overflow = key
    box = np.ravel_multi_index(np.meshgrid(*[np.arange(c) for c in cut], indexing="ij"), bins).ravel()
    return np.concatenate([np.sort(box), [int(np.prod(bins))]] if overflow else [np.sort(box)]).astype(np.int64)


def used_categories(hist: np.ndarray) -> np.ndarray:
    """The categories (last axis) holding cells in any gene (and node) of histograms (G, C) or (G, K, C)."""
    h = np.abs(np.asarray(hist, float))
    return np.flatnonzero(h.reshape(-1, h.shape[-1]).sum(axis=0) > 0)


def _rows_per_chunk(n_categories: int) -> int:
    """Parameter sets per emulator call: CHUNK, fewer where that many rows would exceed VALUES values."""
    return max(1, min(CHUNK, VALUES // max(int(n_categories), 1)))


def category_log_pmf(emulators: Sequence[EmulatorLike], theta: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """(K, n, c) log probabilities of `categories` at each efficiency node's emulator, in chunks."""
    step = _rows_per_chunk(len(categories))
    return np.stack([np.concatenate([log_probs(em.category_probs(theta[s:s + step], categories))
                                     for s in range(0, len(theta), step)] or [np.zeros((0, len(categories)))])
                     for em in emulators])


def full_log_pmf(emulator: EmulatorLike, theta: np.ndarray) -> np.ndarray:
    """(n, C) log pmf over every category (bins, then the overflow), in chunks."""
    parts = []
    n_categories = int(np.prod([len(e) - 1 for e in emulator.edges])) + 1  # bins, then the overflow
    step = _rows_per_chunk(n_categories)
    for s in range(0, len(theta), step):
        probs, over = emulator.pmf(theta[s:s + step])
        parts.append(log_probs(np.concatenate([np.asarray(probs).reshape(len(probs), -1),
                                               np.asarray(over)[:, None]], axis=1)))
    return np.concatenate(parts) if parts else np.zeros((0, n_categories))


def node_log_pmf(emulators: Sequence[EmulatorLike], theta: np.ndarray) -> np.ndarray:
    """(K, n, C) log pmf at each efficiency node's emulator."""
    return np.stack([full_log_pmf(em, theta) for em in emulators])
