"""Seeded row splits: train/validation (per data file), k folds, bootstrap resamples of ensemble members.
Each draws from numpy generators seeded by the config's seed, so reruns and resumed runs see the same rows."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def split_by_source(source: np.ndarray, validation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """split_indices within each data file: adding a file leaves the earlier files' split unchanged, so a model
    warm-started (--init) from a run on those files is never validated on its own training rows."""
    tr, va = [], []
    for i in np.unique(source):
        rows = np.flatnonzero(source == i)
        if len(rows) < 2:
            tr.append(rows)
            continue
        t, v = split_indices(len(rows), validation, seed)
        tr.append(rows[t])
        va.append(rows[v])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def split_indices(n: int, validation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) index split; validation holds round(validation * n) >= 1 rows."""
    perm = np.random.default_rng([seed, 0x5A11]).permutation(n)
    n_val = min(max(1, round(validation * n)), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def kfold_indices(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k seeded (train, validation) splits; every row is validation in exactly one fold."""
    if not 2 <= k <= n:
        raise ConfigError(f"kfold = {k} needs 2 <= k <= n = {n}")
    perm = np.random.default_rng([seed, 0x5A11]).permutation(n)
    folds = np.array_split(perm, k)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1:])), np.sort(folds[i])) for i in range(k)]


def bootstrap_indices(idx: np.ndarray, seed: int, member: int) -> np.ndarray:
    """A bootstrap resample (with replacement, same size) of `idx`, seeded by (seed, member)."""
    rng = np.random.default_rng([seed, 0xB007, member])
    return idx[rng.integers(0, len(idx), size=len(idx))]
