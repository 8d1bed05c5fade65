"""The engines behind `simulate`: which a protocol supports, and one parameter set at a time (SSA, FSP, closed form,
the gene model's generating function)."""
from __future__ import annotations

import time

import numpy as np

from ..config import Protocol
from ..errors import UserError
from ..networks import GaussianMixtureNetwork, ReactionNetwork, find_closed_form
from .fsp import solve_stationary
from .pgf import GeneRoles, match_gene, observed_window
from .results import RunSettings, SetResult
from .ssa import SSASimulator


def closed_form(protocol: Protocol):
    """The closed-form law of the protocol's observed species, or None."""
    net = protocol.network
    return find_closed_form(net, protocol.species) if isinstance(net, ReactionNetwork) else None


def gene_roles(protocol: Protocol) -> GeneRoles | None:
    """The gene-model roles of the protocol's (mRNA, protein) observation (simulate/pgf.py), or None."""
    net = protocol.network
    return match_gene(net, protocol.species) if isinstance(net, ReactionNetwork) else None


def available_engines(protocol: Protocol) -> tuple[str, ...]:
    """Engines that can compute this protocol: for reaction networks ssa and fsp, exact where the observed
    species has a closed-form law, pgf where (mRNA, protein) of a gene-shaped network are observed; for
    closed-form toys exact."""
    net = protocol.network
    if not isinstance(net, ReactionNetwork):
        return tuple(net.engines)
    return (("ssa", "fsp") + (("exact",) if closed_form(protocol) is not None else ())
            + (("pgf",) if gene_roles(protocol) is not None else ()))


def resolve_engine(protocol: Protocol, engine: str | None) -> str:
    """The engine to use: the network's default or a supported one; UserError otherwise."""
    net = protocol.network
    name = engine or net.default_engine
    engines = available_engines(protocol)
    if name not in engines:
        why = {"exact": " (no closed-form law is known for its observed species)",
               "pgf": " (pgf needs a two-state switch driving a first-order mRNA that makes a first-order protein, "
                      "both observed)"}.get(name, "")
        raise UserError(f"{protocol.source}: engine {name!r} is not supported by the {net.name} network "
                        f"(protocol {protocol.name}){why}; use --engine {' or '.join(engines)}")
    return name


def grid_kind(protocol: Protocol, engine: str) -> str:
    """What `grid` holds: SSA counts, an exact pmf on 0..cap-1, or (closed-form toys) bin masses."""
    if engine == "exact" and not isinstance(protocol.network, ReactionNetwork):
        return "binned_pmf"
    return "counts" if engine == "ssa" else "pmf"


def grid_layout(protocol: Protocol, engine: str) -> tuple[tuple[int, ...], type]:
    """(per-set grid shape, dtype) of an engine's output."""
    if grid_kind(protocol, engine) == "binned_pmf":
        return (protocol.axes[0].bins,), np.float64
    caps = tuple(a.count_cap for a in protocol.axes)
    return caps, (np.int64 if engine == "ssa" else np.float64)


# ------------------------------------------------------------------------------------------- engines
class SetEngine:
    """Computes one parameter set at a time (one instance per process; SSA compiles lazily)."""

    def __init__(self, protocol: Protocol, settings: RunSettings, rates: np.ndarray, initial: np.ndarray,
                 seeds: np.ndarray):
        self.protocol, self.settings = protocol, settings
        self.rates, self.initial, self.seeds = rates, initial, seeds
        # counts 0..cap-1 per axis: the axes of reaction networks count; closed-form toys' are continuous
        self.caps = [a.count_cap for a in protocol.axes] if isinstance(protocol.network, ReactionNetwork) else []
        self._ssa = SSASimulator(self._reactions(), protocol.species) if settings.engine == "ssa" else None
        self._law = closed_form(protocol) if settings.engine == "exact" else None
        self._gene = gene_roles(protocol) if settings.engine == "pgf" else None

    def _reactions(self) -> ReactionNetwork:
        """The protocol's reaction network, which ssa and fsp run (resolve_engine offers them for no other)."""
        net = self.protocol.network
        assert isinstance(net, ReactionNetwork), f"engine {self.settings.engine} needs a reaction network"
        return net

    def rate_map(self, i: int) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.protocol.rate_names, self.rates[i])}

    def compute(self, i: int) -> SetResult:
        """Simulate/solve set i."""
        eng = self.settings.engine
        if eng == "ssa":
            ssa = self._ssa
            assert ssa is not None  # made in __init__ for the ssa engine
            init = {s: int(v) for s, v in zip(self.protocol.network.species, self.initial[i])}
            ssa.ensure_compiled(self.rate_map(i), init)  # once per process, not counted as set time
            t0 = time.perf_counter()
            grid, over, raw = ssa.histogram(self.rate_map(i), init, self.settings.samples,
                                            self.protocol.ssa.burn_in_intervals, int(self.seeds[i]),
                                            self.caps, keep_raw=self.settings.keep_raw,
                                            interval=self.protocol.ssa.interval)
            return SetResult(i, grid, float(over), time.perf_counter() - t0, raw=raw)
        t0 = time.perf_counter()
        if eng == "fsp":
            r = solve_stationary(self._reactions(), self.rate_map(i), self.protocol.species, self.caps,
                                 self.protocol.fsp)
            return SetResult(i, np.asarray(r.pmf, dtype=np.float64), float(r.overflow), time.perf_counter() - t0,
                             tail_mass=float(r.tail_mass), truncation=tuple(int(t) for t in r.truncation))
        if self._gene is not None:
            return self._pgf(i, t0)
        if self._law is not None:
            pmf = self._law.pmf(self.rate_map(i), int(self.caps[0]))
            return SetResult(i, pmf, float(max(1.0 - pmf.sum(), 0.0)), time.perf_counter() - t0)
        net = self.protocol.network
        assert isinstance(net, GaussianMixtureNetwork)  # exact without a closed form: a closed-form toy
        probs, outside = net.bin_probabilities(self.rates[i:i + 1], self.protocol.axes[0].edges)
        return SetResult(i, probs[0], float(outside[0]), time.perf_counter() - t0)

    def _pgf(self, i: int, t0: float) -> SetResult:
        """The gene model's window pmf from its generating function; tail_mass holds its estimated error."""
        roles = self._gene
        assert roles is not None  # made in __init__ for the pgf engine
        r = observed_window(roles, self.protocol.species, self.rate_map(i), self.caps)
        return SetResult(i, r.pmf, r.overflow, time.perf_counter() - t0, tail_mass=r.error)
