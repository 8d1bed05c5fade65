"""Exact stationary distributions of mass-action networks by finite state projection (FSP).

The chemical master equation of a network with affine propensities is restricted to a box
prod_i [0, N_i) of the network's reduced coordinates. Transitions that would leave the box are
dropped together with their diagonal term (a *reflecting* truncation), so the box chain is itself a
proper CTMC with generator Q. Its stationary distribution solves Q^T p = 0.

States are numbered with the largest dimension outermost ("levels"); every reaction moves that
coordinate by at most one, so Q is block tri-diagonal with blocks of size b = N / levels. For
b <= LEVEL_BLOCK_MAX (protein-only boxes: b = 2 x mRNA extent) the system is solved by block
elimination over the levels (`level_stationary`, a numba kernel: O(levels b^3) flops, no fill
beyond the dense blocks); wider boxes (joint mRNA x protein) use SuperLU on the sparse system with
one state's probability fixed to 1 (`stationary`). Both check the relative residual.

The box starts from the exact stationary moments (a negative-binomial tail quantile, see
`initial_box`) and grows (x2 per dimension) while the probability in a dimension's outer boundary
layer exceeds `tol`, subject to `max_states`. Dimensions whose marginal tail is far below `tol` are
trimmed when that makes room for growth elsewhere.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from ..config import FSPSettings
from ..errors import UserError
from ..networks.reaction import AffineReaction, ReactionNetwork
from .fsp_box import MIN_STATES, fit_to_budget, initial_box, marginals, next_box, tail_estimate, trimmed_extent
from .fsp_solvers import PERMC_SPEC, level_stationary, stationary

MAX_ROUNDS = 12         # box refinements (each one is a sparse solve)
BAND_NATURAL = 64             # up to this bandwidth the natural (banded) order is fastest
LEVEL_BLOCK_MAX = 128         # block elimination over levels up to this block size, SuperLU above


@dataclass(frozen=True)
class FSPResult:
    """Stationary marginal of the observed species on 0..cap-1 and what lies outside it."""

    pmf: np.ndarray              # (cap,) or (cap_m, cap_p), float64, in the order of `observed`
    overflow: float              # probability at counts >= cap on any observed axis (inside the box)
    tail_mass: float             # estimated probability outside the FSP box (see `tail_estimate`)
    truncation: tuple[int, ...]  # states per reduced species in the final box (0: outside the sub-chain solved)
    wall_time: float             # seconds spent in solve_stationary
    observed_box: tuple[int, ...] = ()  # states per observed species in the final box, in the order of `observed`


# ------------------------------------------------------------------------------ state space
def box_order(box: Sequence[int]) -> tuple[int, ...]:
    """Axis permutation used to flatten states: largest dimension outermost, smallest innermost.

    With C-order flattening of the permuted box the generator is banded with bandwidth
    prod(all extents but the largest), the smallest achievable by a lexicographic order.
    """
    return tuple(sorted(range(len(box)), key=lambda i: (-box[i], i)))


def generator(network: ReactionNetwork, rates: Mapping[str, float], box: Sequence[int]) -> sp.csr_matrix:
    """Generator Q (N x N, rows sum to 0) of the reflecting FSP truncation on prod [0, box_i).

    States are numbered by C-order flattening of the box permuted by `box_order(box)`;
    `state_grid` gives the matching coordinates. Off-box transitions are dropped with their diagonal.
    """
    return reaction_generator(lattice(network, rates), box)


def lattice(network: ReactionNetwork, rates: Mapping[str, float]) -> list:
    """The network's reactions in reduced coordinates: affine ones (exact moments, cheap grids) where every
    propensity is affine, otherwise propensities evaluated from their expressions."""
    return network.affine_reactions(rates) if network.affine else network.lattice_reactions(rates)


def reaction_generator(reactions: Sequence[AffineReaction], box: Sequence[int]) -> sp.csr_matrix:
    """`generator` for a list of affine reactions in the coordinates of `box`."""
    rows, cols, vals = _transitions(reactions, box)
    n = int(np.prod(box))
    out = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    out.sum_duplicates()
    return out


def state_grid(box: Sequence[int]) -> np.ndarray:
    """(N, d) coordinates (reduced-species order) of the states, in the numbering of `generator`."""
    order = box_order(box)
    grids = np.indices([box[i] for i in order]).reshape(len(box), -1)
    x = np.empty_like(grids)
    x[list(order)] = grids
    return x.T


def _transitions(reactions, box):
    """(rows, cols, vals) of Q in COO form: off-diagonal rates and the matching negative diagonal."""
    src, dst, rate, diag = _offdiag(reactions, box)
    n = diag.shape[0]
    idx = np.arange(n, dtype=np.int64)
    return np.concatenate([src, idx]), np.concatenate([dst, idx]), np.concatenate([rate, diag])


def _reaction_props(reactions, box):
    """Per moving reaction: (flattened propensities with off-box moves zeroed, index offset, shift).

    States are numbered as in `generator`; reaction r moves state k to k + offset when props[k] > 0.
    """
    box = [int(b) for b in box]
    order = box_order(box)
    perm_box = [box[i] for i in order]
    stride_perm = np.cumprod([1] + perm_box[::-1][:-1])[::-1]
    stride = np.empty(len(box), dtype=np.int64)
    stride[list(order)] = stride_perm
    # coordinate along axis i as a broadcastable 1-D grid in the permuted layout (no (N, d) array)
    coords = [np.arange(box[i], dtype=np.float64).reshape([-1 if j == i else 1 for j in order])
              for i in range(len(box))]
    out = []
    for r in reactions:
        if not r.shift.any():
            continue
        prop = r.on_grid(coords, perm_box)
        for i in np.flatnonzero(r.shift):  # the reflecting wall: drop moves that leave the box
            sl = [slice(None)] * len(box)
            sh = int(r.shift[i])
            sl[order.index(i)] = slice(box[i] - sh, None) if sh > 0 else slice(0, -sh)
            prop[tuple(sl)] = 0.0
        prop = prop.ravel()
        np.maximum(prop, 0.0, out=prop)
        out.append((prop, int(stride @ r.shift), r.shift))
    return out


def _offdiag(reactions, box):
    """Off-diagonal transitions (src, dst, rate) of the reflecting truncation and the diagonal of Q."""
    n = math.prod(int(b) for b in box)
    srcs, dsts, rates = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
    diag = np.zeros(n)
    for prop, off, _ in _reaction_props(reactions, box):
        s = np.flatnonzero(prop > 0)
        srcs.append(s)
        dsts.append(s + off)
        rates.append(prop[s])
        diag -= prop
    return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(rates), diag


# ------------------------------------------------------------------------------ entry point
def solve_stationary(network: ReactionNetwork, rates: Mapping[str, float], observed: Sequence[str],
                     caps: Sequence[int], settings: FSPSettings) -> FSPResult:
    """Stationary marginal of `observed` on 0..cap-1 by adaptive reflecting FSP.

    pmf.sum() + overflow == 1 (the truncated chain's solution is normalised); tail_mass is the
    boundary-layer estimate of the mass the final box could not hold (`tail_estimate`, summed over
    dimensions), which stays above settings.tol only when max_states stopped the growth.
    """
    t0 = time.perf_counter()
    species = network.reduced_species
    for s in observed:
        if s not in species:
            raise UserError(f"FSP: observed species {s!r} is not a state coordinate of network {network.name} "
                            f"({', '.join(species)}); observe one of those in [histogram]")
    if len(caps) != len(observed) or any(int(c) < 1 for c in caps):
        raise UserError(f"FSP: need one positive cap per observed species, got caps={list(caps)}")
    bounds = network.reduced_bounds()
    free = [s not in bounds for s in species]
    feasible = network.feasible if network.laws else None
    axes = [species.index(s) for s in observed]
    if not network.affine:
        # no closed moments: the box starts at 16 states per free coordinate (the conservation bounds for the
        # others) and grows from the boundary mass itself
        box = [bounds[s] + 1 if s in bounds else max(MIN_STATES, 16) for s in species]
        p, box, layer = _adaptive(network.lattice_reactions(rates), box, free, [b // 4 for b in box], settings,
                                  feasible)
        return _result(p, box, layer, axes, caps, t0)
    reactions = network.affine_reactions(rates)
    mean, _ = network.stationary_moments(rates)
    obs_dims = sorted({j for s in observed for j in closure(reactions, species.index(s))})
    if len(obs_dims) < len(species) and not network.laws_tie_coordinates():
        # the observed species and what drives them form a chain of their own (the gene model's mRNA):
        # its stationary law is the exact marginal, on a much smaller box
        sub = [species[j] for j in obs_dims]
        box = [b for j, b in enumerate(initial_box(network, rates, settings.tol)) if j in obs_dims]
        p, box, layer = _adaptive(project(reactions, obs_dims), box, [free[j] for j in obs_dims],
                                  [mean[j] for j in obs_dims], settings)
        return _result(p, box, layer, [sub.index(s) for s in observed], caps, t0,
                       in_network=(obs_dims, len(species)))
    box = initial_box(network, rates, settings.tol)
    if math.prod(sorted(box)[:-1]) > LEVEL_BLOCK_MAX:  # sparse-LU boxes: the cheaper moment rule first
        box = initial_box(network, rates, None)
    # Dimensions that a proper subset of the species drives alone (mRNA in the gene model) get their
    # extent from the exact marginal of that cheap sub-chain, not from the moments.
    for dims in sorted({closure(reactions, i) for i in range(len(box)) if free[i]}):
        if len(dims) < len(box):
            sub = _adaptive(project(reactions, dims), [box[i] for i in dims], [free[i] for i in dims],
                            [mean[i] for i in dims], settings)[0]
            for j, m in zip(dims, marginals(sub)):
                if free[j]:
                    box[j] = trimmed_extent(m, settings.tol)
    p, box, layer = _adaptive(reactions, box, free, mean, settings, feasible)
    return _result(p, box, layer, axes, caps, t0)


def _result(p: np.ndarray, box, layer: np.ndarray, axes: Sequence[int], caps: Sequence[int], t0: float,
            in_network: tuple[Sequence[int], int] | None = None) -> FSPResult:
    """The solve's FSPResult. `in_network` = (the reduced species the box's axes are, how many there are) when a
    sub-chain was solved: `truncation` stays one entry per reduced species, 0 for those outside the sub-chain."""
    pmf, overflow = _observed_pmf(p, axes, [int(c) for c in caps])
    truncation = [int(b) for b in box]
    if in_network is not None:
        dims, n_species = in_network
        truncation = [0] * n_species
        for j, b in zip(dims, box):
            truncation[j] = int(b)
    return FSPResult(pmf=pmf, overflow=overflow, tail_mass=float(layer.sum()), truncation=tuple(truncation),
                     observed_box=tuple(int(box[a]) for a in axes),
                     wall_time=time.perf_counter() - t0)


def closure(reactions: Sequence[AffineReaction], i: int) -> tuple[int, ...]:
    """Smallest set of coordinates containing i whose reactions' propensities depend on the set only.

    Its marginal is then a Markov chain of its own (`project`)."""
    dims = {i}
    while True:
        grown = set(dims)
        for r in reactions:
            if any(r.shift[j] for j in dims):
                grown |= set(r.depends)
        if grown == dims:
            return tuple(sorted(dims))
        dims = grown


def project(reactions: Sequence[AffineReaction], dims: Sequence[int]) -> list[AffineReaction]:
    """The reactions that move the closed coordinate set `dims`, restricted to those coordinates."""
    d = list(dims)
    return [r.restrict(d) for r in reactions if r.shift[d].any()]


def _adaptive(reactions, box, free, mean, settings: FSPSettings, feasible=None):
    """Solve on a growing box (see module docstring): (p on the final box, final box, layer masses).

    `feasible(coords)`, where given, marks the states whose eliminated species are non-negative; the others
    are left out of the solve (they hold no probability)."""
    box = fit_to_budget(list(box), free, settings.max_states)
    for _ in range(MAX_ROUNDS):
        x_fix = [min(max(int(round(mean[i])), 0), box[i] - 1) for i in range(len(box))]
        p = _solve_box(reactions, box, x_fix, feasible)
        margs = marginals(p)
        layer = tail_estimate(margs, free)
        new = next_box(box, margs, layer, free, settings)
        if new is None:
            break
        box = new
    return p, box, layer


def _solve_box(reactions, box, x_fix, feasible=None) -> np.ndarray:
    """Stationary distribution on the box as an array of shape `box` (reduced-species axis order).

    Block elimination over the outermost (largest) dimension when the blocks are small, else SuperLU.
    """
    order = box_order(box)
    perm_box = [box[i] for i in order]
    block = math.prod(perm_box[1:])
    mask = None
    if feasible is not None:
        coords = [np.arange(box[i], dtype=np.float64).reshape([-1 if j == i else 1 for j in order])
                  for i in range(len(box))]
        mask = np.broadcast_to(feasible(coords), perm_box).ravel()
        if mask.all():
            mask = None
    if mask is not None:
        return np.transpose(_solve_masked(reactions, box, mask).reshape(perm_box), np.argsort(order))
    p = None
    if block <= LEVEL_BLOCK_MAX:
        rp = _reaction_props(reactions, box)
        try:
            p = level_stationary([x[0] for x in rp], [x[1] for x in rp], block,
                                 [int(x[2][order[0]]) for x in rp])
        except (RuntimeError, ValueError):
            p = None  # fall back on the sparse direct solve
    if p is None:
        fixed = int(np.ravel_multi_index([x_fix[i] for i in order], perm_box))
        permc = "NATURAL" if block <= BAND_NATURAL else PERMC_SPEC
        src, dst, rate, diag = _offdiag(reactions, box)
        n = diag.shape[0]
        idx = np.arange(n, dtype=np.int64)
        q = sp.csr_matrix((np.concatenate([rate, diag]), (np.concatenate([src, idx]), np.concatenate([dst, idx]))),
                          shape=(n, n))
        p = stationary(q, fixed=fixed, permc_spec=permc)
    return np.transpose(p.reshape(perm_box), np.argsort(order))


def _solve_masked(reactions, box, mask: np.ndarray) -> np.ndarray:
    """Stationary vector on the box with the states outside `mask` left out (sparse direct solve)."""
    src, dst, rate, _ = _offdiag(reactions, box)
    keep = mask[src] & mask[dst]
    src, dst, rate = src[keep], dst[keep], rate[keep]
    idx = np.flatnonzero(mask)
    new = np.full(mask.shape[0], -1, dtype=np.int64)
    new[idx] = np.arange(idx.shape[0])
    n = idx.shape[0]
    diag = -np.bincount(new[src], weights=rate, minlength=n)
    q = sp.csr_matrix((np.concatenate([rate, diag]), (np.concatenate([new[src], np.arange(n)]),
                                                       np.concatenate([new[dst], np.arange(n)]))), shape=(n, n))
    out = np.zeros(mask.shape[0])
    out[idx] = stationary(q, fixed=0, permc_spec=PERMC_SPEC)
    return out


def _observed_pmf(p_box: np.ndarray, axes: Sequence[int], caps: Sequence[int]) -> tuple[np.ndarray, float]:
    """Marginal on `axes` (in that order), cut at caps: (pmf on 0..cap-1, mass at counts >= cap)."""
    others = tuple(i for i in range(p_box.ndim) if i not in axes)
    m = p_box.sum(axis=others)
    kept = sorted(axes)
    m = np.transpose(m, [kept.index(a) for a in axes])
    pmf = np.zeros(tuple(caps))
    sl = tuple(slice(0, min(c, n)) for c, n in zip(caps, m.shape))
    pmf[sl] = m[sl]
    outside = m.copy()
    outside[sl] = 0.0
    overflow = float(outside.sum())  # summed directly: exactly 0 when the caps cut nothing
    return pmf, overflow
