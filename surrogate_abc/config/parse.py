"""Typed protocol configs loaded from TOML (see surrogate_abc/configs/*.toml and the README's "Protocol configs").

A protocol names a network, the free parameters with their priors, fixed and derived parameters,
the initial state, the number of SSA samples per parameter set and the histogram edges. Parsing checks
every field and names the file, the field and the fix in its one-line errors.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from ..errors import ConfigError
from ..networks import ReactionNetwork, resolve_network
from ..networks.expressions import ExpressionError, names_in
from ..toml_io import tomllib
from .protocol import PRIOR_KINDS, TOP_LEVEL_KEYS, Axis, FSPSettings, Prior, Protocol, SSASettings

# The shipped protocols and training configs: package data, found in an installed wheel as in a checkout.
CONFIG_DIR = Path(str(resources.files("surrogate_abc").joinpath("configs")))

def resolve_config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A path to a TOML file, or a protocol name looked up in ./configs and the project's configs/."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found; give a path to a .toml protocol or a name in configs/")
        return p
    for d in (Path.cwd() / "configs", CONFIG_DIR):
        cand = d / f"{name_or_path}.toml"
        if cand.is_file():
            return cand
    known = sorted(q.stem for q in CONFIG_DIR.glob("*.toml")) if CONFIG_DIR.is_dir() else []
    raise ConfigError(f"{name_or_path}: no such config file or protocol name (known protocols: {', '.join(known) or 'none'})")


def load_protocol(name_or_path: str | os.PathLike[str]) -> Protocol:
    """Load and validate a protocol from a TOML file or a name in configs/."""
    path = resolve_config_path(name_or_path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    return parse_protocol(text, source=str(path))


def parse_protocol(text: str, source: str = "<string>", network_toml: str | None = None) -> Protocol:
    """Parse protocol TOML text; every error names `source` and the offending field.

    `network_toml` (a file's stored [network] table, see Protocol.network_toml) stands in for a network the
    protocol names by file, SBML model or shipped name, so a file's protocol loads without those."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: malformed TOML ({exc}); fix the syntax") from None
    if network_toml and "network" in raw:
        try:
            stored = tomllib.loads(network_toml)["network"]
        except (tomllib.TOMLDecodeError, KeyError, TypeError):
            raise ConfigError(f"{source}: the stored network table is malformed; regenerate the file") from None
        raw = {**raw, "network": stored}
    return _Parser(raw, source, text).protocol()


def _conservation_totals(network: ReactionNetwork, initial: np.ndarray) -> np.ndarray:
    """(n, laws) totals c . x0 of the network's conservation laws at each row of initial counts."""
    cols = [sum(c * initial[:, network.species.index(s)] for s, c in law.coefficients) for law in network.laws]
    return np.stack(cols, axis=1) if cols else np.zeros((len(initial), 0))


class _Parser:
    def __init__(self, raw: dict, source: str, text: str):
        self.raw, self.src, self.text = raw, source, text

    def err(self, field_: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.src}: [{field_}] {msg}")

    def protocol(self) -> Protocol:
        raw = self.raw
        unknown = set(raw) - TOP_LEVEL_KEYS
        if unknown:
            raise self.err(sorted(unknown)[0], f"unknown key; allowed top-level keys: {', '.join(sorted(TOP_LEVEL_KEYS))}")
        for key in ("name", "network", "parameters", "histogram"):
            if key not in raw:
                raise self.err(key, "missing; every protocol needs name, network, [parameters] and [histogram]")
        pname = raw["name"] if isinstance(raw["name"], str) and raw["name"].isidentifier() else "network"
        network = resolve_network(raw["network"], self.src, self.base_dir(), default_name=pname)
        priors = self.priors(raw["parameters"])
        free = [n for p in priors for n in p.names]
        fixed = self.fixed(raw.get("fixed", {}), free)
        derived = self.derived(raw.get("derived", {}), free + list(fixed))
        # values the network itself sets (an SBML model's parameters) fill in what the protocol leaves undefined
        values = dict(network.default_values)
        fixed = {**{k: float(v) for k, v in values.items()
                    if k not in free and k not in dict(derived) and k in network.rate_names}, **fixed}
        known = set(free) | set(fixed) | {k for k, _ in derived}
        self.check_rates(network, known)
        initial = self.initial({**dict(network.default_initial), **raw.get("initial", {})},
                               network, known)
        samples = raw.get("samples", 100_000)
        if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
            raise self.err("samples", f"must be a positive integer, got {samples!r}")
        axes = self.axes(raw["histogram"], network)
        ssa = SSASettings(**self.table(raw.get("ssa", {}), "ssa", {"burn_in_intervals": int, "interval": float}))
        if ssa.interval is not None and not ssa.interval > 0:
            raise self.err("ssa.interval", f"must be a time > 0, got {ssa.interval}")
        fsp = FSPSettings(**self.table(raw.get("fsp", {}), "fsp", {"tol": float, "max_states": int}))
        if not 0 < fsp.tol < 1:
            raise self.err("fsp.tol", f"must be in (0, 1), got {fsp.tol}")
        name = raw["name"]
        if not isinstance(name, str) or not name.isidentifier():
            raise self.err("name", f"must be an identifier-like string, got {name!r}")
        proto = Protocol(name=name, network=network, priors=tuple(priors), fixed=fixed, derived=tuple(derived),
                         initial=tuple(initial.items()), samples=samples, axes=tuple(axes), ssa=ssa, fsp=fsp,
                         description=str(raw.get("description", "")), source=self.src, toml_text=self.text)
        # Evaluate once at the prior's corners and centre so broken expressions fail at load time.
        box = proto.bounds()
        probe = np.stack([box[:, 0], box.mean(axis=1), box[:, 1]])
        if any(p.kind == "dirichlet" for p in priors):
            probe = proto.sample(3, seed=0)
        if isinstance(network, ReactionNetwork):
            proto = self.bind_conservation(proto, probe)
        proto.rates(probe)
        proto.initial_state(probe)
        return proto

    def base_dir(self) -> Path:
        p = Path(self.src)
        return p.parent if p.suffix == ".toml" and p.parent.is_dir() else Path.cwd()

    def check_rates(self, network, known: set[str]) -> None:
        """Every rate and propensity symbol is a species or a defined parameter (errors name the reaction)."""
        if not isinstance(network, ReactionNetwork):
            missing = [r for r in network.rate_names if r not in known]
            if missing:
                raise self.err("parameters", f"network {network.name} needs parameter(s) {', '.join(missing)}; "
                               "add them as free, [fixed] or [derived] parameters")
            return
        for r in network.reactions:
            if r.propensity is None:
                if r.rate not in known:
                    raise self.err("network.reactions", f"reaction {r.name!r}: field `rate`: the network needs rate "
                                   f"{r.rate!r}, which no free, [fixed] or [derived] parameter defines; add it")
                continue
            unknown = sorted(names_in(r.propensity) - set(network.species) - known)
            if unknown:
                raise self.err("network.reactions", f"reaction {r.name!r}: field `propensity` uses {unknown[0]!r}, "
                               "which is neither a species nor a free, [fixed] or [derived] parameter")

    def bind_conservation(self, proto: Protocol, probe: np.ndarray) -> Protocol:
        """The protocol with its network's conservation laws bound to the totals of its initial counts (found
        from the stoichiometry; they must not depend on the parameters)."""
        network = proto.network
        assert isinstance(network, ReactionNetwork)  # the caller binds the laws of reaction networks only
        net = network.with_totals({}, keep=proto.species)
        init = proto.initial_state(probe)
        totals = _conservation_totals(net, init)
        for j, law in enumerate(net.laws):
            if np.any(totals[:, j] != totals[0, j]):
                terms = " + ".join(s if c == 1 else f"{c} {s}" for s, c in law.coefficients)
                raise self.err("initial", f"the reactions conserve {terms}, so its total must be the same for every "
                               "parameter set; give those species constant initial counts")
            if law.nonnegative and totals[0, j] <= 0 and len(law.coefficients) > 1:
                terms = " + ".join(s if c == 1 else f"{c} {s}" for s, c in law.coefficients)
                raise self.err("initial", f"the reactions conserve {terms}, whose initial total is 0, so those "
                               f"species never change; set e.g. {law.coefficients[-1][0]} = 1 under [initial]")
        bound = net.with_totals(dict(zip(net.species, (int(v) for v in init[0]))), keep=proto.species)
        return replace(proto, network=bound)

    def priors(self, params) -> list[Prior]:
        if not isinstance(params, dict) or not params:
            raise self.err("parameters", "must be a table with at least one free parameter")
        out = []
        for name, spec in params.items():
            f = f"parameters.{name}"
            if not isinstance(spec, dict) or "prior" not in spec:
                raise self.err(f, "needs a table with `prior` (uniform, loguniform or dirichlet)")
            kind = spec["prior"]
            if kind not in PRIOR_KINDS:
                raise self.err(f, f"unknown prior {kind!r}; use one of {', '.join(PRIOR_KINDS)}")
            if kind == "dirichlet":
                alpha, names = spec.get("alpha"), spec.get("names")
                if not isinstance(alpha, list) or not isinstance(names, list) or len(alpha) != len(names) or len(alpha) < 2:
                    raise self.err(f, "dirichlet needs `alpha` and `names` lists of equal length >= 2")
                if any(not _num(a) or a <= 0 for a in alpha):
                    raise self.err(f, f"dirichlet alpha must be > 0, got {alpha}")
                out.append(Prior("dirichlet", tuple(names), alpha=tuple(float(a) for a in alpha)))
                continue
            extra = set(spec) - {"prior", "low", "high", "description"}
            if extra:
                raise self.err(f, f"unknown key {sorted(extra)[0]!r}; a {kind} prior takes low and high")
            low, high = spec.get("low"), spec.get("high")
            if not _num(low) or not _num(high):
                raise self.err(f, f"{kind} prior needs numeric `low` and `high`, got low={low!r}, high={high!r}")
            if not low < high:
                raise self.err(f, f"low ({low}) must be below high ({high}); fix the prior bounds")
            if kind == "loguniform" and low <= 0:
                raise self.err(f, f"loguniform needs low > 0, got {low}")
            out.append(Prior(kind, (name,), float(low), float(high)))
        names = [n for p in out for n in p.names]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise self.err("parameters", f"parameter {sorted(dup)[0]!r} is defined twice")
        return out

    def fixed(self, table, free) -> dict[str, float]:
        if not isinstance(table, dict):
            raise self.err("fixed", "must be a table of name = number")
        for k, v in table.items():
            if not _num(v):
                raise self.err(f"fixed.{k}", f"must be a number, got {v!r}")
            if k in free:
                raise self.err(f"fixed.{k}", "is also a free parameter; remove one of them")
        return {k: float(v) for k, v in table.items()}

    def derived(self, table, known) -> list[tuple[str, str]]:
        if not isinstance(table, dict):
            raise self.err("derived", "must be a table of name = \"expression\"")
        out, seen = [], set(known)
        for k, expr in table.items():
            if k in seen:
                raise self.err(f"derived.{k}", "is already defined as a free or fixed parameter")
            if not isinstance(expr, (str, int, float)):
                raise self.err(f"derived.{k}", f"must be an expression string, got {expr!r}")
            try:
                used = names_in(str(expr))
            except ExpressionError as exc:
                raise self.err(f"derived.{k}", str(exc)) from None
            unknown = used - seen
            if unknown:
                raise self.err(f"derived.{k}", f"unknown parameter {sorted(unknown)[0]!r}; known so far: {', '.join(sorted(seen))}")
            out.append((k, str(expr)))
            seen.add(k)
        return out

    def initial(self, table, network, known) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise self.err("initial", "must be a table of species = count or \"expression\"")
        for k, v in table.items():
            if k not in network.species:
                raise self.err(f"initial.{k}", f"unknown species; {network.name} has {', '.join(network.species)}")
            if isinstance(v, str):
                try:
                    unknown = names_in(v) - set(known)
                except ExpressionError as exc:
                    raise self.err(f"initial.{k}", str(exc)) from None
                if unknown:
                    raise self.err(f"initial.{k}", f"unknown parameter {sorted(unknown)[0]!r}")
            elif not _num(v) or v < 0:
                raise self.err(f"initial.{k}", f"must be a non-negative count or an expression, got {v!r}")
        return dict(table)

    def axes(self, table, network) -> list[Axis]:
        if not isinstance(table, dict) or not table:
            raise self.err("histogram", "needs one table per observed species, e.g. [histogram.protein]")
        out = []
        for species, spec in table.items():
            f = f"histogram.{species}"
            if species not in network.species:
                raise self.err(f, f"unknown species; {network.name} has {', '.join(network.species)}")
            if not isinstance(spec, dict) or "edges" not in spec:
                raise self.err(f, "needs `edges`: {start, stop, width}, a list of such segments, or a list of numbers")
            extra = set(spec) - {"edges", "cap"}
            if extra:
                raise self.err(f, f"unknown key {sorted(extra)[0]!r}; an axis takes `edges` and optionally `cap`")
            edges = self.edges(spec["edges"], f)
            cap = spec.get("cap")
            if network.kind == "closed_form":
                if cap is not None:
                    raise self.err(f, "`cap` applies to count data only")
            else:
                if edges[0] < 0:
                    raise self.err(f, f"count edges must start at >= 0, got {edges[0]}")
                cap = int(math.ceil(edges[-1])) if cap is None else cap
                if not isinstance(cap, int) or cap < math.ceil(edges[-1]):
                    raise self.err(f"{f}.cap", f"must be an integer >= the last edge ({edges[-1]}), got {cap!r}")
            out.append(Axis(species, edges, cap))
        if len(out) > 2:
            raise self.err("histogram", "at most two observed species (1-D or 2-D histograms)")
        return out

    def edges(self, spec, f) -> np.ndarray:
        segs = spec if isinstance(spec, list) and spec and isinstance(spec[0], dict) else None
        if isinstance(spec, dict):
            segs = [spec]
        if segs is None:
            if not isinstance(spec, list) or len(spec) < 2 or not all(_num(v) for v in spec):
                raise self.err(f, "edges must be {start, stop, width}, a list of such segments, or >= 2 numbers")
            edges = np.asarray(spec, dtype=float)
        else:
            parts: list[np.ndarray] = []
            for s in segs:
                if set(s) != {"start", "stop", "width"} or not all(_num(s[k]) for k in s):
                    raise self.err(f, f"an edge segment needs numeric start, stop and width, got {s}")
                if s["width"] <= 0 or s["stop"] <= s["start"]:
                    raise self.err(f, f"segment needs width > 0 and stop > start, got {s}")
                nb = round((s["stop"] - s["start"]) / s["width"])
                if not math.isclose(nb * s["width"], s["stop"] - s["start"], rel_tol=1e-9):
                    raise self.err(f, f"(stop - start) must be a multiple of width, got {s}")
                e = s["start"] + s["width"] * np.arange(nb + 1)
                if parts and not math.isclose(parts[-1][-1], e[0]):
                    raise self.err(f, f"segments must be contiguous: {parts[-1][-1]} then {e[0]}")
                parts.append(e if not parts else e[1:])
            edges = np.concatenate(parts)
        if np.any(np.diff(edges) <= 0):
            raise self.err(f, "edges must be strictly increasing")
        return edges

    def table(self, t, f, types) -> dict:
        if not isinstance(t, dict):
            raise self.err(f, "must be a table")
        out = {}
        for k, v in t.items():
            if k not in types:
                raise self.err(f"{f}.{k}", f"unknown key; allowed: {', '.join(types)}")
            if not _num(v):
                raise self.err(f"{f}.{k}", f"must be a number, got {v!r}")
            out[k] = types[k](v)
        return out


def _num(v: object) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
