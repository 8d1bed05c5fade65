"""The posterior shift an emulator's likelihood error causes at a calibration dataset, to first order.

With n cells from the exact law p_theta0, the emulator's log-likelihood differs from the exact one by
D(theta) = n sum_c p_theta0(c) [log q_theta(c) - log p_theta(c)] on average over datasets. Near a Gaussian
posterior of covariance S the emulator's posterior is the exact one moved by S grad D (the log-density gains
grad D . (theta - mean)), so parameter k moves by (S grad D)_k / sd_k of its posterior sds. grad D comes from one
forward difference along each principal axis of S, of one posterior sd along it, on the sampling scale (log for a
log-uniform prior): steps of one marginal sd per parameter would leave a ridge-shaped posterior (two parameters
that the data tie together) by many sds, where both laws change by hundreds of nats and the difference is no
longer linear.

A calibration miss that this shift does not explain (SBC ranks leaning one way while the predicted shifts average
near 0) is not the emulator's likelihood at the truth; `rank_implied_shift` turns a mean SBC rank into the shift it
would take. benchmarks/calibration_shift.py runs this over `calibrate`'s output folders.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from scipy import stats

from .datasets import dataset_caps, exact_counts_pmf
from .stats import N_RANK_DRAWS, from_feature, to_feature

TINY = 1e-300  # floor of a probability inside log
LINEAR_STEP_KL = (0.1, 2.5)  # n KL(p_truth || p_step) of a one-sd step where the posterior is the likelihood's
                             # Gaussian: 0.5; outside this range the linear picture does not hold there


class DatasetShift(NamedTuple):
    """dataset_shift's result: shifts {parameter: posterior sds}, and per step n KL(exact at the truth || exact
    one step away), 0.5 for a posterior that is the likelihood's Gaussian (prior-dominated or curved ones differ)."""
    shift: dict[str, float]
    step_kl: np.ndarray

    @property
    def linear(self) -> bool:
        """Whether every step's n KL lies in LINEAR_STEP_KL: the first-order shift means something there."""
        lo, hi = LINEAR_STEP_KL
        return bool(np.all((self.step_kl >= lo) & (self.step_kl <= hi)))


def first_order_shift(p0: np.ndarray, q0: np.ndarray, p_steps: np.ndarray, q_steps: np.ndarray,
                      steps: np.ndarray, cov: np.ndarray, n_cells: int) -> np.ndarray:
    """(d,) shifts in posterior sds: p0, q0 (C,) exact and emulated category probabilities at the truth; p_steps,
    q_steps (d, C) at the truth moved by step i: steps (d, d) one step vector per row, or (d,) steps[j] along
    parameter j alone (signed, on the sampling scale); cov (d, d) the posterior covariance on that scale."""
    p0, q0 = np.asarray(p0, float), np.asarray(q0, float)
    p_steps, q_steps = np.atleast_2d(p_steps).astype(float), np.atleast_2d(q_steps).astype(float)
    steps, cov = np.asarray(steps, float), np.atleast_2d(np.asarray(cov, float))
    steps = np.diag(steps) if steps.ndim == 1 else steps
    d = len(steps)
    if not (p_steps.shape == q_steps.shape == (d, len(p0)) and q0.shape == p0.shape
            and steps.shape == cov.shape == (d, d)):
        raise ValueError(f"shapes do not match: p0 {p0.shape}, q0 {q0.shape}, p_steps {p_steps.shape}, "
                         f"q_steps {q_steps.shape}, steps {steps.shape}, cov {cov.shape}")
    if abs(np.linalg.det(steps)) < 1e-300:
        raise ValueError("the steps must be non-zero and span every parameter")
    held = p0 > 0
    log = lambda x: np.log(np.maximum(x, TINY))  # noqa: E731
    gap = log(q_steps[:, held]) - log(q0[held]) - log(p_steps[:, held]) + log(p0[held])  # (d, C)
    grad = np.linalg.solve(steps, n_cells * (gap @ p0[held]))  # steps @ grad = the differences
    sd = np.sqrt(np.diag(cov))
    return (cov @ grad) / sd


