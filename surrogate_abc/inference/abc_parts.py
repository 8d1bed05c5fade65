"""pyabc building blocks driven by an emulator: the model, the exact likelihood kernel, histogram distances,
and a single-core sampler that evaluates the emulator on batches of proposals.

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

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyabc
from pyabc.distance import SCALE_LOG, StochasticKernel
from pyabc.inference.smc import identity
from pyabc.inference_util.inference_util import (
    _simulate_one,
    _simulate_one_from_prior,
    evaluate_proposal,
    generate_valid_proposal,
)
from pyabc.population import Particle
from pyabc.sampler import SingleCoreSampler
from pyabc.transition import MultivariateNormalTransition

from ..metrics import euclidean, hellinger_distance, kl_divergence, total_variation
from .batched_abc import DeferredWeights, gc_paused, parameter_matrix, sampler_densities, stochastic_acceptance
from .priors import natural_values

MODES = ("likelihood", "simulator")
# Proposals per request of a dask task or a redis worker: each round trip carries this many particles, so the
# scheduler's and the database's per-message cost is shared (pyabc's batch_size; the law is unchanged).
CLUSTER_BATCH = 16
LOG_FLOOR = 1e-300


# ----------------------------------------------------------------------------------- distances
# --distance NAME -> metric(observed, simulated) of two normalised histograms (flattened, overflow last)
DISTANCES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "hellinger": hellinger_distance, "tv": total_variation, "l2": euclidean, "kl": kl_divergence,
}


class HistogramDistance(pyabc.Distance):
    """pyabc distance between the observed and a simulated normalised histogram (key 'h')."""

    def __init__(self, name: str = "hellinger"):
        super().__init__()
        self.name = name
        self.fun = DISTANCES[name]

    def __call__(self, x: dict, x_0: dict, t: int | None = None, par: dict | None = None) -> float:
        return self.fun(x_0["h"], x["h"])

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
    return np.log(np.maximum(np.asarray(probs, float)[:, m], LOG_FLOOR)) @ counts[m]


# ----------------------------------------------------------------------------------- model
class EmulatorModel(pyabc.Model):
    """pyabc model around an emulator. `prefill` evaluates a batch of parameters at once into a cache
    keyed by the parameter values; `sample` uses the cache when it can and the emulator otherwise.

    `box` ({name: (kind, low, high)}, as from `priors.prior_box`) says which parameters pyabc samples on the
    log10 scale (`log10_<name>`); without it pyabc's parameters carry the emulator's names and scales."""

    def __init__(self, emulator: Any, mode: str, n_cells: int, box: Mapping[str, tuple[str, float, float]] | None = None,
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


def category_probs(emulator: Any, theta: np.ndarray, categories: np.ndarray | None = None) -> np.ndarray:
    """(n, k) emulated probabilities of the flat categories (bins, then the overflow): emulator.category_probs
    (every emulator has it, emulators/base.py; it computes only those) or, for categories None, the full pmf."""
    if categories is not None:
        return np.asarray(emulator.category_probs(theta, categories), dtype=np.float64)
    probs, overflow = emulator.pmf(theta)
    return np.concatenate([np.asarray(probs).reshape(len(theta), -1), np.asarray(overflow)[:, None]], axis=1)


# ----------------------------------------------------------------------------------- batched sampler

def _one_proposal(kw: dict, from_prior: bool):
    """pyabc's own proposal: (model index, Parameter)."""
    if from_prior:
        m_ss = int(kw["model_prior"].rvs())
        return m_ss, kw["parameter_priors"][m_ss].rvs()
    return generate_valid_proposal(t=kw["t"], m=kw["m"], p=kw["p"], model_prior=kw["model_prior"],
                                   parameter_priors=kw["parameter_priors"],
                                   model_perturbation_kernel=kw["model_perturbation_kernel"], transitions=kw["transitions"])


def parameters(names: Sequence[str], values: np.ndarray) -> list[pyabc.Parameter]:
    """pyabc Parameters {name: float} of the rows of values (n, len(names)), made without Parameter's nested-
    dict flattening (flat names and float values need none; the dicts are equal to Parameter(dict(...)))."""
    out = []
    for row in np.asarray(values, dtype=np.float64).tolist():
        par = dict.__new__(pyabc.Parameter)
        dict.update(par, zip(names, row))
        out.append(par)
    return out


