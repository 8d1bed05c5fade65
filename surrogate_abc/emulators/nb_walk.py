"""Negative-binomial mixtures' bin masses by one walk along the integers (numba, float64, on the CPU).

A likelihood needs, per parameter set, the mass of a few bins under each row of a table (each mRNA bin of a
joint histogram has its own mixture of negative binomials NB(mean mu, shape r) for the protein). Along the
integers the pmf obeys

    NB(0) = (1 - q)^r,   NB(j) = NB(j - 1) q (r + j - 1) / j,   q = mu / (mu + r),

so one pass from 0 to the row's last bin asked gives every bin's mass with one multiply-add per integer and
component (p <- p (q + q (r - 1) / j), the reciprocals 1 / j from a table): no lgamma, and one exp per
component and row instead of several transcendental functions per category and component. The values are
kept scaled (a running log-scale per set and component, checked every 32 integers and renormalised when they
pass 1e100), so a pmf that starts below the float range (NB(0) = e^-3000) and rises to its mode loses
nothing, and float64 throughout resolves masses down to ~1e-300 (a float32 pass floors them near 1e-38).
Parameter sets run in the innermost loop (contiguous: the compiler vectorises over them), on one thread: the
kernel is serial, so forked processes (inference's chains) never meet an OpenMP pool their parent started
(numba's omp threading layer deadlocks there), and a second thread gained nothing inside a chain.

Cost per set: (components) x (sum over rows of the last integer asked), ~32,000 multiply-adds for the joint
example's 31 rows and 669 categories.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

_RESCALE = 1e100
_LOW = -700.0  # log-scales below: exp is subnormal (or 0) and loses digits


@njit(cache=True, inline="always")
def _step(p, acc, a, b, t, add):  # pragma: no cover - compiled
    """p <- p (a + b t), the pmf ratio NB(j) / NB(j - 1) = q + q (r - 1) / j at t = 1 / j, for every set of
    the block (the loop the compiler vectorises); acc += p when `add`."""
    if add:
        for i in range(p.shape[0]):
            p[i] *= a[i] + b[i] * t
            acc[i] += p[i]
    else:
        for i in range(p.shape[0]):
            p[i] *= a[i] + b[i] * t


@njit(cache=True, inline="always")
def _rescale(p, acc, log_scale, scale):  # pragma: no cover - compiled
    """Fold the scaled values that passed _RESCALE into their log-scale (p and the bin's running sum acc);
    returns how many sets' scales rose out of the low range (log-scale below _LOW) doing so."""
    risen = 0
    for i in range(p.shape[0]):
        if p[i] > _RESCALE:
            f = p[i]
            low = log_scale[i] < _LOW
            p[i] = 1.0
            acc[i] /= f
            log_scale[i] += math.log(f)
            scale[i] = math.exp(log_scale[i])
            if low and log_scale[i] >= _LOW:
                risen += 1
    return risen


@njit(cache=True)
def _walk(mu, r, log_start, start, row_weight, row_start, lo, hi, dest, floor, inv):  # pragma: no cover - compiled
    """out (C, n): the mass of integers lo[c]..hi[c] under the mixture of row u, times row_weight (n, U), for the
    categories row_start[u]..row_start[u + 1] - 1 (sorted by lo, not overlapping), written to row dest[c] (the
    category's place in the caller's order); a mixture's mass below `floor` is raised to it (before row_weight).
    The mixture's components, each (n, U, K): mean mu and shape r, log_start = log w + r log(1 - q) (log of
    w NB(0), q = mu / (mu + r)) and start = exp(log_start) (computed vectorised by the caller: one exp and log1p
    per set, row and component). Each row and component walks along the integers for all parameter sets at once
    (the sets in the innermost loop, their constants gathered into contiguous vectors first). The scaled values
    are checked every 32 integers: 32 steps multiply them by at most mu^32 / 32! (< 1e93 for means up to 1e4),
    far from overflowing after a rescale at 1e100. Where a set's scale is below e^_LOW (a subnormal number, or 0)
    its masses are exp(log(sum) + log-scale) instead of sum * scale."""
    n, U, K = mu.shape
    out = np.zeros((lo.shape[0], n))
    p = np.empty(n)
    acc = np.zeros(n)
    scale = np.empty(n)  # exp(log_scale): p * scale is w NB(j)
    log_scale = np.empty(n)
    a = np.empty(n)  # q
    b = np.empty(n)  # q (r - 1)
    for u in range(U):
        c0, c1 = row_start[u], row_start[u + 1]
        if c1 == c0:
            continue
        for k in range(K):
            n_low = 0  # sets whose scale is below e^_LOW
            for i in range(n):
                q = mu[i, u, k] / (mu[i, u, k] + r[i, u, k])
                a[i] = q
                b[i] = q * (r[i, u, k] - 1.0)
                log_scale[i] = log_start[i, u, k]
                scale[i] = start[i, u, k]
                p[i] = 1.0
                if log_scale[i] < _LOW:
                    n_low += 1
            j = 0
            for c in range(c0, c1):
                while j < lo[c]:
                    j += 1
                    _step(p, acc, a, b, inv[j], False)
                    if j & 31 == 0:
                        n_low -= _rescale(p, acc, log_scale, scale)
                for i in range(n):
                    acc[i] = p[i]
                while j < hi[c]:
                    j += 1
                    _step(p, acc, a, b, inv[j], True)
                    if j & 31 == 0:
                        n_low -= _rescale(p, acc, log_scale, scale)
                row = out[dest[c]]
                if n_low == 0:
                    for i in range(n):
                        row[i] += acc[i] * scale[i]
                else:
                    for i in range(n):
                        if log_scale[i] >= _LOW:
                            row[i] += acc[i] * scale[i]
                        elif acc[i] > 0.0:
                            row[i] += math.exp(math.log(acc[i]) + log_scale[i])
        for c in range(c0, c1):  # the mixture's mass: floored, then weighted
            row = out[dest[c]]
            for i in range(n):
                row[i] = max(row[i], floor) * row_weight[i, u]
    return out


def bin_ranges(index: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) integer of each of n_bins bins, -1 where a bin holds none, on an axis whose integers 0..S-1
    fall into the bins `index` (S,) (each bin a contiguous run of integers; n_bins means outside)."""
    index = np.asarray(index, dtype=np.int64)
    first, last = np.full(n_bins, -1, dtype=np.int64), np.full(n_bins, -1, dtype=np.int64)
    held, at, count = np.unique(index, return_index=True, return_counts=True)
    keep = held < n_bins
    first[held[keep]] = at[keep]
    last[held[keep]] = at[keep] + count[keep] - 1
    return first, last


def _starts(log_w: np.ndarray, mu: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The walk's inputs, float64 (n, U, K): mu, r, log(w NB(0)) = log w - r log1p(mu / r) and its exp, by torch's
    vectorised log1p and exp (a scalar exp and log1p per set, row and component inside the kernel had cost a
    third of a joint likelihood's walk)."""
    w, m, s = (torch.from_numpy(np.asarray(v)).to(torch.float64) for v in (log_w, mu, r))
    log_start = w - s * torch.log1p(m / s)
    return m.numpy(), s.numpy(), log_start.numpy(), torch.exp(log_start).numpy()


def nb_mixture_walk(log_w: np.ndarray, mu: np.ndarray, r: np.ndarray, rows: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray, floor: float = 0.0, row_weight: np.ndarray | None = None) -> np.ndarray:
    """float64 (n, C) masses of categories c = integers lo[c]..hi[c] (inclusive) under the mixture of row
    rows[c]: weights exp(log_w), means mu and shapes r, each (n, U, K); times row_weight[:, rows[c]] when given
    (n, U) (a joint histogram's first factor). Bins of one row must not overlap. Mixture masses below `floor`
    are raised to it (before row_weight)."""
    rows, lo, hi = (np.asarray(v, dtype=np.int64) for v in (rows, lo, hi))
    n, U, _ = mu.shape
    if lo.size and (int(lo.min()) < 0 or np.any(hi < lo) or int(rows.min()) < 0 or int(rows.max()) >= U):
        raise ValueError(f"nb_mixture_walk: categories need 0 <= lo <= hi and rows in 0..{U - 1}")
    order = np.lexsort((lo, rows))
    row_start = np.searchsorted(rows[order], np.arange(U + 1)).astype(np.int64)
    top = int(hi.max()) if hi.size else 0
    inv = np.reciprocal(np.arange(top + 1, dtype=np.float64), where=np.arange(top + 1) > 0, out=np.zeros(top + 1))
    weight = np.ones((n, U)) if row_weight is None else np.ascontiguousarray(row_weight, dtype=np.float64)
    m, s, log_start, start = _starts(log_w, mu, r)
    walked = _walk(m, s, log_start, start, weight, row_start, np.ascontiguousarray(lo[order]),
                   np.ascontiguousarray(hi[order]), order.astype(np.int64), float(floor), inv)
    return walked.T
