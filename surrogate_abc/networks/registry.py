"""Where networks come from: shipped network files (surrogate_abc/configs/networks/*.toml, package data), a [network] table written in
the protocol, a network file or an SBML model named by the protocol, or a closed-form toy (`kind`).

One registry per kind of source; nothing downstream branches on a network's name."""
from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from ..toml_io import tomllib
from .gaussian import GaussianMixtureNetwork
from .reaction import ReactionNetwork
from .sbml import read_sbml  # libsbml itself is imported only when a model is read
from .table import parse_network_table

NETWORK_DIR = Path(str(resources.files("surrogate_abc").joinpath("configs", "networks")))  # package data

# Networks that are not reaction networks (closed-form toys), by `kind`.
KINDS: dict[str, Callable[..., Any]] = {
    "gaussian_mixture": lambda components=3: GaussianMixtureNetwork(components=int(components)),
}


def shipped_networks() -> list[str]:
    """Names of the network files that ship with the package."""
    return sorted(p.stem for p in NETWORK_DIR.glob("*.toml")) if NETWORK_DIR.is_dir() else []


def network_names() -> list[str]:
    return sorted(set(shipped_networks()) | set(KINDS))


def load_network_file(path: str | Path, source: str = "") -> ReactionNetwork:
    """A network file: a TOML file with one [network] table."""
    p = Path(path)
    where = f"{source}: " if source else ""
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}network file {p} not found; give a path relative to the protocol file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}network file {p}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: malformed TOML ({exc}); fix the syntax") from None
    if set(raw) != {"network"}:
        raise ConfigError(f"{p}: a network file holds exactly one [network] table (found: {', '.join(raw) or 'nothing'})")
    return parse_network_table(raw["network"], str(p), default_name=p.stem)


def get_network(name: str, **options: Any) -> Any:
    """A network by name: a closed-form kind or a shipped network file; KeyError listing the known names."""
    if name in KINDS:
        return KINDS[name](**options)
    path = NETWORK_DIR / f"{name}.toml"
    if options or not path.is_file():
        raise KeyError(f"unknown network {name!r}; known: {', '.join(network_names())}")
    return load_network_file(path)


def resolve_network(spec: Any, source: str, base_dir: Path, default_name: str = "network") -> Any:
    """The network a protocol's `network` entry describes (see the module docstring); a [network] table
    without a name is called `default_name` (the protocol's name)."""
    if isinstance(spec, str):
        try:
            return get_network(spec)
        except KeyError:
            raise ConfigError(f"{source}: [network] unknown network {spec!r}; known: {', '.join(network_names())}, "
                              "or write a [network] table with species and reactions") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: [network] must be a network name or a table (species and reactions, "
                          "or file = \"net.toml\", or sbml = \"model.xml\")")
    if "species" in spec or "reactions" in spec:
        return parse_network_table(spec, source, default_name=default_name)
    if "file" in spec or "sbml" in spec:
        key = "file" if "file" in spec else "sbml"
        extra = set(spec) - {key}
        if extra:
            raise ConfigError(f"{source}: [network] unknown key {sorted(extra)[0]!r} next to `{key}`")
        path = Path(str(spec[key]))
        path = path if path.is_absolute() else base_dir / path
        if key == "file":
            return load_network_file(path, source)
        model = read_sbml(path, source=source)
        species = set(model.table["species"])
        rx = [_mass_action_form(r, species) for r in model.table["reactions"]]
        table = {**model.table, "reactions": rx, "initial": dict(model.initial), "values": dict(model.parameters)}
        return parse_network_table(table, f"{source} (SBML {path.name})")
    if "kind" in spec:
        opts = {k: v for k, v in spec.items() if k != "kind"}
        try:
            return get_network(str(spec["kind"]), **opts)
        except (KeyError, TypeError):
            raise ConfigError(f"{source}: [network] unknown network kind {spec['kind']!r} or options "
                              f"{sorted(opts)}; kinds: {', '.join(KINDS)}") from None
    raise ConfigError(f"{source}: [network] needs `species` and [[network.reactions]], or `file`, `sbml` or `kind`")


def _mass_action_form(reaction: dict, species: set[str]) -> dict:
    """An SBML reaction whose kinetic law is one parameter times each of its (distinct, first-order) reactants
    is mass action: written with `rate`, so that structural closed forms and gillespy2's mass action see it."""
    prop = reaction.get("propensity")
    reactants = reaction.get("reactants", {})
    if prop is None or any(c != 1 for c in reactants.values()):
        return reaction
    factors: list[str] = []

    def walk(node: ast.AST) -> bool:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            return walk(node.left) and walk(node.right)
        if isinstance(node, ast.Name):
            factors.append(node.id)
            return True
        return False

    if not walk(ast.parse(prop, mode="eval").body):
        return reaction
    params = [f for f in factors if f not in species]
    if len(params) != 1 or sorted(f for f in factors if f in species) != sorted(reactants):
        return reaction
    out = {k: v for k, v in reaction.items() if k != "propensity"}
    out["rate"] = params[0]
    return out
