"""The emulator checked, and corrected, where the posterior lives: exact distributions at posterior draws.

An emulator off by KL per cell shifts the log-likelihood of N cells by about N x KL nats, and its average error
over the prior says little about the error where the posterior is. After the ABC run:

* `check_exact` takes ~50 posterior draws, computes their exact distributions (the closed form or FSP, and
  for the gene model's (mRNA, protein) where FSP's box cannot hold the law its generating function; in parallel
  over the cores), and reports the emulator-vs-exact H2 and KLD there and the difference between the
  emulator's and the exact log-likelihood of the observed data (mean and sd over the draws, in nats).
* `reweight_exact` importance-reweights every chain's final population by exp(exact - emulator log-likelihood)
  (each distinct particle solved once), so the posterior is exact for the model whenever the effective sample
  size stays healthy: the emulator only proposes.

Both return plain results (`ExactCheck`, `Reweighted`); output.py stores them in posterior.nc.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..emulators.base import EmulatorLike
from ..metrics import kl_divergence, squared_hellinger
from .pyabc_bridge.history import ChainResult
from .pyabc_bridge.parts import multinomial_logliks, observed_sumstat
from .workers import die_with_parent

N_CHECK_DRAWS = 50
DEFAULT_BUDGET = 60.0  # seconds the exact check may take
LOW_ESS = 0.1  # reweighting keeps less than this fraction of the population: say so


def exact_counterpart(emulator: EmulatorLike) -> EmulatorLike | None:
    """The exact model of an emulator's protocol (with the same capture efficiency), or None when the emulator is
    exact already or its network has no exact engine."""
    from ..emulators.capture import CapturedEmulator
    from ..emulators.exact import ExactEmulator
    from ..emulators.rate_capture import RateCapture
    from ..networks import GaussianMixtureNetwork, ReactionNetwork

    if isinstance(emulator, RateCapture):
        inner = exact_counterpart(emulator.inner)
        return None if inner is None else emulator.wrapping(inner)
    if isinstance(emulator, CapturedEmulator):
        inner = exact_counterpart(emulator.inner)
        return None if inner is None else CapturedEmulator(inner, capture=emulator.capture, prior=emulator.prior,
                                                            scale=emulator.scale)
    if isinstance(emulator, ExactEmulator) or not hasattr(emulator, "protocol"):
        return None
    if not isinstance(emulator.protocol.network, (ReactionNetwork, GaussianMixtureNetwork)):
        return None
    return ExactEmulator(emulator.protocol, source=f"exact:{emulator.protocol.name}")


def _flat(emulator: EmulatorLike, theta: np.ndarray) -> np.ndarray:
    probs, overflow = emulator.pmf(theta)
    return np.concatenate([np.asarray(probs).reshape(len(theta), -1), np.asarray(overflow)[:, None]], axis=1)


def _exact_rows(args: tuple[Any, np.ndarray]) -> np.ndarray:
    exact, theta = args
    return _flat(exact, theta)


def exact_probs(exact: EmulatorLike, theta: np.ndarray, jobs: int | None = None) -> np.ndarray:
    """(n, C) exact flat probabilities (bins, then overflow) at the distinct rows of theta, in `jobs` forked
    processes for models that solve each set (FSP, the generating function; closed forms are vectorised in this
    process)."""
    theta = np.atleast_2d(np.asarray(theta, float))
    uniq, inv = np.unique(theta, axis=0, return_inverse=True)
    base = getattr(exact, "inner", exact)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(uniq)))
    if not getattr(base, "solves_each_set", False) or jobs == 1:
        out = _flat(exact, uniq)
    else:
        import multiprocessing as mp

        chunks = np.array_split(uniq, min(len(uniq), 4 * jobs))
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"), initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            out = np.concatenate(list(pool.map(_exact_rows, [(exact, c) for c in chunks])))
    return out[inv.ravel()]


def log_likelihoods(flat_probs: np.ndarray, hist: np.ndarray, overflow: int) -> np.ndarray:
    """(n,) multinomial log-likelihood of the observed cells (constant dropped) under each row of probabilities."""
    return multinomial_logliks(observed_sumstat("likelihood", hist, overflow)["counts"], flat_probs)


@dataclass(frozen=True)
class ExactCheck:
    """The emulator against the exact model at posterior draws."""

    theta: np.ndarray  # (n, d) the draws
    h2: np.ndarray  # (n,) squared Hellinger, emulator vs exact
    kld: np.ndarray  # (n,) KL(exact || emulator)
    dloglik: np.ndarray  # (n,) emulator minus exact log-likelihood of the observed data, nats
    seconds: float

    @property
    def sd(self) -> float:
        return float(np.std(self.dloglik, ddof=1)) if len(self.dloglik) > 1 else 0.0

    def line(self) -> str:
        """The one line `infer` prints."""
        return (f"exact check at {len(self.h2)} posterior draws: H2 {np.mean(self.h2):.2g} (max {np.max(self.h2):.2g}), "
                f"KLD {np.mean(self.kld):.2g}; emulator - exact log-likelihood {np.mean(self.dloglik):+.2f} +- "
                f"{self.sd:.2f} nats ({self.seconds:.0f} s)")

    def attrs(self) -> dict[str, float]:
        return {"check_h2_mean": float(np.mean(self.h2)), "check_h2_max": float(np.max(self.h2)),
                "check_kld_mean": float(np.mean(self.kld)), "check_dloglik_mean": float(np.mean(self.dloglik)),
                "check_dloglik_sd": self.sd, "check_draws": int(len(self.h2)), "check_seconds": float(self.seconds)}


def check_draws(draws: np.ndarray, n_draws: int = N_CHECK_DRAWS, seed: int = 0) -> np.ndarray:
    """The posterior draws (rows of draws) the check is made at: n_draws of them, without replacement, seeded."""
    rng = np.random.default_rng(seed)
    return draws[rng.choice(len(draws), size=min(n_draws, len(draws)), replace=False)]


def estimate_seconds(exact: EmulatorLike, theta: np.ndarray, jobs: int | None = None) -> tuple[float, np.ndarray]:
    """(estimated seconds for the exact solves at all rows of theta, from the time of one; the exact flat
    probabilities of theta's first row, which check_exact takes as `first_row` instead of solving it again)."""
    t0 = time.perf_counter()
    row = _flat(exact, np.atleast_2d(theta[0]))[0]
    one = time.perf_counter() - t0
    base = getattr(exact, "inner", exact)
    jobs = max(1, jobs or os.cpu_count() or 1) if getattr(base, "solves_each_set", False) else 1
    return one * len(theta) / jobs, row


def check_exact(emulator: EmulatorLike, exact: EmulatorLike, draws: np.ndarray, hist: np.ndarray, overflow: int,
                n_draws: int = N_CHECK_DRAWS, seed: int = 0, jobs: int | None = None,
                first_row: np.ndarray | None = None) -> ExactCheck:
    """The emulator against `exact` at n_draws of the posterior draws (n, d) (see the module docstring);
    `first_row`: the exact probabilities of the first check draw when already solved (estimate_seconds)."""
    t0 = time.perf_counter()
    theta = check_draws(draws, n_draws, seed)
    if first_row is None:
        p_exact = exact_probs(exact, theta, jobs)
    else:
        rest = exact_probs(exact, theta[1:], jobs) if len(theta) > 1 else np.zeros((0, len(first_row)))
        p_exact = np.vstack([np.asarray(first_row, float)[None, :], rest])
    p_emu = _flat(emulator, theta)
    return ExactCheck(theta=theta, h2=np.asarray(squared_hellinger(p_exact, p_emu), float).reshape(-1),
                      kld=np.array([kl_divergence(a, b) for a, b in zip(p_exact, p_emu)]),
                      dloglik=log_likelihoods(p_emu, hist, overflow) - log_likelihoods(p_exact, hist, overflow),
                      seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class Reweighted:
    """Each chain's final population reweighted to the exact likelihood."""

    weights: list[np.ndarray]  # per chain (N_c,) normalised
    ess: list[float]  # per chain, of the new weights
    ess_before: list[float]
    seconds: float

    def line(self) -> str:
        kept = sum(self.ess) / max(sum(self.ess_before), 1e-300)
        return (f"reweighted to the exact likelihood: ESS {sum(self.ess):.0f} of {sum(self.ess_before):.0f} "
                f"({100 * kept:.0f}% kept; {self.seconds:.0f} s)")

    def healthy(self, population: int) -> bool:
        return min(self.ess) >= LOW_ESS * population


def reweight_exact(emulator: EmulatorLike, exact: EmulatorLike, chains: Sequence[ChainResult], hist: np.ndarray, overflow: int,
                   jobs: int | None = None) -> Reweighted:
    """w_i' proportional to w_i exp(exact - emulator log-likelihood at particle i), per chain."""
    from pyabc.weighted_statistics import effective_sample_size

    t0 = time.perf_counter()
    allp = np.concatenate([c.params for c in chains])
    d = log_likelihoods(exact_probs(exact, allp, jobs), hist, overflow) - log_likelihoods(_flat(emulator, allp), hist,
                                                                                          overflow)
    out, ess, before, start = [], [], [], 0
    for c in chains:
        dc = d[start:start + len(c.params)]
        start += len(c.params)
        logw = np.log(np.maximum(c.weights, 1e-300)) + dc
        w = np.exp(logw - logw.max())
        w = w / w.sum() if np.isfinite(w.sum()) and w.sum() > 0 else np.full(len(w), 1.0 / len(w))
        out.append(w)
        ess.append(float(effective_sample_size(w)))
        before.append(float(effective_sample_size(c.weights)))
    return Reweighted(out, ess, before, time.perf_counter() - t0)


def budget_note(estimate: float, budget: float) -> str:
    return (f"exact check skipped: the exact model would take about {math.ceil(estimate)} s at {N_CHECK_DRAWS} "
            f"draws, over --check-budget {budget:g} s; raise the budget or pass --check none")
