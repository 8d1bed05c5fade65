"""Which rate a capture efficiency scales, exactly, for networks whose observed molecules are Poisson given the rest.

When every observed molecule is made by a reaction that leaves its reactants unchanged (a promoter, a gene state:
G -> G + X, all at one rate v) and afterwards only moves on alone (X -> Y, X -> nothing, first order, into observed
species or out), and no observed molecule affects any other reaction, then given the path of the unobserved species
the molecules are born as a Poisson process and each one independently follows the same chain: every observed count
is Poisson given that path, jointly independent across species (the marking theorem). Detecting each molecule
independently with probability c thins each Poisson to mean c lambda: exactly the network with v -> c v. So capture
is exact for the joint law of several observed species (nascent and mature RNA of `telegraph_splicing`), where a
binomial kernel on binned counts would not be.

`capture_rate(protocol)` returns that rate's name (a free parameter) or None.
"""
from __future__ import annotations

from .reaction import ReactionNetwork


def capture_rate(protocol) -> str | None:
    """The free parameter v such that binomial capture c of every observed species equals the network at c v
    (see the module docstring), or None when the network is not of that shape."""
    net = protocol.network
    if not isinstance(net, ReactionNetwork):
        return None
    observed = set(protocol.species)
    births: set[str] = set()
    for r in net.reactions:
        if r.propensity is not None or r.rate is None:
            return None
        ins = {s: n for s, n in r.reactants.items() if n}
        outs = {s: n for s, n in r.products.items() if n}
        obs_in = {s for s in ins if s in observed}
        obs_out = {s for s in outs if s in observed}
        if obs_in:  # an observed molecule moves on alone: X -> Y (observed) or X -> nothing
            if len(ins) != 1 or sum(ins.values()) != 1 or set(outs) - observed or sum(outs.values()) > 1:
                return None
        elif obs_out:  # a birth: G -> G + X, the reactants unchanged, one observed molecule made
            made = {s: outs.get(s, 0) - ins.get(s, 0) for s in set(ins) | set(outs)}
            if any(made[s] for s in made if s not in observed) or sum(made[s] for s in obs_out) != 1:
                return None
            births.add(r.rate)
    if len(births) != 1:
        return None
    rate = births.pop()
    if rate not in protocol.param_names:
        return None
    if sum(r.rate == rate for r in net.reactions) != sum(1 for r in net.reactions
                                                         if not (set(r.reactants) & observed)
                                                         and set(r.products) & observed):
        return None  # the birth rate also drives other reactions
    return rate
