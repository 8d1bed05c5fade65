"""Burst kinetics of mRNA models with a closed-form law: burst frequency and burst size from the rates.

A bursty mRNA is made in bursts that arrive at a frequency (per mRNA lifetime) and carry a mean number of
molecules (the burst size). Both follow from the law's roles (`closed_form.find_closed_form`), recognised
from the network's structure, so they are reported for any network of that shape whatever its rates are
called:

* beta_poisson (the telegraph model): burst frequency k_on / d, burst size v / k_off (the bursty limit of
  the telegraph model, k_off >> k_on, and the usual read-out of smFISH fits; Raj et al. 2006).
* negative_binomial (the birth-immigration-death form of the bursty model, configs/networks/bursty.toml):
  burst frequency = the shape r = immigration / birth, burst size = mean / r = birth / (death - birth).

For several observed species in a chain whose first is a telegraph species (nascent -> mature RNA of
`telegraph_splicing`): burst size v / k_off, burst frequency k_on per lifetime of the last species (mature RNA).

`burst_kinetics(protocol, theta)` returns {"burst_frequency": (n,), "burst_size": (n,)}, or {} for a protocol
whose observed species have no such law (Poisson, mRNA with protein, networks without a closed form).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .closed_form import find_closed_form
from .reaction import ReactionNetwork

BURST_VARIABLES = ("burst_frequency", "burst_size")

Rates = Mapping[str, np.ndarray]


def _telegraph(r: Rates) -> tuple[np.ndarray, np.ndarray]:
    return r["k_on"] / r["d"], r["v"] / r["k_off"]


def _negative_binomial(r: Rates) -> tuple[np.ndarray, np.ndarray]:
    a, lam, mu = r["immigration"], r["birth"], r["death"]
    return a / lam, lam / (mu - lam)


# law name -> (rates by role -> (burst frequency, burst size))
BURSTS: dict[str, Callable[[Rates], tuple[np.ndarray, np.ndarray]]] = {
    "beta_poisson": _telegraph,
    "negative_binomial": _negative_binomial,
}


def burst_kinetics(protocol, theta: np.ndarray) -> dict[str, np.ndarray]:
    """{"burst_frequency", "burst_size"} (n,) at parameter sets theta (n, d) of `protocol`; {} when its observed
    species has no bursty closed-form law."""
    net = protocol.network
    if not isinstance(net, ReactionNetwork):
        return {}
    theta = np.atleast_2d(np.asarray(theta, float))
    law = find_closed_form(net, protocol.species)
    if law is not None and law.law in BURSTS:
        by_role = _by_role(protocol, law.roles, theta)
        freq, size = BURSTS[law.law](by_role)
        return {"burst_frequency": np.asarray(freq, float), "burst_size": np.asarray(size, float)}
    return _chain_bursts(protocol, theta)


def _by_role(protocol, roles, theta: np.ndarray) -> dict[str, np.ndarray]:
    rates = protocol.rates(theta)
    names = protocol.rate_names
    return {role: rates[:, names.index(name)] for role, name in roles}


def _chain_bursts(protocol, theta: np.ndarray) -> dict[str, np.ndarray]:
    """Several observed species, each converted into the next (not made from it, as protein from mRNA), whose first
    is a telegraph (Beta-Poisson) species and whose last decays at rate d_last (nascent -> mature RNA of telegraph_splicing): burst size v / k_off (molecules of the first species per
    burst), burst frequency k_on / d_last (per lifetime of the last species: per mature lifetime)."""
    species = protocol.species
    if len(species) < 2:
        return {}
    net = protocol.network
    law = find_closed_form(net, species[:1])
    decay = [r.rate for r in net.reactions
             if dict(r.reactants) == {species[-1]: 1} and not any(r.products.values()) and r.rate]
    chain = all(any(dict(r.reactants) == {a: 1} and {k: v for k, v in r.products.items() if v} == {b: 1}
                    for r in net.reactions) for a, b in zip(species, species[1:]))  # each converts into the next
    if law is None or law.law != "beta_poisson" or len(decay) != 1 or not chain:
        return {}
    r = _by_role(protocol, law.roles + (("d_last", decay[0]),), theta)
    return {"burst_frequency": r["k_on"] / r["d_last"], "burst_size": r["v"] / r["k_off"]}