def bulk_proposals(k: int, kw: dict, from_prior: bool) -> list | None:
    """k proposals drawn at once, with the law of pyabc's `generate_valid_proposal` for a single model whose prior
    is a Distribution of scipy RVs and whose transition is a MultivariateNormalTransition: draw from the prior
    (first generation), or pick ancestors by weight, add Gaussian noise of the kernel's covariance and keep the
    draws of positive prior density (rejection, as pyabc does one at a time). None for any other set-up."""
    priors = kw["parameter_priors"]
    if len(priors) != 1 or not all(type(v) is pyabc.RV for v in priors[0].values()):
        return None
    prior = priors[0]
    if not from_prior and kw["t"] > 0:  # at t == 0 pyabc draws from the prior (m and transitions unused)
        if len(kw["m"]) != 1 or int(kw["m"][0]) != 0:
            return None
        if type(kw["transitions"][0]) is not MultivariateNormalTransition:
            return None
    if from_prior or kw["t"] == 0:
        names = list(prior.keys())
        cols = np.column_stack([np.atleast_1d(prior[n].rvs(size=k)) for n in names])
    else:
        tr = kw["transitions"][0]
        names, x = list(tr.X.columns), np.asarray(tr.X.to_numpy(), float)
        w = np.asarray(tr.w, float)
        kept, n_kept, tries = [], 0, 0
        while n_kept < k:
            n = max(2 * (k - n_kept), 16)
            z = x[np.random.choice(len(x), size=n, p=w / w.sum())] + np.random.multivariate_normal(
                np.zeros(len(names)), tr.cov, size=n)
            dens = np.ones(n)
            for j, name in enumerate(names):
                dens *= prior[name].pdf(z[:, j])
            z = z[dens > 0]
            kept.append(z)
            n_kept += len(z)
            tries += n
            if tries > 1000 * k:
                raise RuntimeError("almost every perturbed particle has prior density zero; the transition is unsuitable")
        cols = np.concatenate(kept)[:k]
    return [(0, p) for p in parameters(names, cols)]

class BatchedSampler(SingleCoreSampler):
    """Single-core sampler that proposes a batch of parameters, evaluates each model's emulator once on its part
    of the batch (several models: model selection; their proposals are pyabc's own, drawn one at a time),
    then runs pyabc's own acceptance and weighting on each proposal in order, stopping at the n-th
    acceptance. Proposals are i.i.d., so discarding the unevaluated rest of a batch leaves the sample's law
    (and pyabc's weights) unchanged. Falls back to per-particle evaluation for anything else."""

    def __init__(self, max_batch: int = 2048, min_batch: int = 16, batched_weights: bool = True):
        super().__init__(check_max_eval=False)
        self.max_batch, self.min_batch = max_batch, min_batch
        self.batched_weights = batched_weights  # False: pyabc's own weight function, one particle at a time

    def sample_until_n_accepted(self, n, simulate_one, t, *, max_eval=np.inf, all_accepted=False, ana_vars=None):
        func, kw = getattr(simulate_one, "func", None), getattr(simulate_one, "keywords", None) or {}
        models = kw.get("models") or []
        batchable = (len(models) >= 1 and all(isinstance(m, EmulatorModel) for m in models)
                     and (func is _simulate_one_from_prior or (func is _simulate_one and kw.get("evaluate", True))))
        if not batchable:
            return super().sample_until_n_accepted(n, simulate_one, t, max_eval=max_eval,
                                                   all_accepted=all_accepted, ana_vars=ana_vars)
        with gc_paused():
            return self._sample_batched(n, func, kw, models, max_eval)

    def _sample_batched(self, n: int, func: Any, kw: dict, models: Sequence[EmulatorModel], max_eval: float):
        sample = self._create_empty_sample()
        weights = None
        if self.batched_weights and func is _simulate_one:
            weights = DeferredWeights(*sampler_densities(kw))
        # likelihood mode with pyabc's StochasticAcceptor: the acceptance of a whole batch in array operations
        batched_accept = (weights is not None and type(kw.get("acceptor")) is pyabc.StochasticAcceptor
                          and type(kw.get("distance_function")) is MultinomialKernel
                          and kw.get("summary_statistics") is identity
                          and all(m.mode == "likelihood" and type(m).summary_statistics is pyabc.Model.summary_statistics
                                  for m in models))
        n_eval = n_acc = 0
        rate = 0.5
        while n_acc < n and n_eval < max_eval:
            want = (n - n_acc) / max(rate, 1e-3) * 1.2
            k = int(min(self.max_batch, max(self.min_batch, math.ceil(want))))
            if math.isfinite(max_eval):
                k = int(min(k, math.ceil(max_eval - n_eval)))  # as pyabc: evaluate while n_eval < max_eval
            props = bulk_proposals(k, kw, from_prior=func is _simulate_one_from_prior)
            if props is None:  # not the one-model, RV-prior, Gaussian-kernel case: pyabc's own, one at a time
                props = [_one_proposal(kw, func is _simulate_one_from_prior) for _ in range(k)]
            if batched_accept:
                decided, accepted = accept_batch(props, models, kw, weights, sample, n - n_acc)
                n_eval += decided
                n_acc += accepted
                props = []
            for j, model in enumerate(models):  # each model's proposals in one emulator call
                model.prefill([theta for m_ss, theta in props if m_ss == j])
            for m_ss, theta in props:
                particle = judge(m_ss, theta, func, kw, models, weights)
                sample.append(particle)
                n_eval += 1
                if particle.accepted:
                    n_acc += 1
                    if n_acc >= n:
                        break
            for model in models:
                model.clear_cache()
            if weights is not None:
                weights.resolve()  # the batch's accepted particles get their weights in one pass
            rate = (n_acc + 0.5) / (n_eval + 1.0)
        self.nr_evaluations_ = n_eval
        if sample.n_accepted < n:
            sample.ok = False
        return sample


