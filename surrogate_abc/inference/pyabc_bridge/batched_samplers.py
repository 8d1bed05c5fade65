"""pyabc samplers that evaluate the emulator on batches of proposals (the fast path): the single-process
`BatchedSampler` (proposals drawn in bulk, one emulator call per batch, pyabc's acceptance and weights batch-shaped)
and, for pyabc's dask and redis samplers, `BatchedSimulateOne` (each worker request judged with one emulator
call). They extend pyabc's Sampler; what they need of pyabc beyond its public API goes through compat.py, so this
module is imported only when compat's check passed (samplers.make_sampler)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyabc
from pyabc.inference_util import evaluate_proposal, generate_valid_proposal
from pyabc.population import Particle, Sample
from pyabc.sampler import SingleCoreSampler
from pyabc.transition import MultivariateNormalTransition

from . import compat
from .densities import DeferredWeights, gc_paused, sampler_densities, stochastic_acceptance
from .parts import EmulatorModel, MultinomialKernel, multinomial_logliks


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

def batch_kind(simulate_one: Any) -> tuple[str | None, dict]:
    """("prior" or "proposal", keywords) where pyabc's simulate function can be answered in batches here (its
    models are EmulatorModels and it is pyabc's draw from the prior or its propose-and-evaluate function), else
    (None, {})."""
    kind, kw = compat.simulate_parts(simulate_one)
    models = kw.get("models") or []
    if kind is None or not models or not all(isinstance(m, EmulatorModel) for m in models):
        return None, {}
    return kind, kw


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
        kind, kw = batch_kind(simulate_one)
        if kind is None:
            return super().sample_until_n_accepted(n, simulate_one, t, max_eval=max_eval,
                                                   all_accepted=all_accepted, ana_vars=ana_vars)
        with gc_paused():
            return self._sample_batched(n, kind == "prior", kw, kw["models"], max_eval)

    def _sample_batched(self, n: int, from_prior: bool, kw: dict, models: Sequence[EmulatorModel],
                        max_eval: float) -> Sample:
        sample = compat.empty_sample(self)
        weights = None
        if self.batched_weights and not from_prior:
            weights = DeferredWeights(*sampler_densities(kw))
        # likelihood mode with pyabc's StochasticAcceptor: the acceptance of a whole batch in array operations
        batched_accept = (weights is not None and type(kw.get("acceptor")) is pyabc.StochasticAcceptor
                          and type(kw.get("distance_function")) is MultinomialKernel
                          and compat.is_identity(kw.get("summary_statistics"))
                          and all(m.mode == "likelihood" and type(m).summary_statistics is pyabc.Model.summary_statistics
                                  for m in models))
        n_eval = n_acc = 0
        rate = 0.5
        while n_acc < n and n_eval < max_eval:
            want = (n - n_acc) / max(rate, 1e-3) * 1.2
            k = int(min(self.max_batch, max(self.min_batch, math.ceil(want))))
            if math.isfinite(max_eval):
                k = int(min(k, math.ceil(max_eval - n_eval)))  # as pyabc: evaluate while n_eval < max_eval
            props = bulk_proposals(k, kw, from_prior)
            if props is None:  # not the one-model, RV-prior, Gaussian-kernel case: pyabc's own, one at a time
                props = [_one_proposal(kw, from_prior) for _ in range(k)]
            if batched_accept and weights is not None:
                decided, accepted = accept_batch(props, models, kw, weights, sample, n - n_acc)
                n_eval += decided
                n_acc += accepted
                props = []
            for j, model in enumerate(models):  # each model's proposals in one emulator call
                model.prefill([theta for m_ss, theta in props if m_ss == j])
            for m_ss, theta in props:
                particle = judge(m_ss, theta, from_prior, kw, models, weights)
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


def judge(m_ss: int, theta: Any, from_prior: bool, kw: dict, models: Sequence[EmulatorModel],
          weights: DeferredWeights | None) -> Particle:
    """One proposal made into pyabc's Particle, as pyabc's simulate function does (from the prior: accepted with
    weight 1; else pyabc's evaluate_proposal, with `weights` deferring the weight when given)."""
    if from_prior:
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
            kind, kw = batch_kind(self.simulate_one)
            if kind is None:
                return self.simulate_one()
            self._queue = self._evaluate(self.batch, kind == "prior", kw)[::-1]
        return self._queue.pop()

    def _evaluate(self, k: int, from_prior: bool, kw: dict) -> list[Particle]:
        models = kw["models"]
        with gc_paused():
            props = bulk_proposals(k, kw, from_prior) or [_one_proposal(kw, from_prior) for _ in range(k)]
            weights = None if from_prior else DeferredWeights(*sampler_densities(kw))
            for j, model in enumerate(models):
                model.prefill([theta for m_ss, theta in props if m_ss == j])
            out = [judge(m_ss, theta, from_prior, kw, models, weights) for m_ss, theta in props]
            for model in models:
                model.clear_cache()
            if weights is not None:
                weights.resolve()
        return out


class _BatchedWorkers:
    """Mixin for pyabc's cluster samplers: the simulate function they ship to workers is a BatchedSimulateOne."""

    batch_size: int

    def sample_until_n_accepted(self, n, simulate_one, t, **kwargs):
        return super().sample_until_n_accepted(n, BatchedSimulateOne(simulate_one, self.batch_size), t,
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
    acceptor, t = kw["acceptor"], kw["t"]
    decided, accepted, acc_weight = stochastic_acceptance(compat.pdf_norm(acceptor, t), kw["eps"](t),
                                                          acceptor.apply_importance_weighting, density, needed)
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
