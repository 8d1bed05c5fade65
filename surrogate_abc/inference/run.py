"""Run ABC-SMC chains against an emulator and collect their final populations and per-generation statistics."""
from __future__ import annotations

import logging
import random
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import UserError
from .abc_parts import (
    DISTANCES,
    MODES,
    EmulatorModel,
    HistogramDistance,
    MultinomialKernel,
    make_sampler,
    observed_categories,
    observed_sumstat,
)
from .priors import check_prior_in_domain, prior_box, pyabc_prior


@dataclass(frozen=True)
class InferenceSettings:
    """Options of `surrogate-abc infer`."""

    mode: str = "likelihood"
    population: int = 500
    generations: int = 10
    min_epsilon: float | None = None
    max_walltime: float | None = None  # seconds, per chain
    chains: int = 1
    sampler: str = "single"
    seed: int = 0
    distance: str = "hellinger"
    n_procs: int | None = None
    scheduler_address: str | None = None
    redis_host: str = "localhost"
    redis_port: int = 6379
    prior: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def check(self) -> None:
        """UserError on inconsistent options."""
        if self.mode not in MODES:
            raise UserError(f"--mode {self.mode!r}: use likelihood or simulator")
        if self.distance not in DISTANCES:
            raise UserError(f"--distance {self.distance!r}: use one of {', '.join(DISTANCES)}")
        for name, v in (("--population", self.population), ("--generations", self.generations), ("--chains", self.chains)):
            if v < 1:
                raise UserError(f"{name} must be >= 1, got {v}")


@dataclass
class ChainResult:
    """One ABC-SMC run: final weighted population and per-generation statistics."""

    chain: int
    run_id: int
    params: np.ndarray  # (N, d) in emulator.param_names order
    weights: np.ndarray  # (N,) normalised
    epsilon: np.ndarray  # (G,) epsilon or temperature per generation
    acceptance_rate: np.ndarray  # (G,)
    ess: np.ndarray  # (G,)
    n_simulations: np.ndarray  # (G,)
    wall_time: np.ndarray  # (G,) seconds since the chain started
    final_temperature_ok: bool = True


def effective_sample_size(w: np.ndarray) -> float:
    """Kish's ESS of importance weights."""
    w = np.asarray(w, float)
    return float(w.sum() ** 2 / max(np.sum(w**2), 1e-300))


def run_chains(emulator: Any, hist: np.ndarray, overflow: int, settings: InferenceSettings, db_path: Path,
               log: Callable[[str], None] = print, sampler_factory: Callable[[], Any] | None = None) -> list[ChainResult]:
    """Run settings.chains independent ABC-SMC runs (seeds seed, seed+1, ...) into one pyabc database.

    Each chain is a separate History run in db_path. Progress is reported through `log` once per generation."""
    import pyabc

    settings.check()
    box = prior_box(emulator.protocol, settings.prior)
    check_prior_in_domain(box, np.asarray(emulator.domain), tuple(emulator.param_names), getattr(emulator, "source", "emulator"))
    prior = pyabc_prior(box)
    n_cells = int(np.asarray(hist).sum() + overflow)
    cats = observed_categories(hist, overflow) if settings.mode == "likelihood" else None
    x_0 = observed_sumstat(settings.mode, hist, overflow, cats)
    logging.getLogger("ABC").setLevel(logging.WARNING)
    results = []
    for c in range(settings.chains):
        seed = settings.seed + c
        np.random.seed(seed % 2**32)
        random.seed(seed)
        model = EmulatorModel(emulator, settings.mode, n_cells, box, categories=cats)
        sampler = sampler_factory() if sampler_factory else make_sampler(
            settings.sampler, settings.n_procs, settings.scheduler_address, settings.redis_host, settings.redis_port)
        if settings.mode == "likelihood":
            abc = pyabc.ABCSMC(model, prior, MultinomialKernel(), population_size=settings.population, sampler=sampler,
                               eps=pyabc.Temperature(), acceptor=pyabc.StochasticAcceptor())
        else:
            abc = pyabc.ABCSMC(model, prior, HistogramDistance(settings.distance), population_size=settings.population,
                               sampler=sampler, eps=pyabc.MedianEpsilon())
        abc.new(f"sqlite:///{Path(db_path).resolve()}", x_0,
                meta_info={"chain": c, "seed": seed, "mode": settings.mode, "emulator": getattr(emulator, "source", "")})
        abc.history.stores_sum_stats = False
        results.append(_run_one(abc, c, settings, model, log))
    return results


def _run_one(abc, chain: int, settings: InferenceSettings, model: EmulatorModel, log) -> ChainResult:
    """pyabc's ABCSMC.run loop, with a progress line after each generation."""
    start = time.perf_counter()
    walltime = timedelta(seconds=settings.max_walltime) if settings.max_walltime else None
    stats: dict[str, list[float]] = {k: [] for k in ("eps", "acc", "ess", "nsim", "wall")}
    what = "temperature" if settings.mode == "likelihood" else "epsilon"
    try:
        t = abc.initialize_components_before_run(
            minimum_epsilon=settings.min_epsilon, max_nr_populations=settings.generations, min_acceptance_rate=0.0,
            max_total_nr_simulations=np.inf, max_walltime=walltime, min_eps_diff=0.0)
        while True:
            ret = abc.run_generation(t=t)
            if not ret["successful"]:
                break
            _, w = abc.history.get_distribution(m=0, t=t)
            eps, acc, ess = float(abc.eps(t)), float(ret["acceptance_rate"]), effective_sample_size(w)
            elapsed = time.perf_counter() - start
            for k, v in zip(stats, (eps, acc, ess, len(w) / max(acc, 1e-300), elapsed)):
                stats[k].append(v)
            log(f"chain {chain + 1}/{settings.chains}  generation {t}  {what} {eps:.4g}  acceptance {acc:.3f}  "
                f"ESS {ess:.1f}  elapsed {elapsed:.1f} s")
            if abc.check_terminate(t=t, acceptance_rate=acc):
                break
            t += 1
    finally:
        abc.history.done()
        abc.sampler.stop()
    if not stats["eps"]:
        raise UserError("ABC-SMC produced no population (the sampler failed); try --sampler single")
    df, w = abc.history.get_distribution(m=0, t=abc.history.max_t)
    ok = settings.mode != "likelihood" or stats["eps"][-1] <= 1.0 + 1e-12
    if not ok:
        warnings.warn(f"chain {chain + 1}: stopped at temperature {stats['eps'][-1]:.4g} > 1, so its population is a "
                      "tempered posterior; allow more --generations or a longer --max-walltime", stacklevel=2)
    return ChainResult(chain=chain, run_id=int(abc.history.id), params=model.natural(df),
                       weights=np.asarray(w, float) / np.sum(w), epsilon=np.array(stats["eps"]),
                       acceptance_rate=np.array(stats["acc"]), ess=np.array(stats["ess"]),
                       n_simulations=np.array(stats["nsim"]), wall_time=np.array(stats["wall"]), final_temperature_ok=ok)
