"""Statistics of a calibration study (pure functions over arrays): weighted quantiles, central intervals and
highest-density intervals, the feature scale of a prior (log10 for log-uniform), contraction, binomial bands for coverage, SBC ranks,
their band and their mean's shift, the posterior predictive's Hellinger distance, one parameter's metrics and the coverage table."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats

from ...metrics import hellinger_distance
from ..settings import HDI_PROB  # the interval infer's summary reports

PROBS = (0.5, 0.9)  # central credible intervals whose coverage is tabulated
N_RANK_DRAWS = 99  # posterior draws per SBC rank: ranks 0..99
RANK_BINS = 10  # bars of each rank histogram


def _sorted_sample(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(values sorted, their weights normalised) of a (weighted) sample, zero weights dropped; ValueError for an
    empty sample, mismatched shapes or weights that are negative, not finite or all 0."""
    x = np.asarray(x, float).ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, float).ravel()
    if x.size == 0 or x.shape != w.shape:
        raise ValueError(f"need a non-empty sample with one weight per value, got {x.shape} and {w.shape}")
    if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("weights must be finite, >= 0 and not all 0")
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    keep = ws > 0
    return xs[keep], ws[keep] / ws[keep].sum()


def weighted_quantile(x: np.ndarray, q: Sequence[float] | float, weights: np.ndarray | None = None) -> np.ndarray:
    """Quantiles of a (weighted) sample: the inverse of the weighted empirical CDF with midpoint interpolation
    (for equal weights this is numpy's 'hazen' quantile)."""
    xs, ws = _sorted_sample(x, weights)
    cdf = np.cumsum(ws) - 0.5 * ws
    return np.interp(np.asarray(q, float), cdf, xs)


