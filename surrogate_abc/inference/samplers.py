"""pyabc samplers that evaluate the emulator on batches of proposals: the single-process `BatchedSampler`
(proposals drawn in bulk, one emulator call per batch, pyabc's acceptance and weights batch-shaped) and, for
pyabc's dask and redis samplers, `BatchedSimulateOne` (each worker request judged with one emulator call);
`make_sampler` picks one for --sampler."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyabc
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

from .abc_parts import EmulatorModel, MultinomialKernel, multinomial_logliks
from .batched_abc import DeferredWeights, gc_paused, sampler_densities, stochastic_acceptance

# Proposals per request of a dask task or a redis worker: each round trip carries this many particles, so the
# scheduler's and the database's per-message cost is shared (pyabc's batch_size; the law is unchanged).
CLUSTER_BATCH = 16


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

def batchable(simulate_one: Any) -> bool:
    """Whether pyabc's simulate function can be answered in batches here: its models are EmulatorModels and it is
    pyabc's draw from the prior or its propose-and-evaluate function."""
    func, kw = getattr(simulate_one, "func", None), getattr(simulate_one, "keywords", None) or {}
    models = kw.get("models") or []
    return (len(models) >= 1 and all(isinstance(m, EmulatorModel) for m in models)
            and (func is _simulate_one_from_prior or (func is _simulate_one and kw.get("evaluate", True))))


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
        if not batchable(simulate_one):
            return super().sample_until_n_accepted(n, simulate_one, t, max_eval=max_eval,
                                                   all_accepted=all_accepted, ana_vars=ana_vars)
        kw = simulate_one.keywords
        with gc_paused():
            return self._sample_batched(n, simulate_one.func, kw, kw["models"], max_eval)

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

    def __call__(self) -> Particle:
        if not self._queue:
            if not batchable(self.simulate_one):
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
