"""Stochastic simulation (gillespy2's C++ SSA) of one long trajectory per parameter set, and count binning.

The C++ solver is compiled once per process with variable=True; each parameter set re-runs the same
executable with its rates and initial counts passed as `variables`. A set's stationary sample is the
trajectory after a burn-in, read every dt = max(1, ceil(slowest timescale)) so that consecutive samples
are close to independent.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ..networks.reaction import ReactionNetwork, ensure_scons_on_path

INT31 = (1 << 31) - 1


def set_seed(seed: int, index: int) -> int:
    """The SSA seed of set `index`: a positive int31 that depends only on (seed, index)."""
    state = int(np.random.SeedSequence([int(seed) & ((1 << 64) - 1), int(index)]).generate_state(1)[0])
    return state % INT31 + 1  # gillespy2 wants 1 <= seed; the C++ side stores it in an int


def set_seeds(seed: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """set_seed for many indices, as uint64."""
    return np.array([set_seed(seed, int(i)) for i in indices], dtype=np.uint64)


def sampling_interval(network: ReactionNetwork, rates: Mapping[str, float], interval: float | None = None) -> float:
    """The time between recorded samples: `interval` when given (the protocol's [ssa] interval), else
    dt = max(1, ceil(network.timescale(rates)))."""
    if interval is not None:
        return float(interval)
    return max(1, int(math.ceil(network.timescale(rates))))


def count_grid(series: np.ndarray, caps: Sequence[int]) -> tuple[np.ndarray, int]:
    """Histogram integer samples (S, k) on the support 0..cap-1 of each column (k = 1 or 2).

    Returns (grid int64 of shape caps, overflow) where overflow counts samples at or beyond a cap on any
    axis, so grid.sum() + overflow == S.
    """
    x = np.asarray(series)
    if x.ndim == 1:
        x = x[:, None]
    caps = [int(c) for c in caps]
    if x.shape[1] != len(caps) or len(caps) not in (1, 2):
        raise ValueError(f"series has {x.shape[1]} columns but {len(caps)} caps were given (1 or 2 supported)")
    x = x.astype(np.int64, copy=False)
    if np.any(x < 0):
        raise ValueError("negative counts in an SSA series")
    if len(caps) == 1:  # one pass: clip to cap, the last cell collects the overflow
        b = np.bincount(np.minimum(x[:, 0], caps[0]), minlength=caps[0] + 1)
        return b[: caps[0]].astype(np.int64), int(b[caps[0]])
    inside = np.all(x < np.asarray(caps), axis=1)
    xi = x[inside]
    flat = xi[:, 0] * caps[1] + xi[:, 1]
    grid = np.bincount(flat, minlength=int(np.prod(caps))).astype(np.int64).reshape(caps)
    return grid, int(x.shape[0] - xi.shape[0])


class SSASimulator:
    """One compiled gillespy2 SSACSolver for a network, reused for every parameter set in this process."""

    def __init__(self, network: ReactionNetwork, observed: Sequence[str]):
        self.network = network
        self.observed = tuple(observed)
        self._solver = None

    def ensure_compiled(self, rates: Mapping[str, float], initial: Mapping[str, int]) -> None:
        """Compile the C++ solver (seconds) unless done; any rates work, every run overrides them."""
        if self._solver is not None:
            return
        ensure_scons_on_path()
        import gillespy2

        model = self.network.gillespy2_model(rates, initial)
        self._solver = gillespy2.SSACSolver(model=model, variable=True)

    def trajectory(self, rates: Mapping[str, float], initial: Mapping[str, int], samples: int,
                   burn_in_intervals: int, seed: int, interval: float | None = None) -> np.ndarray:
        """Observed counts (samples, k) int64 read every dt after burn_in_intervals * dt of burn-in."""
        rates = {k: float(rates[k]) for k in self.network.rate_names}
        initial = {s: int(initial.get(s, 0)) for s in self.network.species}
        self.ensure_compiled(rates, initial)
        dt = sampling_interval(self.network, rates, interval)
        steps = int(burn_in_intervals) + int(samples)
        solver = self._solver
        assert solver is not None  # ensure_compiled made it
        solver.model.tspan = None  # a previous run stored its timespan on the model; give t/increment anew
        res = solver.run(t=steps * dt, increment=dt, seed=int(seed), variables={**rates, **initial})
        traj = res[0]
        cols = [np.rint(np.asarray(traj[s])[-samples:]).astype(np.int64) for s in self.observed]
        out = np.stack(cols, axis=1)
        if out.shape[0] != samples:  # pragma: no cover - guards against a gillespy2 timespan change
            raise RuntimeError(f"gillespy2 returned {out.shape[0]} samples, expected {samples}")
        return out

    def histogram(self, rates: Mapping[str, float], initial: Mapping[str, int], samples: int,
                  burn_in_intervals: int, seed: int, caps: Sequence[int], keep_raw: bool = False,
                  interval: float | None = None
                  ) -> tuple[np.ndarray, int, np.ndarray | None]:
        """(grid, overflow, raw series or None) for one parameter set; see count_grid."""
        series = self.trajectory(rates, initial, samples, burn_in_intervals, seed, interval)
        grid, overflow = count_grid(series, caps)
        return grid, overflow, (series.astype(np.int32) if keep_raw else None)
