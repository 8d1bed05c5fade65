"""The batch posterior of a block of genes: shared prior sets, then per-gene adaptive importance sampling.

1. Every gene's log-likelihood at the run's shared prior sets (scrambled Sobol points in the prior box, the
   same for every block) is one matrix product.
2. Each gene whose weights there are too uneven (ESS below `ess_target`) is refined: a Student-t proposal is
   fitted to its weighted samples, drawn from and evaluated, and all its samples are reweighted against the
   mixture of every proposal so far (`importance.AMISState`); all active genes of the block draw at once and
   share the emulator's calls. Refinement stops at `ess_target` or after `max_rounds` rounds.
3. Each gene reports its ESS; one below `min_ess` marks the gene for the per-gene ABC-SMC path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .importance import AMISState, Box, TMixture, normalised, systematic_resample
from .likelihood import GeneLikelihoods

KEEP_NATS = 20.0   # shared sets more than this far below a gene's best one are dropped (weight < 2e-9 each)
KEEP_MIN = 256     # ... but at least this many are kept (the first proposal is fitted to them, tempered)


@dataclass(frozen=True)
class BatchSettings:
    """Options of the batch method (`surrogate-abc infer TABLE --method batch`)."""

    shared_sets: int = 8192      # prior sets shared by all genes (a power of two: Sobol points)
    ess_target: float = 500.0    # refinement stops when a gene's ESS reaches this
    min_ess: float = 200.0       # below this after refinement: the gene is rerun with ABC-SMC
    max_rounds: int = 12         # proposals per gene at most
    first_draws: int = 192       # draws of a proposal fitted to tempered weights
    max_draws: int = 4096        # draws of one proposal at most
    draws: int = 1000            # equally weighted posterior draws kept per gene (posterior.nc)
    ppc_draws: int = 100         # posterior draws of the predictive check
    block_size: int = 256        # genes per block (resumable unit)
    kernels: int = 50            # t kernels of a proposal

    def fit_ess(self, d: int) -> float:
        """Samples a proposal's fit rests on (tempering makes the weights that even)."""
        return float(max(40, 15 * d))


@dataclass
class GenePosterior:
    """One gene's weighted samples on the sampling scale (z, normalised weights), its ESS and cost."""

    z: np.ndarray
    weights: np.ndarray
    ess: float
    evaluations: int
    rounds: int


def start_states(box: Box, shared_z: np.ndarray, shared_loglik: np.ndarray) -> list[AMISState]:
    """Each gene's AMIS state from the shared prior sets: the sets within KEEP_NATS of its best (at least
    KEEP_MIN of them; all of them for a gene whose likelihood is that flat, so nothing of weight is dropped)."""
    n = len(shared_z)
    states = []
    for ll in shared_loglik:
        order = np.argsort(ll)[::-1]
        n_keep = max(int(np.count_nonzero(ll >= ll.max() - KEEP_NATS)), min(KEEP_MIN, n))
        keep = order[:n_keep]
        states.append(AMISState.from_prior(box, shared_z[keep], ll[keep], n))
    return states


def refine_block(lik: GeneLikelihoods, box: Box, to_natural: Callable[[np.ndarray], np.ndarray],
                 shared_z: np.ndarray, shared_log_pmf: np.ndarray, settings: BatchSettings,
                 rng: np.random.Generator) -> list[GenePosterior]:
    """The batch posterior of every gene of `lik` (see the module docstring)."""
    states = start_states(box, shared_z, lik.shared(shared_log_pmf))
    d = len(box.low)
    floor = 1e-6 * (box.high - box.low)
    fit_ess = settings.fit_ess(d)
    ess_now = np.array([s.ess() for s in states])
    gain = np.full(len(states), np.nan)  # ESS gained per draw by the last proposal fitted at tau = 1
    rounds = np.zeros(len(states), dtype=np.int64)
    for _ in range(settings.max_rounds):
        active = np.flatnonzero(ess_now < settings.ess_target)
        if not len(active):
            break
        plans: list[tuple[int, TMixture, int, np.ndarray]] = []
        for a in active:
            prop = states[a].next_proposal(fit_ess, floor, settings.kernels, rng)
            m = _draws(states[a].last_tau, ess_now[a], gain[a], settings)
            z = prop.sample(m, rng)
            plans.append((int(a), prop, m, z[box.inside(z)]))
        genes = np.concatenate([np.full(len(z), g) for g, _, _, z in plans])
        zs = np.concatenate([z for _, _, _, z in plans])
        ll = lik.at(genes, to_natural(zs)) if len(zs) else np.zeros(0)
        start = 0
        for g, prop, m_g, z in plans:
            st = states[g]
            before, tau = ess_now[g], st.last_tau
            st.add(prop, m_g, z, ll[start:start + len(z)])
            start += len(z)
            ess_now[g] = st.ess()
            rounds[g] += 1
            if tau >= 1.0:
                gain[g] = max((ess_now[g] - before) / m_g, 0.02)
    return [GenePosterior(s.z, normalised(s.log_weights()), float(ess_now[i]), s.evaluations(), int(rounds[i]))
            for i, s in enumerate(states)]


def _draws(tau: float, ess_now: float, gain: float, settings: BatchSettings) -> int:
    """Draws of the next proposal: `first_draws` while tempering; then what the last round's ESS per draw says
    reaches the target (with a 10% margin), within [first_draws, max_draws]."""
    if tau < 1.0:
        return settings.first_draws
    per_draw = gain if np.isfinite(gain) else 0.5
    need = 1.1 * (settings.ess_target - ess_now) / per_draw
    return int(np.clip(need, settings.first_draws, settings.max_draws))


def equal_weight_draws(post: GenePosterior, n: int, rng: np.random.Generator) -> np.ndarray:
    """n equally weighted draws (sampling scale) by systematic resampling, in random order (systematic
    resampling returns them sorted by sample)."""
    return post.z[rng.permutation(systematic_resample(post.weights, n, rng))]


def gene_seed(seed: int, block: int) -> np.random.Generator:
    """The generator of one block: a block's result depends only on the seed and its index (resumable)."""
    return np.random.default_rng([int(seed), int(block), 25])


def shared_sets(box: Box, n: int, seed: int) -> np.ndarray:
    """The run's shared prior sets on the sampling scale."""
    return box.uniform(n, seed=int(np.random.default_rng([int(seed), 0, 25]).integers(2**31)))
