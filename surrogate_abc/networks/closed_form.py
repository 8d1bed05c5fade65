"""Closed-form stationary laws, recognised from a network's structure (never from its name).

* `poisson`: a species X made at a constant rate a (0 -> X) and lost at rate b X (X -> ...), with no
  other reaction changing it, is Poisson(a / b) whatever else the network does.
* `beta_poisson`: a species M made at rate v G by a two-state switch G' <-> G (G' -> G at k_on G',
  G -> G' at k_off G, G + G' = 1) and lost at rate d M is Beta-Poisson: M | x ~ Poisson(v x / d),
  x ~ Beta(k_on / d, k_off / d) (the mRNA of the telegraph model; Raj et al. 2006).

`find_closed_form(network, observed)` returns the law of a single observed species or None.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import special, stats

from .reaction import Reaction, ReactionNetwork


@dataclass(frozen=True)
class ClosedForm:
    """A known stationary law of one species, with the rate names that play each role."""

    law: str
    species: str
    roles: tuple[tuple[str, str], ...]

    def pmf(self, rates: Mapping[str, float], cap: int) -> np.ndarray:
        """Probabilities of the counts 0..cap-1 (the rest, 1 - sum, lies at counts >= cap)."""
        r = {role: float(rates[name]) for role, name in self.roles}
        return LAWS[self.law][1](r, int(cap))


def _changes(net: ReactionNetwork, r: Reaction) -> dict[str, int]:
    ch = r.change(net.species)
    return {s: int(c) for s, c in zip(net.species, ch) if c}


def _touching(net: ReactionNetwork, s: str) -> list[Reaction]:
    return [r for r in net.reactions if _changes(net, r).get(s, 0)]


def _match_poisson(net: ReactionNetwork, x: str) -> dict[str, str] | None:
    rs = _touching(net, x)
    if len(rs) != 2 or not all(r.mass_action for r in rs):
        return None
    make = [r for r in rs if r.order == 0 and _changes(net, r)[x] == 1]
    lose = [r for r in rs if dict(r.reactants) == {x: 1} and _changes(net, r)[x] == -1]
    if len(make) != 1 or len(lose) != 1:
        return None
    return {"birth": str(make[0].rate), "death": str(lose[0].rate)}


def _match_beta_poisson(net: ReactionNetwork, m: str) -> dict[str, str] | None:
    rs = _touching(net, m)
    if len(rs) != 2 or not all(r.mass_action for r in rs):
        return None
    lose = [r for r in rs if dict(r.reactants) == {m: 1} and _changes(net, r) == {m: -1}]
    make = [r for r in rs if r.order == 1 and _changes(net, r) == {m: 1} and m not in r.reactants]
    if len(make) != 1 or len(lose) != 1:
        return None
    (g,) = make[0].reactants
    sw = _touching(net, g)
    if len(sw) != 2 or not all(r.mass_action and r.order == 1 for r in sw):
        return None
    off = [r for r in sw if dict(r.reactants) == {g: 1}]
    on = [r for r in sw if g not in r.reactants]
    if len(off) != 1 or len(on) != 1:
        return None
    (g2,) = on[0].reactants
    if _changes(net, on[0]) != {g2: -1, g: 1} or _changes(net, off[0]) != {g: -1, g2: 1}:
        return None
    if any(r not in sw for r in _touching(net, g2)):
        return None
    law = next((law for law in net.laws if dict(law.coefficients) == {g: 1, g2: 1}), None)
    if law is None or law.total != 1:
        return None
    return {"k_on": str(on[0].rate), "k_off": str(off[0].rate), "v": str(make[0].rate), "d": str(lose[0].rate)}


def poisson_pmf(r: Mapping[str, float], cap: int) -> np.ndarray:
    return stats.poisson.pmf(np.arange(cap), r["birth"] / r["death"])


def beta_poisson_pmf(r: Mapping[str, float], cap: int) -> np.ndarray:
    """Telegraph-model mRNA pmf on 0..cap-1, by Kummer's transform of the Beta-Poisson mixture:
    p(n) = v^n / n! B(a + n, b) / B(a, b) e^{-v} 1F1(b; a + b + n; v), with a = k_on/d, b = k_off/d, v = v/d.
    1F1 with positive arguments is a series of positive terms, summed in log space (no cancellation,
    no overflow at large v)."""
    d = r["d"]
    a, b, v = r["k_on"] / d, r["k_off"] / d, r["v"] / d
    n = np.arange(cap, dtype=float)
    head = (special.xlogy(n, v) - special.gammaln(n + 1) + special.gammaln(a + n) - special.gammaln(a)
            + special.gammaln(a + b) - special.gammaln(a + b + n) - v)
    K = int(v + 40.0 * np.sqrt(v + 1.0) + 60)
    k = np.arange(K, dtype=float)
    out = np.empty(cap)
    for lo in range(0, cap, 256):  # log 1F1(b; c; v) for c = a + b + n, a few hundred n at a time
        c = a + b + n[lo:lo + 256, None]
        step = np.log(b + k) + np.log(v) - np.log(c + k) - np.log1p(k)
        logt = np.concatenate([np.zeros((c.shape[0], 1)), np.cumsum(step[:, :-1], axis=1)], axis=1)
        out[lo:lo + 256] = special.logsumexp(logt, axis=1)
    return np.exp(head + out)


LAWS: dict[str, tuple[Callable[[ReactionNetwork, str], dict[str, str] | None],
                      Callable[[Mapping[str, float], int], np.ndarray]]] = {
    "poisson": (_match_poisson, poisson_pmf),
    "beta_poisson": (_match_beta_poisson, beta_poisson_pmf),
}


def find_closed_form(network: ReactionNetwork, observed: Sequence[str]) -> ClosedForm | None:
    """The closed-form law of the single observed species, or None (two species, or no known law)."""
    if len(observed) != 1 or not isinstance(network, ReactionNetwork):
        return None
    for law, (match, _) in LAWS.items():
        roles = match(network, observed[0])
        if roles is not None:
            return ClosedForm(law, observed[0], tuple(roles.items()))
    return None
