"""Closed-form stationary laws, recognised from a network's structure (never from its name).

* `poisson`: a species X made at a constant rate a (0 -> X) and lost at rate b X (X -> ...), with no
  other reaction changing it, is Poisson(a / b) whatever else the network does.
* `beta_poisson`: a species M made at rate v G by a two-state switch G' <-> G (G' -> G at k_on G',
  G -> G' at k_off G, G + G' = 1) and lost at rate d M (decay, or conversion into another species, as nascent
  RNA is spliced) is Beta-Poisson: M | x ~ Poisson(v x / d),
  x ~ Beta(k_on / d, k_off / d) (the mRNA of the telegraph model; Raj et al. 2006).
* `negative_binomial`: the linear birth-immigration-death process of a species X, made at a constant rate a
  (0 -> X), duplicated at rate l X (X -> 2X) and lost at rate m X (X -> 0), with no other reaction changing
  it, has for l < m the stationary law P(n) = C(n + r - 1, n) (1 - q)^r q^n with shape r = a / l and
  q = l / m (mean a / (m - l), Fano factor m / (m - l)); in scipy's parametrisation nbinom(r, 1 - l / m).
  For l >= m there is no stationary law (the counts escape to infinity): the pmf is 0 on 0..cap-1, all mass
  beyond the cap. With a = k0 b, l = b, m = 1 + b it is the bursty mRNA law NB(k0, mean burst size b) of
  geometric bursts at frequency k0 per mRNA lifetime (network file `bursty.toml`).

`find_closed_form(network, observed)` returns the law of a single observed species or None.

Binomial thinning (each molecule detected independently with probability beta) keeps every law in its
family: Poisson(lam) -> Poisson(beta lam); NB(r, mean mu) -> NB(r, beta mu); Beta-Poisson with v -> v beta.
`LAWS[law].thin(values, beta)` gives the role values of the thinned law (elementwise on arrays) and
`ClosedForm.thinned_pmf` its pmf.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
from scipy import special, stats

from .reaction import Reaction, ReactionNetwork


@dataclass(frozen=True)
class ClosedForm:
    """A known stationary law of one species, with the rate names that play each role."""

    law: str
    species: str
    roles: tuple[tuple[str, str], ...]

    def values(self, rates: Mapping[str, Any]) -> dict[str, Any]:
        """The value of each role (floats, or arrays for many parameter sets) from rate values by name."""
        return {role: rates[name] for role, name in self.roles}

    def pmf(self, rates: Mapping[str, float], cap: int) -> np.ndarray:
        """Probabilities of the counts 0..cap-1 (the rest, 1 - sum, lies at counts >= cap)."""
        r = {role: float(v) for role, v in self.values(rates).items()}
        return LAWS[self.law].pmf(r, int(cap))

    def thinned_pmf(self, rates: Mapping[str, float], cap: int, beta: float) -> np.ndarray:
        """Probabilities of the counts 0..cap-1 after binomial thinning with detection probability beta
        (each molecule kept independently with probability beta), exactly: the law of the same family with
        the thinned role values (module docstring)."""
        law = LAWS[self.law]
        r = law.thin({role: float(v) for role, v in self.values(rates).items()}, check_beta(beta))
        return law.pmf({k: float(v) for k, v in r.items()}, int(cap))


def net_changes(net: ReactionNetwork, r: Reaction) -> dict[str, int]:
    """{species: net change} of reaction r, the species it leaves unchanged left out."""
    ch = r.change(net.species)
    return {s: int(c) for s, c in zip(net.species, ch) if c}


def reactions_changing(net: ReactionNetwork, s: str) -> list[Reaction]:
    """The reactions of net that change species s."""
    return [r for r in net.reactions if net_changes(net, r).get(s, 0)]


def _match_poisson(net: ReactionNetwork, x: str) -> dict[str, str] | None:
    rs = reactions_changing(net, x)
    if len(rs) != 2 or not all(r.mass_action for r in rs):
        return None
    make = [r for r in rs if r.order == 0 and net_changes(net, r)[x] == 1]
    lose = [r for r in rs if dict(r.reactants) == {x: 1} and net_changes(net, r)[x] == -1]
    if len(make) != 1 or len(lose) != 1:
        return None
    return {"birth": str(make[0].rate), "death": str(lose[0].rate)}


def match_beta_poisson(net: ReactionNetwork, m: str) -> dict[str, str] | None:
    """Rate names of the roles (k_on, k_off, v, d) when species m is made by a two-state switch and lost at a
    first-order rate (the telegraph mRNA; module docstring), else None."""
    rs = reactions_changing(net, m)
    if len(rs) != 2 or not all(r.mass_action for r in rs):
        return None
    # lost at rate d M: decay, or conversion into species that act on nothing here (nascent -> mature RNA)
    lose = [r for r in rs if dict(r.reactants) == {m: 1} and net_changes(net, r).get(m) == -1]
    make = [r for r in rs if r.order == 1 and net_changes(net, r) == {m: 1} and m not in r.reactants]
    if len(make) != 1 or len(lose) != 1:
        return None
    (g,) = make[0].reactants
    sw = reactions_changing(net, g)
    if len(sw) != 2 or not all(r.mass_action and r.order == 1 for r in sw):
        return None
    off = [r for r in sw if dict(r.reactants) == {g: 1}]
    on = [r for r in sw if g not in r.reactants]
    if len(off) != 1 or len(on) != 1:
        return None
    (g2,) = on[0].reactants
    if net_changes(net, on[0]) != {g2: -1, g: 1} or net_changes(net, off[0]) != {g: -1, g2: 1}:
        return None
    if any(r not in sw for r in reactions_changing(net, g2)):
        return None
    law = next((law for law in net.laws if dict(law.coefficients) == {g: 1, g2: 1}), None)
    if law is None or law.total != 1:
        return None
    return {"k_on": str(on[0].rate), "k_off": str(off[0].rate), "v": str(make[0].rate), "d": str(lose[0].rate)}


def _match_negative_binomial(net: ReactionNetwork, x: str) -> dict[str, str] | None:
    rs = reactions_changing(net, x)
    if len(rs) != 3 or not all(r.mass_action for r in rs):
        return None
    imm = [r for r in rs if r.order == 0 and net_changes(net, r)[x] == 1]
    dup = [r for r in rs if dict(r.reactants) == {x: 1} and net_changes(net, r)[x] == 1]
    lose = [r for r in rs if dict(r.reactants) == {x: 1} and net_changes(net, r)[x] == -1]
    if len(imm) != 1 or len(dup) != 1 or len(lose) != 1:
        return None
    return {"immigration": str(imm[0].rate), "birth": str(dup[0].rate), "death": str(lose[0].rate)}


def check_beta(beta: Any) -> Any:
    """beta as a float or float array in [0, 1]; ValueError otherwise."""
    b = np.asarray(beta, dtype=float)
    if not np.all((b >= 0) & (b <= 1)):
        raise ValueError(f"detection probability beta must lie in [0, 1], got {beta!r}")
    return float(b) if b.ndim == 0 else b


def negative_binomial_params(r: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(shape a / l, scipy's success probability 1 - l / m, valid: l < m) of the negative_binomial law,
    elementwise. Where l = 0 the shape is infinite (the law is Poisson(a / m)); callers treat that apart."""
    a, lam, m = (np.asarray(r[k], dtype=float) for k in ("immigration", "birth", "death"))
    with np.errstate(divide="ignore", invalid="ignore"):
        shape = a / lam
        p = 1.0 - lam / m
    return shape, p, lam < m


