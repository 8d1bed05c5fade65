"""pyabc building blocks driven by an emulator: the model, the exact likelihood kernel, histogram distances,
the observed data as pyabc's x_0 (the samplers are in samplers.py).

Two modes:
* likelihood: the model returns the emulated pmf (bins + overflow, flattened) and `MultinomialKernel`
  (a pyabc.StochasticKernel on the log scale) returns sum_b count_b * log p_b, the multinomial
  log-likelihood of the observed cells without its constant. With pyabc.StochasticAcceptor and a
  pyabc.Temperature schedule whose last temperature is 1, the final population targets the posterior
  under the emulator (Wilkinson 2013; pyabc's "exact inference" set-up).
* simulator: the model draws a synthetic histogram of as many cells as were observed; a histogram
  distance (Hellinger by default) with pyabc's adaptive (median) epsilon.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pyabc
from pyabc.distance import SCALE_LOG, StochasticKernel

from ...emulators.base import EmulatorLike
from ...metrics import HISTOGRAM_DISTANCES, log_probs
from ..priors import natural_values
from ..settings import MODES
from .densities import parameter_matrix


# ----------------------------------------------------------------------------------- distances
class HistogramDistance(pyabc.Distance):
    """pyabc distance between the observed and a simulated normalised histogram (key 'h')."""

    def __init__(self, name: str = "hellinger"):
        super().__init__()
        self.name = name
        self.fun = HISTOGRAM_DISTANCES[name]

    def __call__(self, x: dict, x_0: dict, t: int | None = None, par: dict | None = None) -> float:
        return float(self.fun(x_0["h"], x["h"]))

    def get_config(self) -> dict:
        return {"name": f"HistogramDistance({self.name})"}


class MultinomialKernel(StochasticKernel):
    """Log-likelihood of the observed bin counts x_0['counts'] under the emulated pmf x['p'] (both (C,))."""

    def __init__(self):
        super().__init__(ret_scale=SCALE_LOG, keys=["p"], pdf_max=None)

    def __call__(self, x: dict, x_0: dict, t: int | None = None, par: dict | None = None) -> float:
        return multinomial_loglik(x_0["counts"], x["p"])

    def get_config(self) -> dict:
        return {"name": "MultinomialKernel"}


def multinomial_loglik(counts: np.ndarray, p: np.ndarray) -> float:
    """sum_b counts_b * log p_b over bins with counts (the multinomial constant dropped)."""
    return float(multinomial_logliks(counts, np.asarray(p, float)[None, :])[0])


def multinomial_logliks(counts: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """`multinomial_loglik` of each row of probs (n, C) against the same counts (C,): (n,)."""
    counts = np.asarray(counts, float)
    m = counts > 0
    probs = np.asarray(probs, float)
    if m.all():  # the likelihood's categories are the observed ones: no copy of the columns
        return log_probs(probs) @ counts
    return log_probs(probs[:, m]) @ counts[m]


# ----------------------------------------------------------------------------------- model
class EmulatorModel(pyabc.Model):
    """pyabc model around an emulator. `prefill` evaluates a batch of parameters at once into a cache
    keyed by the parameter values; `sample` uses the cache when it can and the emulator otherwise.

    `box` ({name: (kind, low, high)}, as from `priors.prior_box`) says which parameters pyabc samples on the
    log10 scale (`log10_<name>`); without it pyabc's parameters carry the emulator's names and scales."""

    def __init__(self, emulator: EmulatorLike, mode: str, n_cells: int, box: Mapping[str, tuple[str, float, float]] | None = None,
                 name: str = "emulator", categories: np.ndarray | None = None):
        super().__init__(name=name)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.emulator, self.mode, self.n_cells = emulator, mode, int(n_cells)
        # likelihood mode: only these flat categories (those with observed cells) are computed; x_0 must hold the
        # counts of the same categories (observed_sumstat(..., categories))
        self.categories = None if categories is None else np.asarray(categories, dtype=np.int64)
        self.param_names = tuple(emulator.param_names)
        self.box = dict(box) if box is not None else {k: ("uniform", -np.inf, np.inf) for k in self.param_names}
        self._cache: dict[int, tuple[Any, dict]] = {}

    def natural(self, values: Any) -> np.ndarray:
        """Natural-scale parameters (emulator order) from pyabc values: a Parameter/dict -> (d,), a DataFrame -> (n, d)."""
        return natural_values(self.box, values, self.param_names)

    def _key(self, pars) -> tuple:
        return tuple(self.natural(pars).tolist())

    def evaluate(self, theta: np.ndarray) -> list[dict]:
        """Model outputs for the rows of theta (n, d; natural scale, emulator order), in one emulator call."""
        theta = np.atleast_2d(np.asarray(theta, float))
        if self.mode == "likelihood":
            return [{"p": row} for row in self.probabilities(theta)]
        # pyabc seeds numpy's global generator (and re-seeds it in each worker process): derive ours from it
        rng = np.random.default_rng(np.random.randint(0, 2**63 - 1, dtype=np.int64))
        counts, overflow = self.emulator.sample_counts(theta, self.n_cells, rng)
        flat = np.concatenate([np.asarray(counts).reshape(len(theta), -1), np.asarray(overflow)[:, None]], axis=1)
        flat = flat / max(self.n_cells, 1)
        return [{"h": row} for row in flat]

    def probabilities(self, theta: np.ndarray) -> np.ndarray:
        """(n, k) emulated probabilities of the likelihood's categories at the rows of theta (natural scale)."""
        return category_probs(self.emulator, np.atleast_2d(np.asarray(theta, float)), self.categories)

    def theta_of(self, params: Sequence[Any]) -> np.ndarray:
        """(n, d) natural-scale parameters, emulator order, of a list of pyabc Parameters (all with the same keys)."""
        names = list(params[0].keys())
        return self.natural(dict(zip(names, parameter_matrix(params, names).T)))

    def prefill(self, params: list) -> None:
        """Evaluate a batch of pyabc Parameters and cache the results (by Parameter object; `sample` of the same
        object takes them)."""
        if not params:
            return
        for par, out in zip(params, self.evaluate(self.theta_of(params))):
            self._cache[id(par)] = (par, out)

    def clear_cache(self) -> None:
        self._cache.clear()

    def sample(self, pars) -> dict:
        hit = self._cache.pop(id(pars), None)
        if hit is not None and hit[0] is pars:
            return hit[1]
        return self.evaluate(np.array([self._key(pars)]))[0]


