"""FSP truncation control: the first box from exact moments, the boundary-layer tail estimate, and how the box
grows, is trimmed and fits the `max_states` budget (see `fsp` for the whole method)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import scipy.stats

from ..config import FSPSettings
from ..errors import UserError
from ..networks.reaction import ReactionNetwork

MIN_STATES = 8          # smallest extent of an unbounded dimension
TRIM_FACTOR = 1e-3      # a dimension may be trimmed to where its marginal tail is below TRIM_FACTOR * tol


def initial_box(network: ReactionNetwork, rates: Mapping[str, float], tol: float | None = 1e-8) -> list[int]:
    """Box extents from the exact stationary moments, capped by conservation bounds.

    A free dimension with mean m and variance v gets mean + 10 sd + 20, or, when `tol` is given, at
    least the upper `tol` quantile of the negative binomial with that mean and variance (Poisson when
    v <= m). The protein marginal of the gene model is a mixture of Poissons whose tail is at most
    about this heavy (bursty limit: exactly negative binomial), so most boxes need no growth round;
    the quantile overshoots bimodal cases by ~20%, which only pays off where solves are cheap.
    """
    mean, cov = network.stationary_moments(rates)
    var = np.clip(np.diag(cov), 0.0, None)
    bounds = network.reduced_bounds()
    box = []
    for i, s in enumerate(network.reduced_species):
        m, v = max(float(mean[i]), 0.0), float(var[i])
        n = m + 10.0 * math.sqrt(v) + 20.0
        if tol is not None and m > 0 and np.isfinite(v):
            if v > m * (1 + 1e-9):
                q = scipy.stats.nbinom.isf(tol, m * m / (v - m), m / v)
            else:
                q = scipy.stats.poisson.isf(tol, m)
            if np.isfinite(q):
                n = max(n, q + 1)
        box.append(bounds[s] + 1 if s in bounds else max(MIN_STATES, int(math.ceil(n))))
    return box


def layer_width(n: int) -> int:
    """Width of a dimension's outer boundary layer: the last ceil(n / 8) states (at least 2)."""
    return max(2, -(-n // 8))


def marginals(p_box: np.ndarray) -> list[np.ndarray]:
    """1-D marginals of a distribution on the box (reduced-species axis order)."""
    d = p_box.ndim
    return [p_box.sum(axis=tuple(j for j in range(d) if j != i)) for i in range(d)]


def tail_estimate(margs: Sequence[np.ndarray], free: Sequence[bool]) -> np.ndarray:
    """Per-dimension boundary-layer mass: the marginal probability in the last `layer_width` states.

    This is the estimate of the mass beyond the box. The reflecting truncation piles the flux that
    would leave the box onto the states next to the wall, so for tails that decay geometrically over
    fewer than `layer_width` states the layer holds at least the excluded mass; for heavier tails
    (scale s > width w) it underestimates it by about s / w. Bounded (conserved) dimensions give 0.
    """
    out = np.zeros(len(margs))
    for i, (m, f) in enumerate(zip(margs, free)):
        if f:
            out[i] = m[-layer_width(len(m)):].sum()
    return out


def trimmed_extent(m: np.ndarray, tol: float) -> int:
    """Smallest extent n whose excluded marginal tail (counts >= n) is below TRIM_FACTOR * tol, plus the layer."""
    surv = np.cumsum(m[::-1])[::-1]  # surv[k] = P(x >= k)
    k = int(np.argmax(surv < TRIM_FACTOR * tol)) if (surv < TRIM_FACTOR * tol).any() else len(m)
    return max(MIN_STATES, k + layer_width(k) + 1)


def next_box(box, margs, layer, free, settings: FSPSettings):
    """The next box, or None when no change is needed or possible."""
    grow = [i for i in range(len(box)) if free[i] and layer[i] > settings.tol]
    if not grow:
        return None
    new = list(box)
    for i in range(len(box)):
        if free[i] and i not in grow:
            new[i] = min(box[i], trimmed_extent(margs[i], settings.tol))
    for i in grow:
        new[i] = 2 * box[i]
    if math.prod(new) > settings.max_states:
        # Share what is left among the dimensions that want to grow, keeping at least their old extent.
        fixed_part = math.prod(new[i] for i in range(len(box)) if i not in grow)
        room = settings.max_states / fixed_part
        scale = (room / math.prod(box[i] for i in grow)) ** (1.0 / len(grow))
        for i in grow:
            new[i] = max(box[i], int(box[i] * min(2.0, scale)))
    if new == list(box) or math.prod(new) > settings.max_states:
        return None
    return new


def fit_to_budget(box: list[int], free: Sequence[bool], max_states: int) -> list[int]:
    """Shrink the largest free dimensions until the box has at most max_states states."""
    box = list(box)
    while math.prod(box) > max_states:
        i = max((j for j in range(len(box)) if free[j]), key=lambda j: box[j])
        others = math.prod(box) // box[i]
        box[i] = max(MIN_STATES, min(box[i] - 1, max_states // others))
        if box[i] == MIN_STATES and math.prod(box) > max_states:
            raise UserError(f"[fsp] max_states = {max_states} is too small for this network; raise fsp.max_states")
    return box
