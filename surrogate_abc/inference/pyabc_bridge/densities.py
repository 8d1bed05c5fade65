"""pyabc's per-particle densities and decisions made batch-shaped (the fast path of `infer`), in numpy.

pyabc evaluates the prior and transition densities one particle at a time (`create_prior_pdf`,
`create_transition_pdf`: a scipy multivariate normal per ancestor per particle) and decides each particle
alone. Here:

* `PriorDensity` and `TransitionDensity` are those densities with a `prefill` that computes a whole batch
  (one matrix product of whitened coordinates for the Gaussian mixture) and a per-particle `__call__` that
  answers from the cache, so pyabc can keep asking one particle at a time.
* `DeferredWeights` is a weight function for pyabc's `evaluate_proposal` that records each accepted particle
  and fills in all their weights at once (`resolve`), with pyabc's formula (acceptance weight * prior /
  transition).
* `stochastic_acceptance` is pyabc.StochasticAcceptor's decision for a batch of log-densities at once,
  drawing the same uniforms.

They use pyabc's public types only; where pyabc is used beyond its public API (the private methods the fast
path overrides, its private functions, its database schema, its log text) is compat.py alone.
"""
from __future__ import annotations

import contextlib
import gc
import math
import operator
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np
import pandas as pd
import pyabc
from pyabc.transition import MultivariateNormalTransition

from ...vector_math import exp_

if TYPE_CHECKING:
    from pyabc import RV, Distribution
    from pyabc.population import Particle
    from pyabc.transition import ModelPerturbationKernel, Transition

Parameter = Mapping[str, float]  # a pyabc.Parameter (a dict of parameter values)
Item = Union["Particle", tuple[int, Parameter]]  # a particle, or (model index, Parameter)