def observed_sumstat(mode: str, hist: np.ndarray, overflow: int, categories: np.ndarray | None = None) -> dict:
    """pyabc's x_0: bin counts + overflow (likelihood mode; only `categories` of them when given) or the
    normalised histogram (simulator mode)."""
    flat = np.concatenate([np.asarray(hist, float).ravel(), [float(overflow)]])
    if mode == "likelihood":
        return {"counts": flat if categories is None else flat[np.asarray(categories, dtype=np.int64)]}
    return {"h": flat / flat.sum()}


def observed_categories(hist: np.ndarray, overflow: int) -> np.ndarray:
    """Flat categories (bins in C order, then the overflow) holding observed cells: all a likelihood needs."""
    return np.flatnonzero(np.concatenate([np.asarray(hist, float).ravel(), [float(overflow)]]) > 0)


def category_probs(emulator: EmulatorLike, theta: np.ndarray, categories: np.ndarray | None = None) -> np.ndarray:
    """(n, k) emulated probabilities of the flat categories (bins, then the overflow): emulator.category_probs
    (every emulator has it, emulators/base.py; it computes only those) or, for categories None, the full pmf."""
    if categories is not None:
        return np.asarray(emulator.category_probs(theta, categories), dtype=np.float64)
    probs, overflow = emulator.pmf(theta)
    return np.concatenate([np.asarray(probs).reshape(len(theta), -1), np.asarray(overflow)[:, None]], axis=1)