def judge(m_ss: int, theta: Any, func: Any, kw: dict, models: Sequence[EmulatorModel],
          weights: DeferredWeights | None) -> Particle:
    """One proposal made into pyabc's Particle, as pyabc's simulate function does (from the prior: accepted with
    weight 1; else pyabc's evaluate_proposal, with `weights` deferring the weight when given)."""
    if func is _simulate_one_from_prior:
        res = models[m_ss].summary_statistics(0, theta, kw["summary_statistics"])
        return Particle(m=m_ss, parameter=theta, weight=1.0, sum_stat=res.sum_stat, distance=np.inf, accepted=True,
                        proposal_id=0, preliminary=False)
    particle = evaluate_proposal(m_ss, theta, t=kw["t"], models=models, summary_statistics=kw["summary_statistics"],
                                 distance_function=kw["distance_function"], eps=kw["eps"], acceptor=kw["acceptor"],
                                 x_0=kw["x_0"], weight_function=weights or kw["weight_function"],
                                 proposal_id=kw["proposal_id"])
    if weights is not None and particle.accepted:
        weights.bind(particle)
    return particle


class BatchedSimulateOne:
    """pyabc's simulate function (what a cluster worker calls once per particle) answering from batches: its
    first call draws `batch` proposals at once, evaluates each model's emulator once on them and judges every
    one (weights in one pass), later calls hand out those particles in order, then the next batch. The
    particles are pyabc's, with its law (i.i.d. proposals, each judged alone); workers that call it `batch`
    times per request (pyabc's dask and redis samplers with batch_size) make one emulator call per request.
    Anything but emulator models is passed straight to pyabc's function."""

    def __init__(self, simulate_one: Any, batch: int):
        self.simulate_one, self.batch = simulate_one, int(batch)
        self._queue: list[Particle] = []

    def _batchable(self) -> bool:
        func, kw = getattr(self.simulate_one, "func", None), getattr(self.simulate_one, "keywords", None) or {}
        models = kw.get("models") or []
        return (len(models) >= 1 and all(isinstance(m, EmulatorModel) for m in models)
                and (func is _simulate_one_from_prior or (func is _simulate_one and kw.get("evaluate", True))))

    def __call__(self) -> Particle:
        if not self._queue:
            if not self._batchable():
                return self.simulate_one()
            self._queue = self._evaluate(self.batch)[::-1]
        return self._queue.pop()

    def _evaluate(self, k: int) -> list[Particle]:
        func, kw = self.simulate_one.func, self.simulate_one.keywords
        models = kw["models"]
        from_prior = func is _simulate_one_from_prior
        with gc_paused():
            props = bulk_proposals(k, kw, from_prior) or [_one_proposal(kw, from_prior) for _ in range(k)]
            weights = None if from_prior else DeferredWeights(*sampler_densities(kw))
            for j, model in enumerate(models):
                model.prefill([theta for m_ss, theta in props if m_ss == j])
            out = [judge(m_ss, theta, func, kw, models, weights) for m_ss, theta in props]
            for model in models:
                model.clear_cache()
            if weights is not None:
                weights.resolve()
        return out


class _BatchedWorkers:
    """Mixin for pyabc's cluster samplers: the simulate function they ship to workers is a BatchedSimulateOne."""

    batch_size: int

    def sample_until_n_accepted(self, n, simulate_one, t, **kwargs):
        return super().sample_until_n_accepted(n, BatchedSimulateOne(simulate_one, self.batch_size), t,  # type: ignore[misc]
                                               **kwargs)


