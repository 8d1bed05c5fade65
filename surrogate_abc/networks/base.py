"""Mass-action reaction networks with at most unimolecular reactants.

Such networks have propensities that are affine in the state, which gives three things for free:
a gillespy2 model for SSA, the chemical master equation's transitions for the exact FSP solver, and
closed-form stationary means and covariances (the moment equations close; a Lyapunov equation).
A conservation law (for example an inactive + active promoter that always sum to 1) eliminates one
species, so the reduced state space is ergodic and the moment equations are non-singular.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import scipy.linalg


@dataclass(frozen=True)
class Reaction:
    """One mass-action reaction: propensity = rate * (count of the single reactant, or 1)."""

    name: str
    rate: str
    reactants: Mapping[str, int]
    products: Mapping[str, int]


@dataclass(frozen=True)
class AffineReaction:
    """A reaction in reduced coordinates: propensity(x) = const + coef . x, state change `shift`."""

    name: str
    shift: np.ndarray
    const: float
    coef: np.ndarray


@dataclass(frozen=True)
class MassActionNetwork:
    """A reaction network whose reactions have zero or one reactant molecule.

    `conserved` maps an eliminated species to (the species it pairs with, their constant total),
    e.g. {"gene_off": ("gene_on", 1)} means gene_off = 1 - gene_on.
    """

    name: str
    species: tuple[str, ...]
    reactions: tuple[Reaction, ...]
    conserved: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    kind: str = "reaction"
    engines: tuple[str, ...] = ("ssa", "fsp")
    default_engine: str = "ssa"

    def __post_init__(self) -> None:
        for r in self.reactions:
            if sum(r.reactants.values()) > 1:
                raise ValueError(f"reaction {r.name}: only zero- or first-order reactions are supported")
            for s in list(r.reactants) + list(r.products):
                if s not in self.species:
                    raise ValueError(f"reaction {r.name}: unknown species {s!r}")

    # ----------------------------------------------------------------- names
    @property
    def rate_names(self) -> tuple[str, ...]:
        """Rate parameter names, in the order of first use."""
        return tuple(dict.fromkeys(r.rate for r in self.reactions))

    @property
    def reduced_species(self) -> tuple[str, ...]:
        """State coordinates after eliminating conserved species (used by FSP and moments)."""
        return tuple(s for s in self.species if s not in self.conserved)

    def reduced_bounds(self) -> dict[str, int]:
        """Upper bounds implied by conservation laws (e.g. gene_on <= 1)."""
        return {kept: total for kept, total in self.conserved.values()}

    # ----------------------------------------------------------------- models
    def affine_reactions(self, rates: Mapping[str, float]) -> list[AffineReaction]:
        """Reactions in reduced coordinates with numeric propensity coefficients."""
        red = self.reduced_species
        idx = {s: i for i, s in enumerate(red)}
        out = []
        for r in self.reactions:
            k = float(rates[r.rate])
            shift = np.zeros(len(red), dtype=np.int64)
            for s, c in r.products.items():
                if s in idx:
                    shift[idx[s]] += c
            for s, c in r.reactants.items():
                if s in idx:
                    shift[idx[s]] -= c
            coef = np.zeros(len(red))
            const = 0.0
            if not r.reactants:
                const = k
            else:
                (s,) = r.reactants
                if s in self.conserved:
                    kept, total = self.conserved[s]
                    const = k * total
                    coef[idx[kept]] = -k
                else:
                    coef[idx[s]] = k
            out.append(AffineReaction(r.name, shift, const, coef))
        return out

    def stationary_moments(self, rates: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Exact stationary mean and covariance of the reduced species (closed moment equations)."""
        reacts = self.affine_reactions(rates)
        S = np.array([r.shift for r in reacts], dtype=float)  # (R, n)
        c = np.array([r.const for r in reacts])
        B = np.array([r.coef for r in reacts])  # (R, n)
        A = S.T @ B
        f = S.T @ c
        mean = np.linalg.solve(A, -f)
        prop = c + B @ mean
        D = (S.T * prop) @ S
        cov = scipy.linalg.solve_continuous_lyapunov(A, -D)
        return mean, cov

    def timescale(self, rates: Mapping[str, float]) -> float:
        """Slowest reaction timescale max_r 1/rate_r (the SSA sampling interval is based on it)."""
        return max(1.0 / float(rates[n]) for n in self.rate_names)

    def gillespy2_model(self, rates: Mapping[str, float], initial: Mapping[str, int]):
        """A gillespy2 Model with these rates and initial counts."""
        ensure_scons_on_path()
        import gillespy2

        model = gillespy2.Model(name=self.name)
        model.add_parameter([gillespy2.Parameter(name=n, expression=float(rates[n])) for n in self.rate_names])
        model.add_species(
            [gillespy2.Species(name=s, initial_value=int(initial.get(s, 0)), mode="discrete") for s in self.species]
        )
        model.add_reaction(
            [
                gillespy2.Reaction(name=r.name, reactants=dict(r.reactants), products=dict(r.products), rate=r.rate)
                for r in self.reactions
            ]
        )
        return model


def ensure_scons_on_path() -> None:
    """gillespy2 compiles its C++ solver with SCons, found on PATH. Put this interpreter's bin first,
    so `.venv/bin/surrogate-abc` works without an activated venv."""
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        os.environ["PATH"] = os.pathsep.join([bindir, *parts])


def check_state_names(network: MassActionNetwork, names: Sequence[str], what: str) -> None:
    """Raise ValueError naming an unknown species."""
    for n in names:
        if n not in network.species:
            raise ValueError(f"unknown species {n!r} in {what}; the {network.name} network has {', '.join(network.species)}")
