"""Read an SBML model into the project's network table, initial counts and parameter values.

The model is read with python-libsbml (`pip install python-libsbml`). Only the part of SBML that
describes a plain stochastic reaction network is accepted: species, compartments, global
parameters, and irreversible reactions with integer stoichiometry and a kinetic law. Events, rules,
initial assignments, constraints, function definitions, boundary/constant species, stoichiometry
math, conversion factors, fast and reversible reactions are rejected with a ConfigError naming the
element and the fix.

Convention: each reaction's kinetic law is taken as its *stochastic propensity*, in reactions per
unit time, with every species symbol read as a molecule count (`hasOnlySubstanceUnits` and units are
ignored). This is the convention gillespy2's SBML import uses. So a degradation `M -> 0` with law
`d0 * M` fires at rate d0 * (number of M molecules); a dimerisation written `k * A * A` is used as
is (write `k * A * (A - 1) / 2` for the exact combinatorial propensity).

Kinetic-law math is converted to the project's expression language (see `expressions.py`):
`^`/`pow` become `**`, `ln` becomes `log`, `log10`, `sqrt`, `root`, `exp`, `abs`, `floor`,
`ceiling`, `min`, `max`, `pi`, `exponentiale` and `avogadro` are translated, local parameters are
replaced by their values, and anything else is an error. The conversion walks the libsbml math
tree (rather than re-parsing `formulaToL3String`, whose output can drop needed parentheses, e.g.
`(a^b)^c` prints as `a^b^c`, and carries number units such as `2 mole`); every compound operand is
parenthesised, so precedence is always explicit.
"""
from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .expressions import ExpressionError, names_in

__all__ = ["SBMLModel", "read_sbml"]


@dataclass(frozen=True)
class SBMLModel:
    """A reaction network read from SBML.

    table: {"name", "species": [ids], "reactions": [{"name", "reactants", "products", "propensity"}]}
    initial: species id -> initial molecule count.
    parameters: global parameter id -> value (those with a value), and compartment id -> size.
    """

    table: dict
    initial: dict
    parameters: dict


