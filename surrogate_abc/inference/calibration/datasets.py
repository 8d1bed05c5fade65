"""Exact calibration datasets: cells drawn from the closed-form law, the gene model's generating-function law
or the FSP solution at a parameter set, written as observed.h5 with the true parameters as attributes."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

EXACT_TAIL_MASS = 1e-3   # a reference whose FSP truncation missed more than this is not exact (as in training)


class ExactCounts(NamedTuple):
    """The exact law of the observed counts at one parameter set on a grid 0..cap-1 per species."""
    pmf: np.ndarray          # (cap,) or (cap_m, cap_p)
    overflow: float          # mass beyond the grid
    tail_mass: float         # mass FSP could not place (outside its largest box); 0 for a closed form; the
                             # generating-function law's estimated error per probability


def sample_cells(pmf: np.ndarray, overflow: float, n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """n_cells draws (n_cells, k) from a pmf on the integer grid of shape caps (k = pmf.ndim) plus an overflow
    mass; an overflow cell gets the count `caps` on every axis (beyond the grid, so beyond any edge inside it)."""
    pmf = np.asarray(pmf, float)
    p = np.concatenate([np.clip(pmf.ravel(), 0, None), [max(float(overflow), 0.0)]])
    idx = rng.choice(p.size, size=int(n_cells), p=p / p.sum())
    out = np.empty((int(n_cells), pmf.ndim), np.int64)
    inside = idx < pmf.size
    out[inside] = np.stack(np.unravel_index(idx[inside], pmf.shape), axis=1)
    out[~inside] = np.asarray(pmf.shape, np.int64)
    return out


def exact_counts_pmf(protocol: Any, theta: np.ndarray, caps: Sequence[int]) -> ExactCounts:
    """ExactCounts at one parameter set: the closed-form law where the network has one
    (networks.find_closed_form), the generating-function law of the gene model's (mRNA, protein)
    (simulate/pgf.py; tail_mass its estimated error per probability, ~1e-9), else the FSP solver (whose
    tail_mass says how far from exact it is)."""
    from ...networks import find_closed_form

    rates = dict(zip(protocol.rate_names, protocol.rates(np.atleast_2d(theta))[0]))
    caps = tuple(int(c) for c in caps)
    law = find_closed_form(protocol.network, protocol.species)
    if law is not None:
        pmf = np.clip(np.asarray(law.pmf(rates, caps[0]), float), 0, None)
        return ExactCounts(pmf, float(max(1.0 - pmf.sum(), 0.0)), 0.0)
    from ...simulate.pgf import match_gene, observed_window

    roles = match_gene(protocol.network, protocol.species)
    if roles is not None:  # the gene model's (mRNA, protein): exact over the whole prior, bursty corner included
        g = observed_window(roles, protocol.species, rates, caps)
        return ExactCounts(g.pmf, float(g.overflow), float(g.error))
    from ...simulate.fsp import solve_stationary

    res = solve_stationary(protocol.network, rates, protocol.species, caps, protocol.fsp)
    return ExactCounts(np.asarray(res.pmf, float), float(res.overflow), float(res.tail_mass))


def write_observed(path: Path, species: Sequence[str], counts: np.ndarray, truth: dict[str, float],
                   protocol: str, description: str = "", attrs: dict[str, float] | None = None) -> None:
    """observed.h5 in surrogate_abc.data.observed's layout: one int64 dataset per species, true_<param> attrs
    (and any further attrs)."""
    import h5py

    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for j, s in enumerate(species):
            f.create_dataset(s, data=np.asarray(counts[:, j], np.int64))
        for k, v in truth.items():
            f.attrs[f"true_{k}"] = float(v)
        f.attrs["protocol"] = protocol
        f.attrs["description"] = description
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    os.replace(tmp, path)


def dataset_caps(protocol: Any, edges: Sequence[np.ndarray] | None = None) -> tuple[int, ...]:
    """Grid of the exact pmf: the protocol's caps, raised to the emulator's last edges where those are larger."""
    caps = [int(a.cap) for a in protocol.axes]
    if edges is not None:
        caps = [max(c, int(math.ceil(float(np.asarray(e)[-1])))) for c, e in zip(caps, edges)]
    return tuple(caps)


def make_dataset(protocol: Any, theta: np.ndarray, index: int, seed: int, n_cells: int, path: Path,
                 caps: Sequence[int] | None = None) -> ExactCounts:
    """Write n_cells draws from the exact law at theta to `path` (deterministic in (seed, index)), with its
    FSP tail mass as attribute `fsp_tail_mass`; returns the ExactCounts on `caps` (default: the protocol's)."""
    law = exact_counts_pmf(protocol, theta, caps or dataset_caps(protocol))
    rng = np.random.default_rng([int(seed), int(index), 1])
    counts = sample_cells(law.pmf, law.overflow, n_cells, rng)
    truth = dict(zip(protocol.param_names, map(float, theta)))
    exact = "the exact distribution" if law.tail_mass <= EXACT_TAIL_MASS else \
        f"the FSP distribution (not exact: {law.tail_mass:.2g} of the mass lay outside its box)"
    write_observed(path, protocol.species, counts, truth, protocol.name,
                   f"calibration dataset {index} (seed {seed}): {n_cells} cells from {exact}",
                   {"fsp_tail_mass": law.tail_mass})
    return law
