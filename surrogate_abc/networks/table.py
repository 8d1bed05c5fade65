"""The [network] table of a protocol file: species and reactions written as data.

    [network]
    species = ["g_free", "g_bound", "protein"]      # order = state coordinates

    [[network.reactions]]
    name = "bind"
    reactants = { g_free = 1, protein = 1 }          # mass action: rate * g_free * protein
    products  = { g_bound = 1 }
    rate = "sb"

    [[network.reactions]]
    name = "make"
    reactants = {}
    products  = { protein = 1 }
    propensity = "rho * g_free + rho_b * g_bound"    # any expression of counts and parameter names

Optional: `initial = { g_free = 1 }` (default starting counts; the protocol's [initial] overrides them) and
`values = { sb = 0.1 }` (default values of parameters the protocol leaves undefined; SBML import fills both).

Every error is one line naming the file, the reaction and the field.
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .expressions import ExpressionError, names_in
from .reaction import Reaction, ReactionNetwork

NETWORK_KEYS = {"name", "description", "species", "reactions", "initial", "values"}
REACTION_KEYS = {"name", "reactants", "products", "rate", "propensity"}


def parse_network_table(table: Any, source: str, default_name: str = "network") -> ReactionNetwork:
    """A ReactionNetwork from a [network] table (a dict as tomllib returns it); ConfigError on bad input."""
    def err(field: str, msg: str) -> ConfigError:
        return ConfigError(f"{source}: [network{'.' + field if field else ''}] {msg}")

    if not isinstance(table, dict):
        raise err("", "must be a table with `species` and [[network.reactions]]")
    unknown = set(table) - NETWORK_KEYS
    if unknown:
        raise err(sorted(unknown)[0], f"unknown key; a network table takes {', '.join(sorted(NETWORK_KEYS))}")
    name = table.get("name", default_name)
    if not isinstance(name, str) or not name.isidentifier():
        raise err("name", f"must be an identifier-like string, got {name!r}")
    species = table.get("species")
    if not isinstance(species, list) or not species:
        raise err("species", "must be a non-empty list of species names, e.g. species = [\"g_off\", \"g_on\", \"mrna\"]")
    for s in species:
        if not isinstance(s, str) or not s.isidentifier():
            raise err("species", f"species names must be identifiers, got {s!r}")
    dup = sorted({s for s in species if species.count(s) > 1})
    if dup:
        raise err("species", f"species {dup[0]!r} is listed twice")
    rx = table.get("reactions")
    if not isinstance(rx, list) or not rx:
        raise err("reactions", "needs at least one [[network.reactions]] table")
    reactions = []
    for i, spec in enumerate(rx):
        reactions.append(_reaction(spec, i, species, err))
    names = [r.name for r in reactions]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise err("reactions", f"reaction name {dup[0]!r} is used twice; give each reaction its own name")
    initial = table.get("initial", {})
    if not isinstance(initial, dict):
        raise err("initial", "must be a table of species = count (the network's default starting counts)")
    for s, c in initial.items():
        if s not in species:
            raise err("initial", f"unknown species {s!r}; the network's species are {', '.join(species)}")
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise err("initial", f"{s} must be a non-negative integer count, got {c!r}")
    values = table.get("values", {})
    if not isinstance(values, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values.values()):
        raise err("values", "must be a table of parameter = number (defaults for parameters the protocol leaves out)")
    return ReactionNetwork(name=name, species=tuple(species), reactions=tuple(reactions),
                           description=str(table.get("description", "")),
                           default_initial=tuple((s, int(c)) for s, c in initial.items()),
                           default_values=tuple((k, float(v)) for k, v in values.items()))


def _reaction(spec: Any, i: int, species: list[str], err) -> Reaction:
    if not isinstance(spec, dict):
        raise err("reactions", f"entry {i + 1} must be a table ([[network.reactions]])")
    rname = spec.get("name", f"r{i + 1}")
    if not isinstance(rname, str) or not rname.isidentifier():
        raise err("reactions", f"entry {i + 1}: name must be an identifier-like string, got {rname!r}")
    unknown = set(spec) - REACTION_KEYS
    if unknown:
        raise err("reactions", f"reaction {rname!r}: unknown field {sorted(unknown)[0]!r}; "
                  f"a reaction takes {', '.join(sorted(REACTION_KEYS))}")
    sides = {}
    for side in ("reactants", "products"):
        val = spec.get(side, {})
        if not isinstance(val, dict):
            raise err("reactions", f"reaction {rname!r}: field `{side}` must be a table of species = count, e.g. {{ mrna = 1 }}")
        for s, c in val.items():
            if s not in species:
                raise err("reactions", f"reaction {rname!r}: field `{side}` names unknown species {s!r}; "
                          f"the network's species are {', '.join(species)}")
            if isinstance(c, bool) or not isinstance(c, int):
                raise err("reactions", f"reaction {rname!r}: field `{side}`: stoichiometry of {s} must be a "
                          f"non-negative integer, got {c!r}")
            if c < 0:
                raise err("reactions", f"reaction {rname!r}: field `{side}`: stoichiometry of {s} must be a "
                          f"non-negative integer, got {c}")
        sides[side] = {s: int(c) for s, c in val.items() if c}
    rate, prop = spec.get("rate"), spec.get("propensity")
    if rate is not None and prop is not None:
        raise err("reactions", f"reaction {rname!r}: give either `rate` (mass action) or `propensity`, not both")
    if rate is None and prop is None:
        raise err("reactions", f"reaction {rname!r}: needs `rate = \"NAME\"` (mass action) or "
                  "`propensity = \"EXPRESSION\"`")
    if rate is not None and (not isinstance(rate, str) or not rate.isidentifier()):
        raise err("reactions", f"reaction {rname!r}: field `rate` must be a parameter name, got {rate!r} "
                  "(for a constant, define it under [fixed])")
    if rate is not None and rate in species:
        raise err("reactions", f"reaction {rname!r}: field `rate` names species {rate!r}; it must be a parameter")
    if prop is not None:
        if not isinstance(prop, str):
            raise err("reactions", f"reaction {rname!r}: field `propensity` must be an expression string, got {prop!r}")
        try:
            names_in(prop)
        except ExpressionError as exc:
            raise err("reactions", f"reaction {rname!r}: field `propensity`: {exc}") from None
    return Reaction(rname, rate, sides["reactants"], sides["products"], prop)