def central_interval(x: np.ndarray, prob: float, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Central credible interval of probability `prob`: the (1-prob)/2 and (1+prob)/2 quantiles."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    lo, hi = weighted_quantile(x, [(1 - prob) / 2, (1 + prob) / 2], weights)
    return float(lo), float(hi)


def weighted_hdi(x: np.ndarray, prob: float, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Highest-density interval of a (weighted) sample: the shortest [x_i, x_j] between two sample values whose
    weight exceeds `prob` (the first such one on ties). With equal weights this is arviz.hdi's rule (floor(prob n)
    + 1 of n sorted draws), so it equals arviz.hdi of the same draws; zero weights are ignored."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    xs, ws = _sorted_sample(x, weights)
    cum = np.concatenate([[0.0], np.cumsum(ws)])
    cum[-1] = 1.0
    # the first j whose weight of xs[i..j] exceeds prob (a relative slack keeps sums of equal weights exact)
    end = np.searchsorted(cum, cum[:-1] + prob * (1 + 1e-12), side="right") - 1
    ok = end < xs.size
    starts = np.flatnonzero(ok)
    if starts.size == 0:  # only for prob within rounding of 1: the whole sample
        return float(xs[0]), float(xs[-1])
    best = starts[np.argmin(xs[end[ok]] - xs[starts])]
    return float(xs[best]), float(xs[end[best]])


def weighted_var(x: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Variance of a (weighted) sample (normalised weights, no bias correction)."""
    x = np.asarray(x, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    m = np.average(x, weights=w)
    return float(np.average((x - m) ** 2, weights=w))


def to_feature(kind: str, x: np.ndarray | float) -> np.ndarray:
    """The emulator's feature scale: log10 for log-uniform priors, identity for uniform ones."""
    return np.log10(x) if kind == "loguniform" else np.asarray(x, float)


def from_feature(kind: str, x: float) -> float:
    """The inverse of to_feature for one value."""
    return float(10.0 ** x) if kind == "loguniform" else float(x)


def prior_variance(kind: str, low: float, high: float) -> float:
    """Variance of a uniform / log-uniform prior on its feature scale (log10 for log-uniform)."""
    a, b = (math.log10(low), math.log10(high)) if kind == "loguniform" else (low, high)
    return (b - a) ** 2 / 12.0


def contraction(post_var: float, prior_var: float) -> float:
    """Posterior contraction 1 - var_post / var_prior (1: the data pin the parameter; 0: nothing learnt)."""
    return 1.0 - float(post_var) / float(prior_var)


def binomial_band(n: int, p: float, level: float = 0.95) -> tuple[float, float]:
    """Central `level` range of the coverage fraction k/n when k ~ Binomial(n, p) (a calibrated method)."""
    lo, hi = stats.binom.interval(level, int(n), float(p))
    return float(lo) / n, float(hi) / n


def sbc_rank(draws: np.ndarray, truth: float, rng: np.random.Generator, n_draws: int = N_RANK_DRAWS) -> int:
    """Rank of the truth among n_draws equal-weight posterior draws (0..n_draws): the number of draws below it,
    ties broken at random. Fewer draws than n_draws are drawn with replacement."""
    x = np.asarray(draws, float).ravel()
    if x.size == 0:
        raise ValueError("need at least one posterior draw")
    pick = x[rng.choice(x.size, n_draws, replace=x.size < n_draws)]
    below, ties = int((pick < truth).sum()), int((pick == truth).sum())
    return below + (int(rng.integers(0, ties + 1)) if ties else 0)


def rank_band(n: int, bins: int = RANK_BINS, level: float = 0.95) -> tuple[float, float]:
    """Central `level` range of the count in one of `bins` equal bars of a uniform rank histogram of n ranks."""
    lo, hi = stats.binom.interval(level, int(n), 1.0 / bins)
    return float(lo), float(hi)


def rank_shift(ranks: Sequence[float], n_draws: int = N_RANK_DRAWS) -> tuple[float, float]:
    """(mean SBC rank, its z-score against a calibrated posterior) of ranks 0..n_draws. A calibrated posterior's
    ranks are uniform (mean n_draws / 2, standard deviation sqrt(((n_draws + 1)^2 - 1) / 12) each), so |z| > 2
    says its draws sit on one side of the truths more often than chance: z < 0 above them (a posterior too high),
    z > 0 below them; a bias that the coverage of intervals can hide when they are wide enough."""
    r = np.asarray(ranks, float)
    if r.size == 0:
        raise ValueError("need at least one rank")
    sd = math.sqrt(((n_draws + 1) ** 2 - 1) / 12.0 / r.size)
    return float(r.mean()), float((r.mean() - n_draws / 2.0) / sd)


def wasserstein_normalised(x: np.ndarray, wx: np.ndarray | None, y: np.ndarray, wy: np.ndarray | None,
                           width: float) -> float:
    """1-D Wasserstein distance between two weighted samples divided by `width` (the prior's width)."""
    return float(stats.wasserstein_distance(x, y, wx, wy)) / float(width)


def ppc_hellinger(pred: np.ndarray, pred_overflow: float, exact: np.ndarray, exact_overflow: float) -> float:
    """Hellinger distance between two binned distributions, each with its overflow mass (renormalised)."""
    p = np.clip(np.append(np.asarray(pred, float).ravel(), pred_overflow), 0, None)
    q = np.clip(np.append(np.asarray(exact, float).ravel(), exact_overflow), 0, None)
    return float(hellinger_distance(p / p.sum(), q / q.sum()))


def parameter_metrics(k: str, prior: tuple[str, float, float], truth: float, values: np.ndarray,
                      weights: np.ndarray, draws: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """One parameter's datasets.csv entries: truth, interval bounds and hits (central intervals on any monotone
    scale; the 94% HDI on the prior's sampling scale, log for log-uniform priors, as infer's summary computes
    it), contraction, SBC rank."""
    kind, lo, hi = prior
    x, t = to_feature(kind, values), float(to_feature(kind, truth))
    row: dict[str, Any] = {f"true_{k}": float(truth)}
    for prob in PROBS:
        a, b = central_interval(x, prob, weights)
        pct = int(prob * 100)
        row.update({f"lo{pct}_{k}": from_feature(kind, a), f"hi{pct}_{k}": from_feature(kind, b),
                    f"in{pct}_{k}": int(a <= t <= b)})
    a, b = weighted_hdi(x, HDI_PROB, weights)  # the sampling scale, as infer's summary (output.summarise)
    pct = round(HDI_PROB * 100)
    row.update({f"lo{pct}_{k}": from_feature(kind, a), f"hi{pct}_{k}": from_feature(kind, b),
                f"in{pct}_{k}": int(a <= t <= b)})
    row[f"contraction_{k}"] = contraction(weighted_var(x, weights), prior_variance(kind, lo, hi))
    row[f"rank_{k}"] = sbc_rank(to_feature(kind, np.asarray(draws, float).ravel()), t, rng)
    return row


def hit_rate(rows: Sequence[dict[str, Any]], column: str) -> float | str:
    """Mean of a 0/1 column over rows; "" when a row lacks it (a dataset finished before the column existed)."""
    if not rows or any(r.get(column) in (None, "") for r in rows):
        return ""
    return float(np.mean([int(r[column]) for r in rows]))


def summarise(rows: list[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The calibration table: per parameter coverage of the 50% / 90% central intervals and of the 94% HDI with
    their binomial 95% bands, the mean contraction and the SBC ranks' mean and z-score (`rank_shift`; empty when
    a row lacks its rank); a last row with the posterior predictive's mean and max Hellinger distance."""
    n = len(rows)
    b50, b90, b94 = binomial_band(n, 0.5), binomial_band(n, 0.9), binomial_band(n, HDI_PROB)
    empty = dict.fromkeys(("coverage_50", "band50_lo", "band50_hi", "coverage_90", "band90_lo", "band90_hi",
                           "coverage_94", "band94_lo", "band94_hi", "contraction", "contraction_sd",
                           "rank_mean", "rank_z", "hellinger_mean", "hellinger_max"), "")
    table = []
    for k in names:
        c = np.array([r[f"contraction_{k}"] for r in rows])
        table.append({"parameter": k, "datasets": n, **empty,
                      "coverage_50": float(np.mean([r[f"in50_{k}"] for r in rows])), "band50_lo": b50[0],
                      "band50_hi": b50[1], "coverage_90": float(np.mean([r[f"in90_{k}"] for r in rows])),
                      "band90_lo": b90[0], "band90_hi": b90[1], "coverage_94": hit_rate(rows, f"in94_{k}"),
                      "band94_lo": b94[0], "band94_hi": b94[1], "contraction": float(c.mean()),
                      "contraction_sd": float(c.std(ddof=1)) if n > 1 else 0.0})
        ranks = [float(v) for r in rows if (v := r.get(f"rank_{k}")) is not None and v != ""]
        if ranks and len(ranks) == n:  # a row without its rank (finished before ranks existed): no shift
            table[-1]["rank_mean"], table[-1]["rank_z"] = rank_shift(ranks)
    h = np.array([r["hellinger_ppc"] for r in rows])
    table.append({"parameter": "posterior_predictive", "datasets": n, **empty, "hellinger_mean": float(h.mean()),
                  "hellinger_max": float(h.max())})
    return table
