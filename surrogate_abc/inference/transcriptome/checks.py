"""Which genes the model does not fit: a posterior-predictive check and a prior-bound flag per gene.

* Posterior-predictive check: at S posterior draws theta_s, the deviance of the observed histogram h,
  D(h, p) = 2 sum_c h_c log(h_c / (N p_c)) (the G statistic against the model's pmf p = p(theta_s)), is
  compared with the deviance of a histogram of N cells drawn from p itself. The p-value is
  (1 + #{s: D(rep_s, p_s) >= D(h, p_s)}) / (S + 1); a gene is flagged `ppc` when it is <= PPC_ALPHA (none of
  the replicates, or one of 100, fits as badly as the data): zero inflation, cell-type mixtures, doublets
  and under-dispersed counts (Fano < 1, which no telegraph gene has) fail it.
* Prior bound: a parameter (sampling scale) whose posterior is informative (90% interval at most
  BOUND_INFORMATIVE of the prior range) and whose density at a bound (weighted histogram, bins of half a
  posterior sd) is at least BOUND_DENSITY of its peak piles against that bound: its mode is at the bound (up
  to the histogram's noise), so the data want a value outside the prior or cannot tell it from one (e.g. k0
  at its upper bound and k1 at its lower: the gene looks constitutive). A posterior whose mode lies inside is
  not flagged, however close the bound, nor is a wide ridge that the bound cuts (k1 and v0 of a bursty gene,
  of which only v0 / k1 is identified). Flagged `bound:<name>_low` or `bound:<name>_high`.
"""
from __future__ import annotations

import numpy as np

from .importance import weighted_quantiles

PPC_ALPHA = 0.01
BOUND_INFORMATIVE = 0.2
BOUND_DENSITY = 0.9


def deviance(counts: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    """G statistic 2 sum_c h_c log(h_c / (N p_c)) of count rows (S, C) against log pmf rows (S, C)."""
    h = np.asarray(counts, float)
    n = h.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(h > 0, h * (np.log(np.where(h > 0, h, 1.0)) - np.log(n) - log_p), 0.0)
    return 2.0 * terms.sum(axis=1)


def ppc_pvalue(hist: np.ndarray, log_p: np.ndarray, rng: np.random.Generator,
               node_cells: np.ndarray | None = None) -> tuple[float, float]:
    """(observed deviance at the posterior draws' median, p-value) of one gene's histogram (C,) against the
    log pmfs (S, C) at S posterior draws (see the module docstring). With per-cell capture, log pmfs (S, K, C) at
    K efficiency nodes holding `node_cells` (K,) cells: the predictive pmf is their mixture, a replicate draws
    each node's cells from its own pmf."""
    hist = np.asarray(hist, float)
    n = int(round(hist.sum()))
    p = np.exp(np.asarray(log_p, float))
    if p.ndim == 2:
        p = p[:, None, :]
    if node_cells is None:
        node_cells = np.ones(p.shape[1])
    p = p / p.sum(axis=2, keepdims=True)
    counts = _allocate(n, np.asarray(node_cells, float))
    mix = np.einsum("k,skc->sc", counts / max(n, 1), p)
    log_mix = np.log(np.maximum(mix, 1e-300))
    reps = np.stack([sum((rng.multinomial(int(m), row) for m, row in zip(counts, draw) if m > 0),
                         np.zeros(p.shape[2], np.int64)) for draw in p])
    d_obs = deviance(np.broadcast_to(hist, log_mix.shape), log_mix)
    d_rep = deviance(reps, log_mix)
    pval = (1.0 + np.count_nonzero(d_rep >= d_obs)) / (len(d_obs) + 1.0)
    return float(np.median(d_obs)), float(pval)


def _allocate(n: int, weights: np.ndarray) -> np.ndarray:
    """n cells split over nodes in proportion to weights (clipped at 0), largest remainders rounded up."""
    w = np.clip(weights, 0.0, None)
    share = n * w / w.sum()
    out = np.floor(share).astype(np.int64)
    out[np.argsort(share - out)[::-1][: n - int(out.sum())]] += 1
    return out


def bound_flags(z: np.ndarray, w: np.ndarray, low: np.ndarray, high: np.ndarray,
                names: tuple[str, ...]) -> list[str]:
    """`<name>_low` / `<name>_high` for each parameter whose posterior (samples z (n, d), weights w summing to 1)
    piles against that bound of the prior box [low, high] (see the module docstring)."""
    out = []
    for j, name in enumerate(names):
        x = z[:, j]
        q05, q95 = weighted_quantiles(x, w, np.array([0.05, 0.95]))
        width = high[j] - low[j]
        if q95 - q05 > BOUND_INFORMATIVE * width:
            continue
        sd = float(np.sqrt(max(w @ (x - w @ x) ** 2, 0.0)))
        n_bins = int(np.clip(np.ceil(width / max(sd / 2, 1e-3 * width)), 2, 4000))
        dens, _ = np.histogram(x, bins=n_bins, range=(low[j], high[j]), weights=w)
        for end, side in ((0, "low"), (-1, "high")):
            if dens[end] >= BOUND_DENSITY * dens.max():
                out.append(f"{name}_{side}")
    return out