_CHUNK = 1 << 15  # at most ~this many (particle, ancestor) pairs per array operation (cache-sized)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a block, restored as it was on exit. A generation allocates
    ~10^5 particles, Parameters and records; the collections they trigger traverse all of them again and again
    (~15% of a chain's wall time on the protein example, measured A/B). They are acyclic, so reference counting
    frees them as before; between blocks the collector runs as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _pairs(items: Iterable[Item]) -> list[tuple[int, Parameter]]:
    """(model, Parameter) pairs from pyabc Particles or from such pairs."""
    out = []
    for x in items:
        if isinstance(x, tuple):
            out.append((int(x[0]), x[1]))
        else:
            out.append((int(x.m), x.parameter))
    return out


class _CachedDensity:
    """A density of (model index, Parameter), cached per Parameter object; subclasses compute a batch."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Parameter, float]] = {}

    def _batch(self, m: int, params: Sequence[Parameter]) -> np.ndarray:
        raise NotImplementedError

    def prefill(self, items: Iterable[Item]) -> None:
        """Compute and cache the densities of many particles (pyabc Particles or (m, Parameter) pairs)."""
        by_model: dict[int, list[Parameter]] = {}
        cache = self._cache
        for m, par in _pairs(items):
            if id(par) not in cache:
                by_model.setdefault(m, []).append(par)
        for m, params in by_model.items():  # the Parameter is kept, so its id is not reused
            values = np.asarray(self._batch(m, params), dtype=np.float64).tolist()
            cache.update(zip(map(id, params), zip(params, values)))

    def __call__(self, m_ss: int, theta_ss: Parameter) -> float:
        hit = self._cache.get(id(theta_ss))
        if hit is not None and hit[0] is theta_ss:
            return hit[1]
        return float(self._batch(int(m_ss), [theta_ss])[0])


def parameter_matrix(params: Sequence[Parameter], names: Sequence[str]) -> np.ndarray:
    """(n, len(names)) float64 values of pyabc Parameters (mappings), columns in `names` order."""
    get = operator.itemgetter(*names)
    rows = [get(p) for p in params] if len(names) > 1 else [(get(p),) for p in params]
    return np.array(rows, dtype=np.float64).reshape(len(params), len(names))


class PriorDensity(_CachedDensity):
    """pyabc's prior density model_prior.pmf(m) * parameter_priors[m].pdf(theta), batched over particles."""

    def __init__(self, model_prior: RV, parameter_priors: Sequence[Distribution]):
        super().__init__()
        self.model_prior, self.parameter_priors = model_prior, list(parameter_priors)

    def _batch(self, m: int, params: Sequence[Parameter]) -> np.ndarray:
        prior = self.parameter_priors[m]
        factor = self.model_prior.pmf(m)
        names = list(params[0].keys()) if params else []
        if not all(type(prior[k]) is pyabc.RV for k in names) or sorted(names) != sorted(prior.keys()):
            return np.array([factor * prior.pdf(p) for p in params], dtype=np.float64)
        x = parameter_matrix(params, names)
        out = np.ones(len(params))
        for j, k in enumerate(names):  # the marginals' product, in the Parameter's key order as pyabc takes it
            out = out * np.asarray(prior[k].pdf(x[:, j]), dtype=np.float64)
        return factor * out


class TransitionDensity(_CachedDensity):
    """pyabc's transition density: sum_m' p(m') kernel(m | m') x transitions[m].pdf(theta), batched."""

    def __init__(self, transitions: Sequence[Transition], models: Sequence[int], probabilities: Sequence[float],
                 model_perturbation_kernel: ModelPerturbationKernel):
        super().__init__()
        self.transitions = list(transitions)
        self._models, self._p = [int(m) for m in models], [float(p) for p in probabilities]
        self.kernel = model_perturbation_kernel
        self._fitted: dict[int, tuple[list[str], np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_frame(cls, transitions: Sequence[Transition], model_probabilities: pd.DataFrame,
                   kernel: ModelPerturbationKernel) -> "TransitionDensity":
        """From pyabc's model-probability frame (index m, column p), as ABCSMC holds it."""
        return cls(transitions, list(model_probabilities.index), list(model_probabilities["p"]), kernel)

    def model_factor(self, m: int) -> float:
        return sum(p * self.kernel.pmf(m, mm) for mm, p in zip(self._models, self._p))

    def _batch(self, m: int, params: Sequence[Parameter]) -> np.ndarray:
        tr = self.transitions[m]
        factor = self.model_factor(m)
        if type(tr) is not MultivariateNormalTransition:
            return np.array([factor * tr.pdf(p) for p in params], dtype=np.float64)
        if m not in self._fitted:  # the fitted population, its weights and covariance, as float64 arrays once
            self._fitted[m] = (list(tr.X.columns), tr.X.to_numpy(dtype=np.float64), np.asarray(tr.w, dtype=np.float64),
                               np.asarray(tr.cov, dtype=np.float64))
        names, anc, w, cov = self._fitted[m]
        return factor * gaussian_mixture_density(parameter_matrix(params, names), anc, w, cov)


def gaussian_mixture_density(x: np.ndarray, centres: np.ndarray, weights: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """sum_j weights_j N(x_i; centres_j, cov) for each row x_i: (n, d), (N, d), (N,), (d, d) -> (n,).

    The density of scipy's multivariate_normal(cov=cov, allow_singular=True) (pseudo-inverse and pseudo-
    determinant over the eigenvalues above scipy's cutoff), with the Mahalanobis distances of all pairs from one
    matrix product of whitened, centred points: |a|^2 + |b|^2 - 2 a.b."""
    s, u = np.linalg.eigh(cov)
    keep = s > 1e6 * np.finfo(np.float64).eps * np.max(np.abs(s))  # scipy's _eigvalsh_to_eps for float64
    white = u[:, keep] / np.sqrt(s[keep])
    log_norm = -0.5 * (int(keep.sum()) * math.log(2 * math.pi) + float(np.sum(np.log(s[keep]))))
    mid = centres.mean(axis=0) if len(centres) else np.zeros(x.shape[1])
    a, b = (x - mid) @ white, (centres - mid) @ white
    # the exponent log_norm - |a - b|^2 / 2 = (log_norm - |a|^2 / 2) + (-|b|^2 / 2) + a.b, built in place
    half_aa = log_norm - 0.5 * np.einsum("ij,ij->i", a, a)
    half_bb = -0.5 * np.einsum("ij,ij->i", b, b)
    bt = np.ascontiguousarray(b.T)
    rows = max(1, _CHUNK // max(len(b), 1))
    out = np.empty(len(x))
    for st in range(0, len(x), rows):
        z = a[st:st + rows] @ bt
        z += half_bb
        z += half_aa[st:st + rows, None]
        np.minimum(z, log_norm, out=z)  # a squared distance is >= 0 (rounding can make it slightly negative)
        exp_(z)
        out[st:st + rows] = z @ weights
    return out


class DeferredWeights:
    """A weight function for pyabc's evaluate_proposal that defers the densities: each call records the
    accepted particle's acceptance weight and returns NaN; `resolve()` then sets every recorded particle's
    weight to acceptance weight * prior density / transition density, computed in one batch (pyabc's
    `_weight_function`, term by term)."""

    def __init__(self, prior_pdf: _CachedDensity, transition_pdf: _CachedDensity):
        self.prior_pdf, self.transition_pdf = prior_pdf, transition_pdf
        self._pending: list[tuple[int, Parameter, float]] = []
        self._particles: list[Particle] = []

    def __call__(self, m_ss: int, theta_ss: Parameter, acceptance_weight: float) -> float:
        self._pending.append((int(m_ss), theta_ss, float(acceptance_weight)))
        return math.nan

    def bind(self, particle: Particle) -> None:
        """The particle whose weight the last call deferred (evaluate_proposal made it)."""
        self._particles.append(particle)

    def resolve(self) -> None:
        pairs = [(m, th) for m, th, _ in self._pending]
        self.prior_pdf.prefill(pairs)
        if self.transition_pdf is not self.prior_pdf:
            self.transition_pdf.prefill(pairs)
        for (m, th, aw), particle in zip(self._pending, self._particles):
            particle.weight = aw * self.prior_pdf(m, th) / self.transition_pdf(m, th)
        self._pending.clear()
        self._particles.clear()


def stochastic_acceptance(pdf_norm: float, temperature: float, importance_weighting: bool, log_density: np.ndarray,
                          needed: int) -> tuple[int, np.ndarray, np.ndarray]:
    """pyabc.StochasticAcceptor's decisions for a batch of log-scale kernel values, in order, up to the
    `needed`-th acceptance: (rows decided, accepted (n,), acceptance weights (n,)); only the first `rows
    decided` entries count. As the acceptor does per particle: acceptance probability
    exp((log density - pdf_norm) / temperature), accepted when it reaches a uniform draw, weight
    probability / min(1, probability) (importance weighting) or 1, and 0 where the probability is 0.
    It takes exactly one uniform per decided row from numpy's global generator, as that many acceptor calls
    would, so a run draws the same numbers as pyabc's per-particle path."""
    log_density = np.asarray(log_density, dtype=np.float64)
    prob = np.exp((log_density - pdf_norm) * (1 / temperature))
    state = np.random.get_state()
    accepted = prob >= np.random.uniform(low=0, high=1, size=len(prob))
    hits = np.flatnonzero(accepted)
    rows = len(prob) if len(hits) < needed else int(hits[needed - 1]) + 1
    if rows < len(prob):  # give back the uniforms of the undecided rows
        np.random.set_state(state)
        np.random.uniform(low=0, high=1, size=rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = prob / np.minimum(1.0, prob) if importance_weighting else np.ones(len(prob))
    return rows, accepted, np.where(prob == 0.0, 0.0, weight)


def sampler_densities(kw: dict) -> tuple[PriorDensity, _CachedDensity]:
    """(prior, transition) densities of one generation from the keywords of pyabc's simulate function."""
    prior = PriorDensity(kw["model_prior"], kw["parameter_priors"])
    if kw["t"] == 0:
        return prior, prior
    return prior, TransitionDensity(kw["transitions"], kw["m"], kw["p"], kw["model_perturbation_kernel"])