def negative_binomial_pmf(r: Mapping[str, float], cap: int) -> np.ndarray:
    """NB(a / l, q = l / m) on 0..cap-1 (Poisson(a / m) for l = 0; zeros, all mass beyond the cap, for l >= m)."""
    shape, p, valid = negative_binomial_params(r)
    k = np.arange(cap)
    if not valid:
        return np.zeros(cap)
    if float(r["birth"]) == 0.0:
        return stats.poisson.pmf(k, float(r["immigration"]) / float(r["death"]))
    return stats.nbinom.pmf(k, float(shape), float(p))


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


def beta_poisson_pmf_rows(r: Mapping[str, Any], cap: int) -> np.ndarray:
    """Beta-Poisson pmf of many parameter sets at once: (n, N) probabilities of the counts 0..N-1 with
    N >= cap, so far beyond the bulk of every row that the mass at N and above is negligible (< 1e-300: the
    law lies stochastically below Poisson(v / d)); sum columns >= cap for the mass beyond the cap.

    The pmf is the minimal solution of the three-term recurrence that the generating function
    1F1(a; a + b; v (z - 1)) gives (Kummer's equation), for m >= 1
        (m + 1) m p(m + 1) = m (m - 1 + a + b + v) p(m) - v (m - 1 + a) p(m - 1),
    so the ratios rho(m) = p(m) / p(m - 1) follow stably from the backward continued fraction
        rho(m) = v (m - 1 + a) / (m (m - 1 + a + b + v) - m (m + 1) rho(m + 1)),  rho(N) = 0
    (Miller's algorithm), vectorised over rows; p = exp(cumsum log rho), normalised to sum 1. Agrees with
    `beta_poisson_pmf` (the per-set series) to ~1e-12 relative, tails included."""
    d = np.atleast_1d(np.asarray(r["d"], dtype=float))
    a = np.atleast_1d(np.asarray(r["k_on"], dtype=float)) / d
    b = np.atleast_1d(np.asarray(r["k_off"], dtype=float)) / d
    v = np.atleast_1d(np.asarray(r["v"], dtype=float)) / d
    a, b, v = np.broadcast_arrays(a, b, v)
    vmax = float(v.max()) if v.size else 0.0
    N = int(max(cap, vmax + 50.0 * np.sqrt(vmax + 1.0) + 100))
    c = a + b
    logrho = np.empty((len(v), N))
    logrho[:, 0] = 0.0
    rho = np.zeros(len(v))
    with np.errstate(divide="ignore", invalid="ignore"):
        for m in range(N - 1, 0, -1):
            rho = v * (m - 1 + a) / (m * (m - 1 + c + v) - m * (m + 1) * rho)
            logrho[:, m] = np.log(rho)
    logp = np.cumsum(logrho, axis=1)
    logp -= special.logsumexp(logp, axis=1, keepdims=True)
    return np.exp(logp)


