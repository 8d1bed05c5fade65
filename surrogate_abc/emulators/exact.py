"""ExactEmulator: the emulator interface with exactly computed distributions (no neural network).

It implements the emulator contract (`surrogate_abc.emulators.base.EmulatorLike`, shared behaviour in
`EmulatorBase`) so that the inference machinery can be built and tested without a trained model, and it is
the reference for emulator accuracy checks.

* gaussian_mixture toy: exact bin masses by CDF differences (`GaussianMixtureNetwork.bin_probabilities`).
* networks whose observed species has a closed-form law (`surrogate_abc.networks.closed_form`, recognised
  from the reactions): Poisson (birth-death; bin masses by CDF differences), Beta-Poisson (telegraph mRNA).
* any other reaction network: the exact FSP solver
  `surrogate_abc.simulate.fsp.solve_stationary`, one parameter set at a time (slow; small problems only).

Select it on the command line with `surrogate-abc infer DATA --emulator exact:<protocol name or .toml>`;
it is also useful for users with small models whose FSP solution is cheap.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
from scipy import stats

from ..config import Protocol, load_protocol
from ..errors import UserError
from ..networks import GaussianMixtureNetwork, ReactionNetwork, find_closed_form
from .base import EmulatorBase


def count_bin_index(edges: np.ndarray, cap: int) -> np.ndarray:
    """Bin index of each integer 0..cap-1 on `edges` (a value k is in bin i when edges[i] <= k < edges[i+1]);
    -1 for integers outside all bins (they belong to the overflow mass)."""
    k = np.arange(cap, dtype=float)
    idx = np.searchsorted(np.asarray(edges, float), k, side="right") - 1
    idx[(k < edges[0]) | (k >= edges[-1])] = -1
    return idx


def bin_integer_pmf(pmf: np.ndarray, edges: tuple[np.ndarray, ...]) -> tuple[np.ndarray, float]:
    """Sum a pmf on the integer grid (1-D (K,) or 2-D (Km, Kp)) into bins; returns (binned, overflow)
    where overflow = 1 - binned.sum() (everything not inside a bin, including mass beyond the grid)."""
    out = pmf
    for ax, e in enumerate(edges):
        idx = count_bin_index(e, out.shape[ax])
        moved = np.moveaxis(out, ax, 0)
        keep = idx >= 0
        binned = np.zeros((len(e) - 1,) + moved.shape[1:])
        np.add.at(binned, idx[keep], moved[keep])
        out = np.moveaxis(binned, 0, ax)
    out = np.clip(out, 0.0, None)
    return out, float(max(1.0 - out.sum(), 0.0))


class ExactEmulator(EmulatorBase):
    """Exact bin probabilities of a protocol's observed species (see the module docstring)."""

    def __init__(self, protocol: Protocol, source: str = ""):
        self.protocol = protocol
        self.source = source or f"exact:{protocol.name}"
        self.metadata: dict[str, Any] = {"type": "exact", "protocol": protocol.name}
        net = protocol.network
        self._law = find_closed_form(net, protocol.species) if isinstance(net, ReactionNetwork) else None
        if isinstance(net, GaussianMixtureNetwork):
            self._engine = self._pmf_gaussian
        elif self._law is not None:
            self._engine = self._pmf_poisson if self._law.law == "poisson" else self._pmf_closed
        else:
            self._engine = self._pmf_fsp

    @property
    def uses_fsp(self) -> bool:
        """True when distributions come from the FSP solver (no closed form): slow, one solve per set."""
        return self._engine == self._pmf_fsp

    @property
    def device(self) -> str:
        return "cpu"

    def to(self, device: Any) -> "ExactEmulator":
        """No-op (exact computations run on the CPU with numpy)."""
        return self

    @property
    def sha256(self) -> str:
        """Hash identifying this emulator: the SHA-256 of the protocol's TOML text."""
        return hashlib.sha256(self.protocol.toml_text.encode()).hexdigest()

    def _flat_probs(self, arr: np.ndarray) -> np.ndarray:
        probs, overflow = self._engine(arr)
        p = np.concatenate([probs.reshape(len(arr), -1), np.asarray(overflow)[:, None]], axis=1)
        p = np.clip(p, 0.0, None)
        return p / p.sum(axis=1, keepdims=True)

    # ------------------------------------------------------------------ engines
    def _pmf_gaussian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = self.protocol.rates(theta)
        return self.protocol.network.bin_probabilities(params, self.edges[0])

    def _pmf_poisson(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rates = self.protocol.rates(theta)
        names = self.protocol.rate_names
        roles = dict(self._law.roles)
        lam = rates[:, names.index(roles["birth"])] / rates[:, names.index(roles["death"])]
        e = self.edges[0]
        # P(X < e) = P(X <= ceil(e) - 1) for integer X. Differences of the CDF below the median and of the
        # survival function above it keep the tail bins accurate to relative precision.
        k = np.ceil(e)[None, :] - 1
        below = stats.poisson.cdf(k, lam[:, None])
        above = stats.poisson.sf(k, lam[:, None])
        use_sf = below[:, :-1] > 0.5
        probs = np.where(use_sf, above[:, :-1] - above[:, 1:], below[:, 1:] - below[:, :-1])
        probs = np.clip(probs, 0.0, None)
        overflow = below[:, 0] + above[:, -1]
        return probs, overflow

    def _caps(self) -> tuple[int, ...]:
        return tuple(int(a.cap) if a.cap is not None else int(math.ceil(a.edges[-1])) for a in self.protocol.axes)

    def _pmf_closed(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rates = self.protocol.rates(theta)
        cap = self._caps()[0]
        probs = np.zeros((len(theta), len(self.edges[0]) - 1))
        overflow = np.zeros(len(theta))
        for i, row in enumerate(rates):
            pmf = self._law.pmf(dict(zip(self.protocol.rate_names, row)), cap)
            probs[i], overflow[i] = bin_integer_pmf(pmf, self.edges)
        return probs, overflow

    def _pmf_fsp(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            from ..simulate.fsp import solve_stationary
        except ImportError as exc:
            raise UserError(f"emulator {self.source}: the exact FSP solver (surrogate_abc.simulate.fsp) is not "
                            f"available ({exc}); use a trained emulator") from None
        rates = self.protocol.rates(theta)
        caps = self._caps()
        shape = tuple(len(e) - 1 for e in self.edges)
        probs = np.zeros((len(theta),) + shape)
        overflow = np.zeros(len(theta))
        for i, row in enumerate(rates):
            res = solve_stationary(self.protocol.network, dict(zip(self.protocol.rate_names, row)),
                                   self.species, caps, self.protocol.fsp)
            probs[i], overflow[i] = bin_integer_pmf(np.asarray(res.pmf, float), self.edges)
        return probs, overflow


def exact_emulator(spec: str) -> ExactEmulator:
    """ExactEmulator from 'exact:<protocol name or .toml path>' (the prefix is optional)."""
    name = spec[len("exact:"):] if spec.startswith("exact:") else spec
    if not name:
        raise UserError("--emulator exact: needs a protocol, e.g. --emulator exact:configs/gene_protein.toml")
    return ExactEmulator(load_protocol(name), source=f"exact:{name}")