def rank_implied_shift(mean_rank: float, n_draws: int = N_RANK_DRAWS) -> float:
    """The shift (in posterior sds; > 0 upward) of Gaussian posteriors that gives this mean SBC rank of 0..n_draws:
    the truth falls below a draw shifted by s sds with probability Phi(-s / sqrt 2)."""
    frac = min(max(float(mean_rank) / n_draws, 1e-9), 1 - 1e-9)
    return float(-math.sqrt(2.0) * stats.norm.ppf(frac))


def inside_step(f0: np.ndarray, step: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """`step` from f0, or -step where that leaves the box [lo, hi] (the prior on the sampling scale); where both
    leave it (a posterior wider than the prior's room), the one that goes further inside, shortened to end on the
    box's face."""
    def room(v: np.ndarray) -> float:  # the largest t <= 1 with f0 + t v inside the box
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(v > 0, (hi - f0) / v, np.where(v < 0, (lo - f0) / v, np.inf))
        return float(min(1.0, max(float(t.min()), 0.0)))
    up, down = room(step), room(-step)
    return step * up if up >= down else -step * down


def dataset_shift(emulator: Any, protocol: Any, theta: Sequence[float], draws: Mapping[str, np.ndarray],
                  box: Mapping[str, tuple[str, float, float]], n_cells: int) -> DatasetShift:
    """first_order_shift at one dataset: the exact law (calibration.datasets.exact_counts_pmf, binned on the
    emulator's edges) and the emulator's category probabilities (its likelihood's path) at the truth and at one
    step per parameter; `draws` the posterior's (equal-weight) draws per parameter, `box` infer's prior box
    (inference.priors.prior_box). Returns the shifts and each step's n KL (DatasetShift: `linear` says whether
    the posterior looks like the likelihood's Gaussian, where the first-order shift holds)."""
    from ...emulators.exact import bin_integer_pmf

    names = list(protocol.param_names)
    kinds = [box[k][0] for k in names]
    x = np.stack([to_feature(kind, np.asarray(draws[k], float).ravel()) for k, kind in zip(names, kinds)], axis=1)
    cov = np.atleast_2d(np.cov(x.T))
    sd = np.sqrt(np.diag(cov))
    if not np.all(sd > 0):
        raise ValueError("the posterior draws do not vary in every parameter")
    edges = tuple(np.asarray(e, float) for e in emulator.edges)
    caps = dataset_caps(protocol, edges)
    categories = np.arange(int(np.prod([len(e) - 1 for e in edges])) + 1)

    def laws(th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        law = exact_counts_pmf(protocol, th, caps)
        binned, over = bin_integer_pmf(law.pmf, edges)
        q = emulator.category_probs(th[None, :], categories, allow_extrapolation=True)[0]
        return np.append(binned.ravel(), over), np.asarray(q, float)

    f0 = np.array([float(to_feature(kind, t)) for kind, t in zip(kinds, theta)])
    lo = np.array([float(to_feature(kind, box[k][1])) for k, kind in zip(names, kinds)])
    hi = np.array([float(to_feature(kind, box[k][2])) for k, kind in zip(names, kinds)])
    p0, q0 = laws(np.asarray(theta, float))
    p_steps: list[np.ndarray] = []
    q_steps: list[np.ndarray] = []
    steps: list[np.ndarray] = []
    var, axes = np.linalg.eigh(cov)
    for lam, axis in zip(var, axes.T):  # one posterior sd along each principal axis
        step = inside_step(f0, math.sqrt(max(float(lam), 0.0)) * axis, lo, hi)
        th = np.array([from_feature(kind, f) for kind, f in zip(kinds, f0 + step)])
        p, q = laws(th)
        p_steps.append(p)
        q_steps.append(q)
        steps.append(step)
    shift = first_order_shift(p0, q0, np.array(p_steps), np.array(q_steps), np.array(steps), cov, n_cells)
    held = p0 > 0
    step_kl = n_cells * (np.log(p0[held]) - np.log(np.maximum(np.array(p_steps)[:, held], TINY))) @ p0[held]
    return DatasetShift(dict(zip(names, map(float, shift))), step_kl)