def read_sbml(path: str | Path, source: str = "") -> SBMLModel:
    """Read the SBML file `path` into an SBMLModel; raises ConfigError (one line) on any problem.

    `source` (e.g. the protocol file that names this SBML file) prefixes error messages.
    """
    path = Path(path)
    err = _Errors(path, source)
    try:
        import libsbml
    except ImportError:
        raise err("python-libsbml is not installed; install it with `pip install python-libsbml`") from None

    if not path.is_file():
        raise err("file not found; check the path (relative paths are resolved from the working directory)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise err(f"cannot read the file ({exc.strerror or exc}); check its permissions") from None

    doc = libsbml.readSBMLFromFile(str(path))
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
            where = f"line {e.getLine()}: " if e.getLine() else ""
            raise err(f"{where}libsbml cannot read it: {e.getMessage().strip().rstrip('.')}; fix the SBML (e.g. validate it at sbml.org)")
    model = doc.getModel()
    if model is None:
        raise err("the document has no <model>; add a model with species and reactions")

    _reject_unsupported(model, err)

    compartments: dict[str, float] = {}
    for c in model.getListOfCompartments():
        if c.isSetSize():
            compartments[c.getId()] = float(c.getSize())

    parameters: dict[str, float] = {}
    unset_parameters: set[str] = set()
    for p in model.getListOfParameters():
        if p.isSetValue():
            parameters[p.getId()] = float(p.getValue())
        else:
            unset_parameters.add(p.getId())
    parameters.update(compartments)

    species: list[str] = []
    initial: dict[str, int] = {}
    for s in model.getListOfSpecies():
        sid = s.getId()
        what = f"species {sid!r}"
        if s.getBoundaryCondition():
            raise err(f"{what}: boundaryCondition=true is unsupported; set it to false or model the species as a reaction product/reactant")
        if s.getConstant():
            raise err(f"{what}: constant=true is unsupported; set constant=false (or replace the species by a parameter)")
        if s.isSetConversionFactor():
            raise err(f"{what}: conversionFactor is unsupported; remove it and scale the stoichiometry instead")
        initial[sid] = _initial_count(s, model, err)
        species.append(sid)

    known = set(species) | set(parameters)
    reactions = [_reaction(r, model, libsbml, set(species), known, unset_parameters, err) for r in model.getListOfReactions()]
    if not reactions:
        raise err("the model has no reactions; add at least one reaction with a kinetic law")

    name = model.getId() or model.getName() or path.stem
    table = {"name": _identifier(name), "species": species, "reactions": reactions}
    return SBMLModel(table=table, initial=initial, parameters=parameters)


# --------------------------------------------------------------------------- helpers
class _Errors:
    """Builds one-line ConfigErrors prefixed with the file (and the protocol that names it)."""

    def __init__(self, path: Path, source: str) -> None:
        self.prefix = f"{source}: network.sbml {path}: " if source else f"SBML file {path}: "

    def __call__(self, message: str) -> ConfigError:
        return ConfigError(" ".join((self.prefix + message).split()))


def _identifier(name: str) -> str:
    """Make `name` identifier-like: non-word characters -> '_', no leading digit, never empty."""
    out = re.sub(r"\W+", "_", name.strip()).strip("_") or "sbml_model"
    return f"_{out}" if out[0].isdigit() else out


def _reject_unsupported(model: Any, err: _Errors) -> None:
    """Raise for model-level constructs that a plain reaction network cannot express."""
    checks = [
        (model.getListOfEvents(), "event", "events are unsupported; remove them (state changes at discrete times cannot be simulated here)"),
        (model.getListOfInitialAssignments(), "initial assignment", "initial assignments are unsupported; replace them by numeric initialAmount/value attributes"),
        (model.getListOfConstraints(), "constraint", "constraints are unsupported; remove them"),
        (model.getListOfFunctionDefinitions(), "function definition", "function definitions are unsupported; inline the function body into the kinetic laws"),
    ]
    for items, kind, message in checks:
        if len(items):
            item = items.get(0)
            ident = item.getId() if hasattr(item, "getId") and item.getId() else ""
            label = f"{kind} {ident!r}" if ident else kind
            if kind == "initial assignment":
                label = f"{kind} for {item.getSymbol()!r}"
            raise err(f"{label}: {message}")
    rules = model.getListOfRules()
    if len(rules):
        rule = rules.get(0)
        if rule.isAssignment():
            kind = "assignment rule"
        elif rule.isRate():
            kind = "rate rule"
        else:
            kind = "algebraic rule"
        target = f" for {rule.getVariable()!r}" if rule.getVariable() else ""
        raise err(f"{kind}{target}: rules are unsupported; remove it, or express the dynamics as reactions with kinetic laws")
    if model.isSetConversionFactor():
        raise err("model: conversionFactor is unsupported; remove it and scale the stoichiometry instead")


def _initial_count(s: Any, model: Any, err: _Errors) -> int:
    """initialAmount, or initialConcentration * compartment size, as a non-negative integer."""
    what = f"species {s.getId()!r}"
    if s.isSetInitialAmount():
        value, how = float(s.getInitialAmount()), "initialAmount"
    elif s.isSetInitialConcentration():
        comp = model.getCompartment(s.getCompartment())
        if comp is None or not comp.isSetSize():
            raise err(f"{what}: initialConcentration needs the size of compartment {s.getCompartment()!r}, which is not set; set the compartment size or give initialAmount")
        value = float(s.getInitialConcentration()) * float(comp.getSize())
        how = f"initialConcentration * size of {s.getCompartment()!r}"
    else:
        raise err(f"{what}: no initial value; set initialAmount to a molecule count")
    if not math.isfinite(value) or value < 0 or abs(value - round(value)) > 1e-9 * max(1.0, abs(value)):
        raise err(f"{what}: {how} = {value!r} is not a molecule count; give a non-negative whole number")
    return round(value)


def _stoichiometry(sr: Any, model: Any, species: set[str], what: str, err: _Errors) -> tuple[str, int]:
    sid = sr.getSpecies()
    if sid not in species:
        raise err(f"{what}: unknown species {sid!r}; declare it in listOfSpecies")
    if hasattr(sr, "isSetStoichiometryMath") and sr.isSetStoichiometryMath():
        raise err(f"{what}: stoichiometryMath for {sid!r} is unsupported; give a constant integer stoichiometry")
    if model.getLevel() >= 3 and not sr.isSetStoichiometry():
        raise err(f"{what}: stoichiometry of {sid!r} is not set; set stoichiometry to a whole number (e.g. 1)")
    value = float(sr.getStoichiometry())
    if not math.isfinite(value) or value < 0 or value != round(value):
        raise err(f"{what}: stoichiometry {value:g} of {sid!r} is unsupported (must be a non-negative integer); use whole molecule numbers")
    return sid, int(value)


def _reaction(r: Any, model: Any, libsbml: Any, species: set[str], known: set[str], unset: set[str], err: _Errors) -> dict:
    rid = r.getId()
    what = f"reaction {rid!r}"
    if not rid:
        raise err("a reaction has no id; give every reaction an id")
    if r.getReversible():
        raise err(f"{what}: reversible=true is unsupported; split it into two irreversible reactions (reversible=false) with one kinetic law each")
    if r.isSetFast() and r.getFast():
        raise err(f"{what}: fast=true is unsupported; set fast=false")
    sides: list[dict[str, int]] = []
    for refs in (r.getListOfReactants(), r.getListOfProducts()):
        side: dict[str, int] = {}
        for sr in refs:
            sid, n = _stoichiometry(sr, model, species, what, err)
            if n:
                side[sid] = side.get(sid, 0) + n
        sides.append(side)
    kl = r.getKineticLaw()
    if kl is None or not kl.isSetMath():
        raise err(f"{what}: no kinetic law; add a <kineticLaw> whose math is the propensity")

    local: dict[str, float] = {}
    lists = [kl.getListOfParameters()]
    if hasattr(kl, "getListOfLocalParameters"):
        lists.append(kl.getListOfLocalParameters())
    for lst in lists:
        for p in lst:
            if not p.isSetValue() or not math.isfinite(float(p.getValue())):
                raise err(f"{what}: local parameter {p.getId()!r} has no finite value; set its value")
            local[p.getId()] = float(p.getValue())

    law = libsbml.formulaToL3String(kl.getMath())
    try:
        expr = _MathConverter(libsbml, local).convert(kl.getMath())
        used = names_in(expr)
    except _Unsupported as exc:
        raise err(f"{what}: kinetic law {law!r}: {exc}") from None
    except ExpressionError as exc:
        raise err(f"{what}: kinetic law {law!r} cannot be converted ({exc}); simplify the law") from None
    for name in sorted(used):
        if name in unset:
            raise err(f"{what}: kinetic law uses parameter {name!r}, which has no value; set its value")
        if name not in known:
            raise err(f"{what}: kinetic law uses {name!r}, which is not a species, global parameter or compartment (with a size); declare it")
    return {"name": rid, "reactants": sides[0], "products": sides[1], "propensity": expr}


class _Unsupported(Exception):
    """A math construct with no equivalent in the expression language (the message says which)."""


class _MathConverter:
    """Turn a libsbml ASTNode into an expression-language string, parenthesising compound operands."""

    def __init__(self, libsbml: Any, local: dict[str, float]) -> None:
        self.L = libsbml
        self.local = local
        L = libsbml
        self.unary = {
            L.AST_FUNCTION_EXP: "exp",
            L.AST_FUNCTION_LN: "log",
            L.AST_FUNCTION_ABS: "abs",
            L.AST_FUNCTION_FLOOR: "floor",
            L.AST_FUNCTION_CEILING: "ceil",
        }
        self.nary = {getattr(L, "AST_FUNCTION_MIN", None): "min", getattr(L, "AST_FUNCTION_MAX", None): "max"}
        self.nary.pop(None, None)
        self.handled = {
            L.AST_PLUS, L.AST_TIMES, L.AST_MINUS, L.AST_DIVIDE, L.AST_POWER, L.AST_FUNCTION_POWER,
            L.AST_FUNCTION_ROOT, L.AST_FUNCTION_LOG, *self.unary, *self.nary,
        }

    def convert(self, node: Any) -> str:
        return self._node(node)

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _number(value: float) -> str:
        if not math.isfinite(value):
            raise _Unsupported(f"the number {value!r} is not finite; use a finite value")
        text = repr(int(value)) if value == int(value) and abs(value) < 1e15 else repr(float(value))
        return f"({text})" if value < 0 else text

    @staticmethod
    def _wrap(text: str) -> str:
        """Parenthesise unless `text` is a bare name or a non-negative number."""
        if re.fullmatch(r"[A-Za-z_]\w*|\d+(\.\d*)?([eE][-+]?\d+)?", text):
            return text
        if text.startswith("(") and _balanced_outer(text):
            return text
        return f"({text})"

    def _children(self, node: Any) -> list[str]:
        return [self._node(node.getChild(i)) for i in range(node.getNumChildren())]

    def _node(self, node: Any) -> str:
        L, t = self.L, node.getType()
        if node.isInteger():
            return self._number(float(node.getInteger()))
        if node.isReal():
            return self._number(float(node.getReal()))
        if t == L.AST_NAME:
            name = node.getName()
            if name in self.local:
                return self._number(self.local[name])
            if keyword.iskeyword(name) or name in ("True", "False", "None"):
                raise _Unsupported(f"the id {name!r} is a Python keyword; rename it")
            return name
        if t == L.AST_NAME_TIME:
            raise _Unsupported("time-dependent propensities (the time symbol) are unsupported; remove the dependence on time")
        if t == L.AST_NAME_AVOGADRO:
            return self._number(6.02214076e23)
        if t == L.AST_CONSTANT_PI:
            return repr(math.pi)
        if t == L.AST_CONSTANT_E:
            return repr(math.e)
        if t not in self.handled:
            self._unsupported(node)
        args = self._children(node)
        w = [self._wrap(a) for a in args]
        if t == L.AST_PLUS:
            return " + ".join(w) if w else "0"
        if t == L.AST_TIMES:
            return " * ".join(w) if w else "1"
        if t == L.AST_MINUS:
            if len(w) == 1:
                return f"-{w[0]}"
            return f"{w[0]} - {w[1]}"
        if t == L.AST_DIVIDE and len(w) == 2:
            return f"{w[0]} / {w[1]}"
        if t in (L.AST_POWER, L.AST_FUNCTION_POWER) and len(w) == 2:
            return f"{w[0]} ** {w[1]}"
        if t in self.unary and len(args) == 1:
            return f"{self.unary[t]}({args[0]})"
        if t in self.nary and args:
            out = args[0]
            for a in args[1:]:
                out = f"{self.nary[t]}({out}, {a})"
            return out
        if t == L.AST_FUNCTION_ROOT:
            if len(args) == 1 or (len(args) == 2 and args[0] in ("2", "2.0")):
                return f"sqrt({args[-1]})"
            if len(args) == 2:
                return f"{w[1]} ** (1 / {w[0]})"
        if t == L.AST_FUNCTION_LOG:
            if len(args) == 1 or (len(args) == 2 and args[0] in ("10", "10.0")):
                return f"log10({args[-1]})"
            if len(args) == 2:
                return f"log({args[1]}) / log({args[0]})"
        self._unsupported(node)
        raise AssertionError("unreachable")

    def _unsupported(self, node: Any) -> None:
        fname = node.getName() or self.L.formulaToL3String(node)
        raise _Unsupported(
            f"function/operator {fname!r} is unsupported; use + - * / ^ and "
            "pow, sqrt, root, exp, ln, log10, abs, floor, ceiling, min, max"
        )


def _balanced_outer(text: str) -> bool:
    """True if the first '(' of `text` closes at its last character."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return i == len(text) - 1
    return False
