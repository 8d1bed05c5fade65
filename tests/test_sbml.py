"""SBML import: a telegraph gene model round-trips into the network table; unsupported SBML is refused."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from surrogate_abc.errors import ConfigError
from surrogate_abc.networks.expressions import evaluate, names_in
from surrogate_abc.networks.sbml import SBMLModel, read_sbml

libsbml = pytest.importorskip("libsbml")

RATES = {"k0": 0.3, "k1": 0.7, "v0": 12.0, "d0": 1.5}
POINT = {"G_off": 1.0, "G_on": 1.0, "M": 7.0}  # a state at which propensities are compared


def _species(model, sid: str, amount: float | None = 0, concentration: float | None = None, compartment: str = "cell"):
    s = model.createSpecies()
    s.setId(sid)
    s.setCompartment(compartment)
    if amount is not None:
        s.setInitialAmount(amount)
    if concentration is not None:
        s.setInitialConcentration(concentration)
    s.setHasOnlySubstanceUnits(True)
    s.setBoundaryCondition(False)
    s.setConstant(False)
    return s


def _reaction(model, rid: str, reactants: dict, products: dict, law: str | None):
    r = model.createReaction()
    r.setId(rid)
    r.setReversible(False)
    if (model.getLevel(), model.getVersion()) == (3, 1):
        r.setFast(False)
    for side, create in ((reactants, r.createReactant), (products, r.createProduct)):
        for sid, n in side.items():
            sr = create()
            sr.setSpecies(sid)
            sr.setStoichiometry(n)
            sr.setConstant(True)
    if law is not None:
        r.createKineticLaw().setMath(libsbml.parseL3Formula(law))
    return r


def telegraph(level: int = 3, version: int = 2):
    """G_off <-> G_on, G_on -> G_on + M, M -> 0 with global k0, k1, v0, d0 and compartment `cell` (size 1)."""
    doc = libsbml.SBMLDocument(level, version)
    model = doc.createModel()
    model.setName("telegraph gene")
    c = model.createCompartment()
    c.setId("cell")
    c.setSize(1.0)
    c.setConstant(True)
    c.setSpatialDimensions(3)
    for name, value in RATES.items():
        p = model.createParameter()
        p.setId(name)
        p.setValue(value)
        p.setConstant(True)
    _species(model, "G_off", 1)
    _species(model, "G_on", 0)
    _species(model, "M", 3)
    _reaction(model, "on", {"G_off": 1}, {"G_on": 1}, "k0 * G_off")
    _reaction(model, "off", {"G_on": 1}, {"G_off": 1}, "k1 * G_on")
    _reaction(model, "transcribe", {"G_on": 1}, {"G_on": 1, "M": 1}, "v0 * G_on * cell")
    _reaction(model, "decay", {"M": 1}, {}, "d0 * M")
    return doc


def write(doc, tmp_path: Path, name: str = "model.xml") -> Path:
    path = tmp_path / name
    assert libsbml.writeSBMLToFile(doc, str(path)) == 1
    return path


def propensity(m: SBMLModel, rid: str, **state: float) -> float:
    (r,) = [r for r in m.table["reactions"] if r["name"] == rid]
    env = {**m.parameters, **POINT, **state}
    return float(evaluate(r["propensity"], env))


@pytest.mark.parametrize("level,version", [(3, 1), (3, 2)])
def test_telegraph_table(tmp_path: Path, level: int, version: int) -> None:
    m = read_sbml(write(telegraph(level, version), tmp_path))
    t = m.table
    assert t["name"] == "telegraph_gene"
    assert t["species"] == ["G_off", "G_on", "M"]
    reactions = {r["name"]: r for r in t["reactions"]}
    assert list(reactions) == ["on", "off", "transcribe", "decay"]
    assert (reactions["on"]["reactants"], reactions["on"]["products"]) == ({"G_off": 1}, {"G_on": 1})
    assert (reactions["off"]["reactants"], reactions["off"]["products"]) == ({"G_on": 1}, {"G_off": 1})
    assert reactions["transcribe"]["reactants"] == {"G_on": 1}
    assert reactions["transcribe"]["products"] == {"G_on": 1, "M": 1}
    assert (reactions["decay"]["reactants"], reactions["decay"]["products"]) == ({"M": 1}, {})
    assert m.initial == {"G_off": 1, "G_on": 0, "M": 3}
    assert all(isinstance(v, int) for v in m.initial.values())
    assert m.parameters == {**RATES, "cell": 1.0}
    assert names_in(reactions["transcribe"]["propensity"]) == {"v0", "G_on", "cell"}
    x = POINT
    expected = {
        "on": RATES["k0"] * x["G_off"],
        "off": RATES["k1"] * x["G_on"],
        "transcribe": RATES["v0"] * x["G_on"],
        "decay": RATES["d0"] * x["M"],
    }
    for rid, value in expected.items():
        assert propensity(m, rid) == pytest.approx(value)


def test_concentration_times_size_and_modifier(tmp_path: Path) -> None:
    doc = telegraph()
    model = doc.getModel()
    model.getCompartment("cell").setSize(2.0)
    model.getSpecies("M").unsetInitialAmount()
    model.getSpecies("M").setInitialConcentration(2.5)
    # an M-dependent feedback written with a modifier, which is allowed
    r = _reaction(model, "feedback", {}, {"M": 1}, "k1 * G_on / (1 + M)")
    r.createModifier().setSpecies("G_on")
    m = read_sbml(write(doc, tmp_path))
    assert m.initial["M"] == 5
    assert m.parameters["cell"] == 2.0
    assert propensity(m, "feedback", G_on=1.0, M=4.0) == pytest.approx(RATES["k1"] / 5.0)


def test_local_parameters_are_substituted(tmp_path: Path) -> None:
    doc = telegraph()
    kl = doc.getModel().getReaction("decay").getKineticLaw()
    kl.setMath(libsbml.parseL3Formula("d0 * kdeg * M"))
    for pid, value in (("kdeg", 0.25), ("d0", -2.0)):  # d0 shadows the global d0
        lp = kl.createLocalParameter()
        lp.setId(pid)
        lp.setValue(value)
    m = read_sbml(write(doc, tmp_path))
    expr = next(r["propensity"] for r in m.table["reactions"] if r["name"] == "decay")
    assert names_in(expr) == {"M"}
    assert propensity(m, "decay") == pytest.approx(-2.0 * 0.25 * POINT["M"])
    assert "kdeg" not in m.parameters and m.parameters["d0"] == RATES["d0"]


def test_pow_ln_and_friends(tmp_path: Path) -> None:
    doc = telegraph()
    model = doc.getModel()
    laws = {
        "powln": ("k1 * pow(M, 2) * ln(v0)", RATES["k1"] * 49 * np.log(12.0)),
        "nested": ("(M^2)^0.5 * -k0^2", 7.0 * -(0.3**2)),
        "misc": ("sqrt(M) + root(3, 8) + log10(100) + log(2, 8) + exp(0) + abs(-d0) + floor(1.5) + ceiling(1.5)",
                 np.sqrt(7.0) + 2 + 2 + 3 + 1 + 1.5 + 1 + 2),
        "minmax": ("max(M, 10, 2) - min(M, 3) + pi - exponentiale", 10 - 3 + np.pi - np.e),
        "rational": ("(1/2) * M", 3.5),
    }
    for rid, (law, _) in laws.items():
        _reaction(model, rid, {}, {"M": 1}, law)
    m = read_sbml(write(doc, tmp_path))
    for rid, (law, value) in laws.items():
        assert propensity(m, rid) == pytest.approx(value), law


def _set_law(rid: str, law: str) -> Callable:
    def edit(model) -> None:
        model.getReaction(rid).getKineticLaw().setMath(libsbml.parseL3Formula(law))
    return edit


def _event(model) -> None:
    e = model.createEvent()
    e.setId("pulse")
    e.setUseValuesFromTriggerTime(True)
    trig = e.createTrigger()
    trig.setMath(libsbml.parseL3Formula("M > 10"))
    trig.setInitialValue(True)
    trig.setPersistent(True)
    ea = e.createEventAssignment()
    ea.setVariable("M")
    ea.setMath(libsbml.parseL3Formula("0"))


def _rule(kind: str) -> Callable:
    def edit(model) -> None:
        rule = getattr(model, f"create{kind}Rule")()
        if kind != "Algebraic":
            rule.setVariable("k0")
        rule.setMath(libsbml.parseL3Formula("k1 * 2"))
    return edit


def _initial_assignment(model) -> None:
    ia = model.createInitialAssignment()
    ia.setSymbol("M")
    ia.setMath(libsbml.parseL3Formula("2 * v0"))


def _constraint(model) -> None:
    model.createConstraint().setMath(libsbml.parseL3Formula("M < 100"))


def _function_definition(model) -> None:
    fd = model.createFunctionDefinition()
    fd.setId("mm")
    fd.setMath(libsbml.parseL3Formula("lambda(x, x / (1 + x))"))


def _species_attr(attr: str) -> Callable:
    def edit(model) -> None:
        getattr(model.getSpecies("M"), f"set{attr}")(True)
    return edit


def _stoichiometry(value: float) -> Callable:
    def edit(model) -> None:
        model.getReaction("transcribe").getProduct("M").setStoichiometry(value)
    return edit


def _reversible(model) -> None:
    model.getReaction("on").setReversible(True)


def _no_law(model) -> None:
    model.getReaction("decay").unsetKineticLaw()


def _initial_amount(value: float) -> Callable:
    def edit(model) -> None:
        model.getSpecies("M").setInitialAmount(value)
    return edit


UNSUPPORTED = [
    ("event", _event, ["event 'pulse'", "unsupported"]),
    ("assignment_rule", _rule("Assignment"), ["assignment rule for 'k0'", "unsupported"]),
    ("rate_rule", _rule("Rate"), ["rate rule for 'k0'", "unsupported"]),
    ("algebraic_rule", _rule("Algebraic"), ["algebraic rule", "unsupported"]),
    ("initial_assignment", _initial_assignment, ["initial assignment for 'M'", "unsupported"]),
    ("constraint", _constraint, ["constraint", "unsupported"]),
    ("function_definition", _function_definition, ["function definition 'mm'", "inline"]),
    ("boundary", _species_attr("BoundaryCondition"), ["species 'M'", "boundaryCondition=true is unsupported"]),
    ("constant_species", _species_attr("Constant"), ["species 'M'", "constant=true is unsupported"]),
    ("stoich_1.5", _stoichiometry(1.5), ["reaction 'transcribe'", "stoichiometry 1.5", "integer"]),
    ("stoich_negative", _stoichiometry(-1.0), ["reaction 'transcribe'", "stoichiometry -1", "integer"]),
    ("reversible", _reversible, ["reaction 'on'", "reversible=true", "split it into two irreversible reactions"]),
    ("no_law", _no_law, ["reaction 'decay'", "no kinetic law"]),
    ("sin", _set_law("decay", "d0 * sin(M)"), ["reaction 'decay'", "'sin' is unsupported"]),
    ("piecewise", _set_law("decay", "piecewise(d0, M > 1, 0)"), ["reaction 'decay'", "'piecewise' is unsupported"]),
    ("time", _set_law("decay", "d0 * M * time"), ["reaction 'decay'", "time"]),
    ("unknown_symbol", _set_law("decay", "d0 * M * nope"), ["reaction 'decay'", "'nope'", "declare it"]),
    ("fractional_count", _initial_amount(2.5), ["species 'M'", "initialAmount = 2.5", "whole number"]),
    ("negative_count", _initial_amount(-1), ["species 'M'", "non-negative"]),
]


@pytest.mark.parametrize("edit,needles", [u[1:] for u in UNSUPPORTED], ids=[u[0] for u in UNSUPPORTED])
def test_unsupported_constructs(tmp_path: Path, edit: Callable, needles: list[str]) -> None:
    doc = telegraph()
    edit(doc.getModel())
    path = write(doc, tmp_path)
    with pytest.raises(ConfigError) as info:
        read_sbml(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    for needle in needles:
        assert needle in msg


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        read_sbml(tmp_path / "missing.xml", source="proto.toml")
    assert str(info.value).startswith(f"proto.toml: network.sbml {tmp_path / 'missing.xml'}: ")

    bad = tmp_path / "bad.xml"
    bad.write_text("<?xml version='1.0'?>\n<sbml xmlns='http://www.sbml.org/sbml/level3/version2/core' level='3' version='2'>\n<model\n")
    with pytest.raises(ConfigError, match="libsbml cannot read it") as info:
        read_sbml(bad)
    assert "\n" not in str(info.value)

    empty = write(libsbml.SBMLDocument(3, 2), tmp_path, "empty.xml")
    with pytest.raises(ConfigError, match="no <model>"):
        read_sbml(empty)


def test_name_falls_back_to_file_stem(tmp_path: Path) -> None:
    doc = telegraph()
    doc.getModel().unsetName()
    m = read_sbml(write(doc, tmp_path, "2-state gene.xml"))
    assert m.table["name"] == "_2_state_gene"


def test_protocol_with_sbml_network_runs_fsp_and_closed_form(tmp_path: Path) -> None:
    """network = { sbml = ... } in a protocol: SBML values fill [fixed] and [initial], FSP equals Beta-Poisson,
    and the stored network table loads without the SBML file."""
    from surrogate_abc import load_protocol, parse_protocol
    from surrogate_abc.networks.closed_form import beta_poisson_pmf
    from surrogate_abc.simulate.fsp import solve_stationary

    write(telegraph(), tmp_path, "gene.xml")
    cfg = tmp_path / "p.toml"
    cfg.write_text('name = "sbml_gene"\nnetwork = { sbml = "gene.xml" }\n'
                   '[parameters.v0]\nprior = "uniform"\nlow = 5.0\nhigh = 20.0\n'
                   '[histogram.M]\nedges = { start = 0, stop = 80, width = 1 }\n')
    p = load_protocol(cfg)
    assert set(p.fixed) >= {"k0", "k1", "d0"} and p.network.laws
    rates = dict(zip(p.rate_names, p.rates([[10.0]])[0]))
    res = solve_stationary(p.network, rates, p.species, [80], p.fsp)
    kinds = {r.name: r.rate for r in p.network.reactions}
    assert kinds["on"] == "k0" and kinds["decay"] == "d0"  # laws `k * X` read as mass action
    assert kinds["transcribe"] is None  # v0 * G_on * cell stays a custom propensity
    ref = beta_poisson_pmf({"k_on": rates["k0"], "k_off": rates["k1"], "v": rates["v0"] * rates["cell"],
                            "d": rates["d0"]}, 80)
    assert 0.5 * np.abs(res.pmf - ref).sum() < 1e-8
    (tmp_path / "gene.xml").unlink()
    again = parse_protocol(p.toml_text, "stored", network_toml=p.network_toml)
    assert again.fixed == p.fixed and again.network.laws == p.network.laws
