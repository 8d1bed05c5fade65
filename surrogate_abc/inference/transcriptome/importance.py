"""Adaptive multiple importance sampling (AMIS) of one posterior, as pure functions over arrays.

A gene's posterior on the sampling scale z (log10 for log-uniform parameters) is reached by importance
sampling: the shared prior draws first, then a sequence of proposals (mixtures of multivariate Student-t kernels), each fitted to
the weighted samples so far. Every sample is weighted against the *mixture* of all proposals it could have
come from (the deterministic-mixture or balance-heuristic weights of Cornuet et al. 2012, "Adaptive
multiple importance sampling"), so early, poorly placed proposals never give a sample an extreme weight.
Where the weights are too uneven to fit (the first proposals of a sharp posterior), the likelihood is
tempered (weights L^tau) just enough that the fit rests on `fit_ess` samples: the proposal is then wider than
the posterior and the next fit narrower, as in an SMC tempering schedule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

DF = 5.0  # Student-t degrees of freedom of the proposals: heavier tails than a Gaussian, finite variance


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(a))) along axis, stable (rows of -inf give -inf); scipy's without its checks (a hot path)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def ess(log_w: np.ndarray) -> float:
    """Kish effective sample size of log-weights (-inf = weight 0); 0 when every weight is 0."""
    lw = np.asarray(log_w, float)
    if lw.size == 0 or not np.isfinite(lw).any():
        return 0.0
    w = np.exp(lw - lw.max())
    return float(w.sum() ** 2 / (w * w).sum())


def normalised(log_w: np.ndarray) -> np.ndarray:
    """Weights summing to 1 from log-weights."""
    lw = np.asarray(log_w, float)
    w = np.exp(lw - lw.max())
    return w / w.sum()


def tempered_log_weights(loglik: np.ndarray, log_base: np.ndarray, fit_ess: float) -> tuple[np.ndarray, float]:
    """(log-weights tau * loglik + log_base, tau): tau = 1 when those weights have ESS >= fit_ess, else the
    largest tau in (0, 1) whose ESS is fit_ess (bisection on log tau; ESS falls as tau grows)."""
    full = loglik + log_base
    if ess(full) >= fit_ess:
        return full, 1.0
    lo, hi = -12.0, 0.0  # log10 tau
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if ess(10.0 ** mid * loglik + log_base) >= fit_ess:
            lo = mid
        else:
            hi = mid
    tau = 10.0 ** lo
    return tau * loglik + log_base, tau


def weighted_moments(z: np.ndarray, w: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean (d,) and covariance (d, d) of samples z (n, d), the covariance's diagonal at least
    floor**2 (d,) so a proposal never collapses onto one sample."""
    mean = w @ z
    dz = z - mean
    cov = (dz * w[:, None]).T @ dz
    cov = 0.5 * (cov + cov.T) + np.diag(floor ** 2)
    return mean, cov


@dataclass
class TMixture:
    """An equal-weight mixture of multivariate Student-t kernels (DF degrees of freedom) at `means` (M, d), all
    with the scale matrix chol @ chol.T: a kernel density estimate of the weighted samples, which follows a
    posterior's curved ridges, prior bounds and modes where a single Gaussian would not."""

    means: np.ndarray
    chol: np.ndarray

    @classmethod
    def fit(cls, z: np.ndarray, w: np.ndarray, floor: np.ndarray, kernels: int,
            rng: np.random.Generator) -> "TMixture":
        """Kernels at `kernels` systematic resamples of z (weights w), scale matrix h^2 times the weighted
        covariance (Silverman's factor h for that many kernels; its diagonal at least floor**2)."""
        d = z.shape[1]
        _, cov = weighted_moments(z, w, floor)
        m = min(int(kernels), max(1, int(np.count_nonzero(w > 1e-12))))
        h2 = (4.0 / (m * (d + 2))) ** (2.0 / (d + 4)) if m > 1 else 1.0
        means = z[systematic_resample(w, m, rng)]
        return cls(means, _cholesky(h2 * cov))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = self.means.shape[1]
        k = rng.integers(len(self.means), size=n)
        g = rng.standard_normal((n, d))
        u = rng.chisquare(DF, size=n) / DF
        return self.means[k] + (g @ self.chol.T) / np.sqrt(u)[:, None]

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, float)
        d = self.means.shape[1]
        inv = np.linalg.inv(self.chol)
        a = z @ inv.T                                         # (n, d) whitened points
        b = self.means @ inv.T                                # (M, d) whitened kernel centres
        maha = np.maximum((a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :], 0.0)
        logdet = float(np.sum(np.log(np.diag(self.chol))))
        const = (special.gammaln((DF + d) / 2) - special.gammaln(DF / 2) - 0.5 * d * math.log(DF * math.pi) - logdet)
        kern = const - 0.5 * (DF + d) * np.log1p(maha / DF)
        return logsumexp(kern, axis=1) - math.log(len(self.means))