def _thin_poisson(r: Mapping[str, Any], beta: Any) -> dict[str, Any]:
    return {**r, "birth": r["birth"] * beta}


def _thin_negative_binomial(r: Mapping[str, Any], beta: Any) -> dict[str, Any]:
    # same shape a / l, mean a / (m - l) scaled by beta: m -> l + (m - l) / beta (m = inf at beta = 0: all at 0)
    with np.errstate(divide="ignore"):
        return {**r, "death": r["birth"] + (r["death"] - r["birth"]) / np.asarray(beta, dtype=float)}


def _thin_beta_poisson(r: Mapping[str, Any], beta: Any) -> dict[str, Any]:
    return {**r, "v": r["v"] * beta}


class Law(NamedTuple):
    """A closed-form law: its structural matcher (network, species -> role -> rate name, or None), its pmf on
    0..cap-1 from role values, and its thinning map (role values, beta -> role values of the thinned law)."""

    match: Callable[[ReactionNetwork, str], dict[str, str] | None]
    pmf: Callable[[Mapping[str, float], int], np.ndarray]
    thin: Callable[[Mapping[str, Any], Any], dict[str, Any]]


LAWS: dict[str, Law] = {
    "poisson": Law(_match_poisson, poisson_pmf, _thin_poisson),
    "negative_binomial": Law(_match_negative_binomial, negative_binomial_pmf, _thin_negative_binomial),
    "beta_poisson": Law(match_beta_poisson, beta_poisson_pmf, _thin_beta_poisson),
}


def find_closed_form(network: ReactionNetwork, observed: Sequence[str]) -> ClosedForm | None:
    """The closed-form law of the single observed species, or None (two species, or no known law)."""
    if len(observed) != 1 or not isinstance(network, ReactionNetwork):
        return None
    for law, spec in LAWS.items():
        roles = spec.match(network, observed[0])
        if roles is not None:
            return ClosedForm(law, observed[0], tuple(roles.items()))
    return None
