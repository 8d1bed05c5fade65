"""Distances and losses between distributions, each formula once, with names that say which.

Histograms are rows of probabilities (bin masses, overflow last). Numpy functions return floats or
per-row arrays; the torch ones (losses, training metrics) take (n, C) tensors.

  hellinger_distance   H(p, q) = sqrt(1/2 sum (sqrt p - sqrt q)^2)            in [0, 1]
  squared_hellinger    H^2(p, q) = 1/2 sum (sqrt p - sqrt q)^2                 in [0, 1]
  thesis_h2            the thesis' "H2" = 2 sum (sqrt y - sqrt x)^2 = 4 H^2    in [0, 4] (loss `hellinger`)
  total_variation      TV(p, q) = 1/2 sum |p - q|                              in [0, 1]
  kl_divergence        KL(p || q) = sum p (log p - log q)
  exp_divergence       ED(p, q) = sum p (log p - log q)^2  (the thesis' max-divergence partner of KL)
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .vector_math import log_

KL_FLOOR = 1e-12  # floor on q in the numpy KL of observed vs simulated histograms
LOG_FLOOR = 1e-300  # floor on a probability before its log in every multinomial log-likelihood


# ----------------------------------------------------------------------------------------- numpy
def log_probs(p) -> np.ndarray:
    """log of probabilities floored at LOG_FLOOR: every multinomial log-likelihood in inference takes its logs here.
    In place on a new array (vector_math.log_: torch's vectorised float64 log where torch is loaded)."""
    return log_(np.maximum(np.asarray(p, float), LOG_FLOOR))


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def squared_hellinger(p, q):
    """1/2 sum (sqrt p - sqrt q)^2 = 1 - sum sqrt(p q) (for normalised p, q) over the last axis, clipped at 0.
    numpy arrays give floats or arrays; torch tensors give tensors (differentiable, on their device)."""
    if _is_torch(p) or _is_torch(q):
        bc = (p.clamp_min(0) * q.clamp_min(0)).sqrt().sum(-1)
        return (1.0 - bc).clamp_min(0.0)
    p, q = np.asarray(p, float), np.asarray(q, float)
    h2 = 0.5 * np.sum((np.sqrt(np.clip(p, 0, None)) - np.sqrt(np.clip(q, 0, None))) ** 2, axis=-1)
    return np.maximum(h2, 0.0) if np.ndim(h2) else float(max(h2, 0.0))


def hellinger_distance(p, q):
    """sqrt(squared_hellinger) over the last axis, in [0, 1] (numpy or torch, as squared_hellinger)."""
    h2 = squared_hellinger(p, q)
    if _is_torch(h2):
        return h2.sqrt()
    return np.sqrt(h2) if np.ndim(h2) else float(np.sqrt(h2))


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """1/2 sum |p - q| over the last axis."""
    tv = 0.5 * np.abs(np.asarray(p, float) - np.asarray(q, float)).sum(axis=-1)
    return tv if np.ndim(tv) else float(tv)


def euclidean(p: np.ndarray, q: np.ndarray) -> float:
    """L2 distance between two histograms."""
    return float(np.sqrt(np.sum((np.asarray(p, float) - np.asarray(q, float)) ** 2)))


def kl_divergence(p: np.ndarray, q: np.ndarray, floor: float = KL_FLOOR) -> float:
    """KL(p || q) of two histograms; p_t = 0 contributes 0, q is floored at `floor`."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(np.maximum(q[mask], floor)))))


def sampling_tv_quantile(pmf: np.ndarray, n: int, rng: np.random.Generator, reps: int = 300,
                         q: float = 0.999) -> float:
    """The q-quantile of TV(histogram of n independent draws, law) for a law given as probabilities on 0..K-1
    (the rest, 1 - sum, is one more category): what sampling error alone gives, to judge a simulator by."""
    p = np.append(np.asarray(pmf, float).ravel(), max(1.0 - float(np.sum(pmf)), 0.0))
    p /= p.sum()
    return float(np.quantile([total_variation(rng.multinomial(n, p) / n, p) for _ in range(reps)], q))


# --distance NAME -> metric(observed, simulated) of two normalised histograms (flattened, overflow last): the
# distances of `infer --mode simulator`
HISTOGRAM_DISTANCES: dict[str, Callable[[np.ndarray, np.ndarray], float | np.ndarray]] = {
    "hellinger": hellinger_distance, "tv": total_variation, "l2": euclidean, "kl": kl_divergence,
}