def _cholesky(cov: np.ndarray) -> np.ndarray:
    d = len(cov)
    for jitter in (0.0, 1e-12, 1e-10, 1e-8, 1e-6):
        try:
            return np.linalg.cholesky(cov + jitter * np.trace(cov) / d * np.eye(d))
        except np.linalg.LinAlgError:
            continue
    return np.diag(np.sqrt(np.maximum(np.diag(cov), 1e-300)))


@dataclass
class Box:
    """The prior on the sampling scale: uniform on [low, high] per coordinate."""

    low: np.ndarray
    high: np.ndarray

    @property
    def log_density(self) -> float:
        return -float(np.sum(np.log(self.high - self.low)))

    def inside(self, z: np.ndarray) -> np.ndarray:
        return np.all((z >= self.low) & (z <= self.high), axis=1)

    def uniform(self, n: int, seed: int) -> np.ndarray:
        """n scrambled-Sobol points in the box (a power of two is best)."""
        from scipy.stats import qmc

        u = qmc.Sobol(len(self.low), scramble=True, seed=seed).random(n)
        return self.low + u * (self.high - self.low)


@dataclass
class AMISState:
    """One posterior's samples so far: z (n, d), log-likelihoods, the log-density of each sample under each
    proposal (n, J; column 0 the prior) and how many draws each proposal made (those outside the box included)."""

    box: Box
    z: np.ndarray
    loglik: np.ndarray
    log_q: np.ndarray
    draws: list[int]
    proposals: list[TMixture] = field(default_factory=list)
    last_tau: float = 0.0
    _log_mix: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_prior(cls, box: Box, z: np.ndarray, loglik: np.ndarray, n_prior: int) -> "AMISState":
        """Start from n_prior prior draws of which (z, loglik) are kept (those with non-negligible weight)."""
        z = np.asarray(z, float)
        return cls(box, z, np.asarray(loglik, float), np.full((len(z), 1), box.log_density), [int(n_prior)])

    def log_mixture(self) -> np.ndarray:
        """log of the deterministic mixture density sum_j (draws_j / total) q_j at each sample (cached until add)."""
        if self._log_mix is None or len(self._log_mix) != len(self.z):
            n = np.asarray(self.draws, float)
            self._log_mix = logsumexp(self.log_q + np.log(n / n.sum())[None, :], axis=1)
        return self._log_mix

    def log_weights(self) -> np.ndarray:
        """Posterior importance log-weights (up to a constant): loglik + log prior - log mixture."""
        return self.loglik + self.box.log_density - self.log_mixture()

    def ess(self) -> float:
        return ess(self.log_weights())

    def next_proposal(self, fit_ess: float, floor: np.ndarray, kernels: int, rng: np.random.Generator) -> TMixture:
        """A t mixture fitted to the (tempered where needed) weighted samples."""
        log_base = self.box.log_density - self.log_mixture()
        lw, self.last_tau = tempered_log_weights(self.loglik, log_base, fit_ess)
        return TMixture.fit(self.z, normalised(lw), floor, kernels, rng)

    def add(self, proposal: TMixture, n_drawn: int, z: np.ndarray, loglik: np.ndarray) -> None:
        """Add a proposal's in-box samples (it drew n_drawn, the others fell outside the box: weight 0)."""
        old = proposal.logpdf(self.z) if len(self.z) else np.zeros(0)
        new_q = np.column_stack([np.full(len(z), self.box.log_density)]
                                + [p.logpdf(z) for p in self.proposals] + [proposal.logpdf(z)]) if len(z) else \
            np.zeros((0, len(self.draws) + 1))
        self.log_q = np.vstack([np.column_stack([self.log_q, old]), new_q])
        self.z = np.vstack([self.z, z])
        self.loglik = np.concatenate([self.loglik, loglik])
        self.draws.append(int(n_drawn))
        self.proposals.append(proposal)
        self._log_mix = None

    def evaluations(self) -> int:
        return int(sum(self.draws[1:]))


def weighted_quantiles(x: np.ndarray, w: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles q of samples x with weights w (summing to 1): the inverse of the weighted empirical CDF with
    each sample's mass centred on it (linear interpolation between midpoints)."""
    order = np.argsort(x)
    xs, ws = x[order], w[order]
    cdf = np.cumsum(ws) - 0.5 * ws
    return np.interp(q, cdf, xs)


def systematic_resample(w: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices drawn by systematic resampling of weights w (summing to 1): low variance, each sample
    appears floor(n w) or ceil(n w) times."""
    positions = (rng.random() + np.arange(n)) / n
    idx = np.searchsorted(np.cumsum(w), positions, side="right")
    return np.minimum(idx, len(w) - 1)