class BatchedDaskSampler(_BatchedWorkers, pyabc.sampler.DaskDistributedSampler):
    """pyabc's DaskDistributedSampler; each request of batch_size particles makes one emulator call."""


class BatchedRedisSampler(_BatchedWorkers, pyabc.sampler.RedisEvalParallelSampler):
    """pyabc's RedisEvalParallelSampler; each worker request of batch_size particles makes one emulator call."""


def accept_batch(props: list, models: Sequence[EmulatorModel], kw: dict, weights: DeferredWeights, sample: Any,
                 needed: int) -> tuple[int, int]:
    """Evaluate and judge proposals [(model index, Parameter)] in order until `needed` are accepted, appending
    their particles to `sample`: each model's emulator once on its proposals, the multinomial log-likelihoods
    in one product, and pyabc.StochasticAcceptor's decisions by `stochastic_acceptance` (the same particles,
    distances, acceptance weights and uniforms as pyabc's evaluate_proposal one at a time). Accepted particles
    get their weights through `weights` (resolved by the caller). Returns (proposals decided, accepted)."""
    counts = kw["x_0"]["counts"]
    density = np.empty(len(props))
    sum_stats: list[Any] = [None] * len(props)
    for j, model in enumerate(models):
        idx = [i for i, (m_ss, _) in enumerate(props) if m_ss == j]
        if not idx:
            continue
        probs = model.probabilities(model.theta_of([props[i][1] for i in idx]))
        density[idx] = multinomial_logliks(counts, probs)
        for i, row in zip(idx, probs):
            sum_stats[i] = {"p": row}
    decided, accepted, acc_weight = stochastic_acceptance(kw["acceptor"], kw["eps"], kw["t"], density, needed)
    for i in range(decided):
        m_ss, theta = props[i]
        ok = bool(accepted[i])
        particle = Particle(m=m_ss, parameter=theta, weight=weights(m_ss, theta, acc_weight[i]) if ok else 0,
                            sum_stat=sum_stats[i], distance=float(density[i]), accepted=ok, preliminary=False,
                            proposal_id=kw["proposal_id"])
        if ok:
            weights.bind(particle)
        sample.append(particle)
    return decided, int(np.count_nonzero(accepted[:decided]))


def make_sampler(kind: str, n_procs: int | None = None, scheduler_address: str | None = None,
                 redis_host: str = "localhost", redis_port: int = 6379, fast: bool = True):
    """The pyabc sampler for --sampler.

    * single: `BatchedSampler` (one process; the emulator is evaluated on batches of proposals).
    * multicore: pyabc.sampler.MulticoreEvalParallelSampler(n_procs) (default n_procs = cores);
      one emulator call per particle in each worker.
    * dask: pyabc.sampler.DaskDistributedSampler on a dask.distributed Client connected to
      --scheduler-address. Start a scheduler with `dask scheduler` and workers with
      `dask worker ADDRESS` (ADDRESS e.g. tcp://host:8786) on each machine.
    * redis: pyabc.sampler.RedisEvalParallelSampler(host, port). Start a server with
      `redis-server --port PORT` and workers with `abc-redis-worker --host=HOST --port=PORT`.
    Workers of dask/redis receive the model by pyabc's own (cloud)pickle transport and take CLUSTER_BATCH
    proposals per request, evaluated in one emulator call (BatchedSimulateOne).
    """
    import os

    from ..errors import UserError

    if kind == "single":
        return BatchedSampler(batched_weights=fast)
    if kind == "multicore":
        return pyabc.sampler.MulticoreEvalParallelSampler(n_procs=n_procs or os.cpu_count() or 1, check_max_eval=True)
    if kind == "dask":
        if not scheduler_address:
            raise UserError("--sampler dask needs --scheduler-address (e.g. tcp://host:8786 of a running `dask scheduler`)")
        try:
            from dask.distributed import Client
        except ImportError:
            raise UserError("--sampler dask needs the 'distributed' package: pip install 'dask[distributed]'") from None
        return BatchedDaskSampler(dask_client=Client(scheduler_address), batch_size=CLUSTER_BATCH)
    if kind == "redis":
        try:
            return BatchedRedisSampler(host=redis_host, port=redis_port, batch_size=CLUSTER_BATCH)
        except Exception as exc:  # missing redis package or server
            raise UserError(f"--sampler redis: cannot use redis at {redis_host}:{redis_port} ({exc}); "
                            "install 'redis' and start `redis-server`") from None
    raise UserError(f"--sampler {kind!r}: use single, multicore, dask or redis")
