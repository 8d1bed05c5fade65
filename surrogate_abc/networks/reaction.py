"""Reaction networks as data: species, reactions with mass-action rates or any propensity expression.

A network knows its stoichiometry, the conservation laws that follow from it (with totals from the
initial counts, `with_totals`), and gives the three things the engines need:
* a gillespy2 model for SSA (mass action up to first order through gillespy2's own mass action, every
  other propensity as a compiled custom propensity function);
* the propensities on a lattice of the reduced coordinates (the species that no law eliminates) for the
  exact FSP solver (`lattice_reactions`);
* where every propensity is affine in the counts, the closed stationary moment equations (a Lyapunov
  equation), which FSP uses to choose its first truncation.

Mass action follows the combinatorial convention: a reaction consuming n_s molecules of each species s
has propensity rate * prod_s C(x_s, n_s) (so 2 X -> ... has rate * X (X - 1) / 2).
"""
from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.linalg

from .conservation import ConservationLaw, bind_totals, conservation_laws
from .expressions import degree, evaluate, names_in, to_gillespy2


@dataclass(frozen=True)
class Reaction:
    """One reaction: mass action with parameter `rate`, or the propensity expression `propensity`."""

    name: str
    rate: str | None
    reactants: Mapping[str, int]
    products: Mapping[str, int]
    propensity: str | None = None

    @property
    def order(self) -> int:
        """Number of reactant molecules."""
        return int(sum(self.reactants.values()))

    @property
    def mass_action(self) -> bool:
        return self.propensity is None

    def propensity_expression(self) -> str:
        """The propensity as an expression of counts and parameters (mass action written out)."""
        if self.propensity is not None:
            return self.propensity
        terms = [str(self.rate)]
        for s, n in self.reactants.items():
            terms += [s if j == 0 else f"({s} - {j})" for j in range(int(n))]
            if n > 1:
                terms.append(f"(1 / {math.factorial(int(n))})")
        return " * ".join(terms)

    def change(self, species: Sequence[str]) -> np.ndarray:
        """State change (products - reactants) over `species`."""
        return np.array([int(self.products.get(s, 0)) - int(self.reactants.get(s, 0)) for s in species],
                        dtype=np.int64)


@dataclass(frozen=True)
class AffineReaction:
    """A reaction in reduced coordinates: propensity(x) = const + coef . x, state change `shift`."""

    name: str
    shift: np.ndarray
    const: float
    coef: np.ndarray

    @property
    def depends(self) -> tuple[int, ...]:
        return tuple(np.flatnonzero(self.coef).tolist())

    def on_grid(self, coords: Sequence[np.ndarray], shape: Sequence[int]) -> np.ndarray:
        """Propensity on a lattice given as broadcastable coordinate grids (a new array of `shape`)."""
        prop = np.full(shape, float(self.const))
        for i in np.flatnonzero(self.coef).tolist():
            prop += float(self.coef[i]) * coords[i]
        return prop

    def restrict(self, dims: Sequence[int]) -> "AffineReaction":
        d = list(dims)
        return AffineReaction(self.name, self.shift[d], self.const, self.coef[d])


@dataclass(frozen=True)
class LatticeReaction:
    """A reaction in reduced coordinates with any propensity: `fn(coords)` on broadcastable grids."""

    name: str
    shift: np.ndarray
    fn: Callable[[Sequence[np.ndarray]], np.ndarray] = field(compare=False)
    depends: tuple[int, ...] = ()

    def on_grid(self, coords: Sequence[np.ndarray], shape: Sequence[int]) -> np.ndarray:
        return np.array(np.broadcast_to(self.fn(coords), shape), dtype=float)


@dataclass(frozen=True)
class ReactionNetwork:
    """Species, reactions and (once bound to initial counts) conservation laws with their totals."""

    name: str
    species: tuple[str, ...]
    reactions: tuple[Reaction, ...]
    laws: tuple[ConservationLaw, ...] = ()
    description: str = ""
    kind: str = "reaction"
    default_initial: tuple[tuple[str, int], ...] = ()   # starting counts unless the protocol's [initial] says
    default_values: tuple[tuple[str, float], ...] = ()  # parameter values unless the protocol defines them

    def __post_init__(self) -> None:
        for r in self.reactions:
            for s in list(r.reactants) + list(r.products):
                if s not in self.species:
                    raise ValueError(f"reaction {r.name}: unknown species {s!r}")

    # ----------------------------------------------------------------- names
    @cached_property
    def rate_names(self) -> tuple[str, ...]:
        """Parameter names the propensities use (mass-action rates and symbols of custom propensities)."""
        names: list[str] = []
        for r in self.reactions:
            if r.propensity is None:
                names.append(str(r.rate))
            else:
                used = names_in(r.propensity) - set(self.species)
                names += [n for n in _names_in_order(r.propensity) if n in used]
        return tuple(dict.fromkeys(names))

    @property
    def mass_action_rates(self) -> tuple[str, ...]:
        """Rate names of mass-action reactions (these must be > 0; other parameters only finite)."""
        return tuple(dict.fromkeys(str(r.rate) for r in self.reactions if r.propensity is None))

    @property
    def positive(self) -> tuple[str, ...]:
        return self.mass_action_rates

    @property
    def engines(self) -> tuple[str, ...]:
        return ("ssa", "fsp", "exact", "pgf")

    @property
    def default_engine(self) -> str:
        return "ssa"

    def stoichiometry(self) -> np.ndarray:
        """(species, reactions) integer state changes."""
        if not self.reactions:
            return np.zeros((len(self.species), 0), dtype=np.int64)
        return np.stack([r.change(self.species) for r in self.reactions], axis=1)

    # ----------------------------------------------------------------- conservation
    def with_totals(self, initial: Mapping[str, int], keep: Sequence[str] = ()) -> "ReactionNetwork":
        """This network with its conservation laws bound to the totals of `initial` counts; species in `keep`
        (the observed ones) stay state coordinates where a law lets another species go instead."""
        laws = conservation_laws(self.species, self.stoichiometry(), prefer_kept=keep)
        return replace(self, laws=bind_totals(laws, initial))

    @property
    def eliminated(self) -> tuple[str, ...]:
        return tuple(law.eliminated for law in self.laws)

    @property
    def reduced_species(self) -> tuple[str, ...]:
        """State coordinates after eliminating one species per conservation law (FSP and moments use these)."""
        gone = set(self.eliminated)
        return tuple(s for s in self.species if s not in gone)

    def reduced_bounds(self) -> dict[str, int]:
        """Upper bounds of kept species that a law with non-negative coefficients implies (e.g. gene_on <= 1)."""
        out: dict[str, int] = {}
        for law in self.laws:
            if not law.nonnegative:
                continue
            for s, c in law.coefficients:
                if s != law.eliminated:
                    out[s] = min(out.get(s, law.total // c), law.total // c)
        return out

    def _eliminated_exprs(self, coords: Mapping[str, Any]) -> dict[str, Any]:
        """Counts of the eliminated species as functions of the kept ones."""
        out = {}
        for law in self.laws:
            c = dict(law.coefficients)
            rest = sum(v * coords[s] for s, v in c.items() if s != law.eliminated)
            out[law.eliminated] = (law.total - rest) / c[law.eliminated]
        return out

    def laws_tie_coordinates(self) -> bool:
        """True when a conservation law ties two or more reduced coordinates (then some lattice states are
        infeasible and no subset of the coordinates can be solved for on its own)."""
        return any(sum(s != law.eliminated for s, _ in law.coefficients) > 1 for law in self.laws)

    def feasible(self, coords: Sequence[np.ndarray]) -> np.ndarray | bool:
        """Where the eliminated species' counts are non-negative integers (True everywhere without laws)."""
        env = dict(zip(self.reduced_species, coords))
        ok: Any = True
        for v in self._eliminated_exprs(env).values():
            v = np.asarray(v, dtype=float)
            ok = ok & (v >= -1e-9) & (np.abs(v - np.rint(v)) < 1e-9)
        return ok

    # ----------------------------------------------------------------- propensities
    @cached_property
    def affine(self) -> bool:
        """Every propensity is affine in the counts (the moment equations close)."""
        return all(degree(r.propensity_expression(), self.species) <= 1 for r in self.reactions)

    def lattice_reactions(self, rates: Mapping[str, float]) -> list[LatticeReaction]:
        """Reactions in reduced coordinates with propensities evaluated by expression; moves that would make an
        eliminated species negative get propensity 0."""
        params = self._parameters(rates)
        out = []
        for r in self.reactions:
            expr = r.propensity_expression()
            out.append(LatticeReaction(r.name, self._reduced_shift(r), self._grid_fn(expr, params, r),
                                       self._depends(expr)))
        return out

    def _parameters(self, rates: Mapping[str, float]) -> dict[str, float]:
        return {k: float(rates[k]) for k in self.rate_names}

    def _reduced_shift(self, r: Reaction) -> np.ndarray:
        """The reaction's state change over the reduced coordinates."""
        return r.change(self.reduced_species)

    def _env(self, coords: Sequence[Any], params: Mapping[str, float]) -> dict[str, Any]:
        """Names an expression may use at lattice points: reduced coordinates, eliminated species, parameters."""
        env: dict[str, Any] = dict(zip(self.reduced_species, coords))
        env.update(self._eliminated_exprs(env))
        env.update(params)
        return env

    def _grid_fn(self, expr: str, params: Mapping[str, float], r: Reaction):
        elim_change = {s: int(r.products.get(s, 0)) - int(r.reactants.get(s, 0)) for s in self.eliminated}

        def fn(coords: Sequence[np.ndarray]) -> np.ndarray:
            env = self._env(coords, params)
            prop = np.maximum(evaluate(expr, env), 0.0)
            for s, d in elim_change.items():  # the move would leave the eliminated species below 0
                if d < 0:
                    prop = np.where(np.asarray(env[s]) + d < -1e-9, 0.0, prop)
            return np.nan_to_num(prop, nan=0.0, posinf=0.0)

        return fn

    def _depends(self, expr: str) -> tuple[int, ...]:
        red = self.reduced_species
        used = names_in(expr) & set(self.species)
        dims = set()
        for s in used:
            if s in red:
                dims.add(red.index(s))
            else:
                law = next(law for law in self.laws if law.eliminated == s)
                dims |= {red.index(k) for k, _ in law.coefficients if k != s}
        return tuple(sorted(dims))

    def affine_reactions(self, rates: Mapping[str, float]) -> list[AffineReaction]:
        """Reactions in reduced coordinates with numeric propensity coefficients (affine networks only)."""
        if not self.affine:
            raise ValueError(f"network {self.name}: propensities are not affine in the counts")
        n = len(self.reduced_species)
        params = self._parameters(rates)
        out = []
        for r in self.reactions:
            expr = r.propensity_expression()

            def at(point: Sequence[float]) -> float:  # no clip at 0: k (1 - x) at x = 1 stays exactly 0
                return float(np.asarray(evaluate(expr, self._env(point, params))).ravel()[0])

            const = at([0.0] * n)
            coef = np.array([at([1.0 if j == i else 0.0 for j in range(n)]) - const for i in range(n)])
            out.append(AffineReaction(r.name, self._reduced_shift(r), const, coef.reshape(n)))
        return out

    def stationary_moments(self, rates: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Exact stationary mean and covariance of the reduced species (closed moment equations; affine only)."""
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
        """Slowest timescale max 1/rate over the zeroth- and first-order mass-action reactions (1 if none):
        the SSA sampling interval is based on it."""
        rs = [float(rates[str(r.rate)]) for r in self.reactions if r.propensity is None and r.order <= 1]
        return max((1.0 / k for k in rs), default=1.0)

    # ----------------------------------------------------------------- gillespy2
    def gillespy2_model(self, rates: Mapping[str, float], initial: Mapping[str, int]):
        """A gillespy2 Model with these parameter values and initial counts."""
        ensure_scons_on_path()
        import gillespy2

        model = gillespy2.Model(name=self.name)
        model.add_parameter([gillespy2.Parameter(name=n, expression=float(rates[n])) for n in self.rate_names])
        model.add_species(
            [gillespy2.Species(name=s, initial_value=int(initial.get(s, 0)), mode="discrete") for s in self.species]
        )
        reactions = []
        for r in self.reactions:
            if r.propensity is None and r.order <= 1:  # gillespy2's mass action agrees up to first order
                reactions.append(gillespy2.Reaction(name=r.name, reactants=dict(r.reactants),
                                                    products=dict(r.products), rate=r.rate))
            else:  # its second-order mass action lacks the 1/2 of 2X; higher orders it refuses
                reactions.append(gillespy2.Reaction(name=r.name, reactants=dict(r.reactants),
                                                    products=dict(r.products),
                                                    propensity_function=to_gillespy2(r.propensity_expression())))
        model.add_reaction(reactions)
        return model

    # ----------------------------------------------------------------- data
    def table(self) -> dict[str, Any]:
        """The network as a [network] table (what protocol files and embedded metadata hold)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["species"] = list(self.species)
        rx = []
        for r in self.reactions:
            t: dict[str, Any] = {"name": r.name, "reactants": dict(r.reactants), "products": dict(r.products)}
            if r.propensity is None:
                t["rate"] = r.rate
            else:
                t["propensity"] = r.propensity
            rx.append(t)
        out["reactions"] = rx
        if self.default_initial:
            out["initial"] = dict(self.default_initial)
        if self.default_values:
            out["values"] = dict(self.default_values)
        return out


def _names_in_order(expr: str) -> list[str]:
    return re.findall(r"[A-Za-z_][A-Za-z_0-9]*", expr)


def ensure_scons_on_path() -> None:
    """gillespy2 compiles its C++ solver with SCons, found on PATH. Put this interpreter's bin first,
    so `.venv/bin/surrogate-abc` works without an activated venv."""
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        os.environ["PATH"] = os.pathsep.join([bindir, *parts])


def check_state_names(network: ReactionNetwork, names: Sequence[str], what: str) -> None:
    """Raise ValueError naming an unknown species."""
    for n in names:
        if n not in network.species:
            raise ValueError(f"unknown species {n!r} in {what}; the {network.name} network has {', '.join(network.species)}")


MassActionNetwork = ReactionNetwork  # the former name
