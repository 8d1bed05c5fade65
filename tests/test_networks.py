"""Networks as data: the [network] table, conservation laws, closed forms, FSP and SSA on user networks."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from surrogate_abc import ConfigError, load_protocol, parse_protocol
from surrogate_abc.config import FSPSettings
from surrogate_abc.metrics import sampling_tv_quantile
from surrogate_abc.networks import GENE, find_closed_form, get_network, network_names
from surrogate_abc.networks.closed_form import beta_poisson_pmf
from surrogate_abc.networks.expressions import degree, evaluate, to_gillespy2
from surrogate_abc.simulate.fsp import solve_stationary
from surrogate_abc.simulate.ssa import SSASimulator

from conftest import BIRTH_DEATH_TOML, run_cli

DATA = Path(__file__).parent / "data"

# The issue's example schema, completed into a protocol: feedback through a bound promoter.
FEEDBACK = """
name = "my_feedback"
samples = 100000

[network]
species = ["g_free", "g_bound", "protein"]

[[network.reactions]]
name = "bind"
reactants = { g_free = 1, protein = 1 }
products  = { g_bound = 1 }
rate = "sb"

[[network.reactions]]
name = "unbind"
reactants = { g_bound = 1 }
products  = { g_free = 1, protein = 1 }
rate = "su"

[[network.reactions]]
name = "make"
reactants = {}
products  = { protein = 1 }
propensity = "rho * g_free + rho_b * g_bound"

[[network.reactions]]
name = "decay"
reactants = { protein = 1 }
products = {}
rate = "d"

[parameters.rho]
prior = "uniform"
low = 10.0
high = 30.0

[fixed]
sb = 0.05
su = 1.0
rho_b = 5.0
d = 1.0

[initial]
g_free = 1

[histogram.protein]
edges = { start = 0, stop = 80, width = 1 }
"""

# Hill self-repression and dimer decay (2 P -> 0, mass action with the 1/2 convention): not affine.
HILL = """
name = "hill"
samples = 20000

[network]
species = ["protein"]

[[network.reactions]]
name = "make"
products = { protein = 1 }
propensity = "rho / (1 + (protein / K) ** 2) + max(0, min(1, 2 - protein))"

[[network.reactions]]
name = "decay"
reactants = { protein = 1 }
rate = "d"

[[network.reactions]]
name = "dimer_decay"
reactants = { protein = 2 }
rate = "c"

[parameters.rho]
prior = "uniform"
low = 20.0
high = 40.0

[fixed]
K = 10.0
d = 1.0
c = 0.01

[histogram.protein]
edges = { start = 0, stop = 60, width = 1 }
"""


def _rates(p, theta):
    return dict(zip(p.rate_names, p.rates(np.atleast_2d(theta))[0]))


def _fsp(p, theta, settings=None):
    return solve_stationary(p.network, _rates(p, theta), p.species, [a.cap for a in p.axes], settings or p.fsp)


def _tv(p, q):
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


# ------------------------------------------------------------------------------------------- the table
def test_issue_schema_parses_and_finds_conservation():
    p = parse_protocol(FEEDBACK, "fb.toml")
    net = p.network
    assert net.species == ("g_free", "g_bound", "protein")
    assert set(net.rate_names) == {"sb", "su", "rho", "rho_b", "d"}
    (law,) = net.laws  # found from the stoichiometry and [initial], never declared
    assert dict(law.coefficients) == {"g_free": 1, "g_bound": 1} and law.total == 1
    assert law.eliminated == "g_free" and net.reduced_species == ("g_bound", "protein")
    assert net.reduced_bounds() == {"g_bound": 1} and not net.affine
    bind = next(r for r in net.reactions if r.name == "bind")
    assert evaluate(bind.propensity_expression(), {"sb": 0.5, "g_free": 1.0, "protein": 7.0}) == 3.5


def test_mass_action_combinatorial_convention_and_degree():
    p = parse_protocol(HILL, "hill.toml")
    dimer = next(r for r in p.network.reactions if r.name == "dimer_decay")
    for x in range(6):
        assert evaluate(dimer.propensity_expression(), {"c": 0.3, "protein": float(x)}) == pytest.approx(
            0.3 * math.comb(x, 2))
    assert degree(dimer.propensity_expression(), ["protein"]) == 2
    assert degree("rho * g + k", ["g"]) == 1 and degree("rho / (1 + p)", ["p"]) == math.inf
    assert "fabs" in to_gillespy2("min(a, b)") and "min" not in to_gillespy2("min(a, b)")
    env = {"a": np.array([1.0, 5.0]), "b": np.array([3.0, 2.0])}
    g = to_gillespy2("max(a, b, 4) - abs(a - b)")
    assert np.allclose(eval(g, {"fabs": np.abs}, env), evaluate("max(a, b, 4) - abs(a - b)", env))


def test_shipped_networks_and_protocols_load():
    assert {"gene", "birth_death", "telegraph", "autoregulation", "gaussian_mixture"} <= set(network_names())
    tele = load_protocol("telegraph_mrna")
    assert tele.param_names == ("k0", "k1", "v0") and tele.species == ("mrna",)
    box = dict(zip(tele.param_names, tele.bounds()))
    assert math.log10(box["k0"][1] / box["k0"][0]) >= 3          # burst frequency over >= 3 decades
    sizes = [box["v0"][0] / box["k1"][1], box["v0"][1] / box["k1"][0]]
    assert math.log10(sizes[1] / sizes[0]) >= 3                   # burst size v0 / k1 over >= 3 decades
    assert box["v0"][1] >= 1000 and tele.axes[0].cap >= 1200      # mean mRNA up to ~1000, bins beyond
    auto = load_protocol("autoregulation")
    bind = next(r for r in auto.network.reactions if r.name == "bind")
    assert bind.order == 2 and set(bind.reactants) == {"g_free", "protein"}
    assert not auto.network.affine


def test_gene_file_network_equals_the_former_builtin():
    """The gene network read from configs/networks/gene.toml has the former hard-coded model's reactions."""
    rates = dict(k0=0.3, k1=1.7, v0=20.0, d0=1.0, v1=5.0, d1=0.2)
    former = {  # (const, coef over gene_on, mrna, protein), shift
        "on": (0.3, [-0.3, 0, 0], [1, 0, 0]), "off": (0.0, [1.7, 0, 0], [-1, 0, 0]),
        "transcription": (0.0, [20.0, 0, 0], [0, 1, 0]), "mrna_decay": (0.0, [0, 1.0, 0], [0, -1, 0]),
        "translation": (0.0, [0, 5.0, 0], [0, 0, 1]), "protein_decay": (0.0, [0, 0, 0.2], [0, 0, -1]),
    }
    got = {r.name: r for r in GENE.affine_reactions(rates)}
    assert set(got) == set(former)
    for name, (const, coef, shift) in former.items():
        assert got[name].const == const and got[name].coef.tolist() == coef and got[name].shift.tolist() == shift


def test_gene_fsp_equals_results_before_networks_were_data():
    """FSP of the gene protocols equals the former code's results (tests/data, made at commit 87e9a77) to 1e-10."""
    ref = json.loads((DATA / "gene_fsp_reference.json").read_text())
    for rec in ref["sets"]:
        p = load_protocol(rec["protocol"])
        res = _fsp(p, rec["theta"])
        assert abs(res.overflow - rec["overflow"]) < 1e-10 and abs(res.tail_mass - rec["tail_mass"]) < 1e-10
        assert list(res.truncation) == rec["truncation"]
        if "pmf" in rec:
            assert np.abs(res.pmf - np.array(rec["pmf"])).max() < 1e-10
        else:
            assert np.abs(res.pmf.sum(1) - rec["marginals"][0]).max() < 1e-10
            assert np.abs(res.pmf.sum(0) - rec["marginals"][1]).max() < 1e-10
            i = ref["sets"].index(rec)
            w = np.random.default_rng(i).random((8,) + res.pmf.shape)
            assert np.allclose([(wi * res.pmf).sum() for wi in w], rec["projections"], rtol=0, atol=1e-10)


BAD_TABLES = {
    "unknown species": ('products  = { g_bound = 1 }', 'products  = { g_bond = 1 }', "'bind'", "g_bond"),
    "non-integer stoichiometry": ('reactants = { g_free = 1, protein = 1 }', 'reactants = { g_free = 1, protein = 1.5 }',
                                  "'bind'", "non-negative integer"),
    "negative stoichiometry": ('products  = { g_bound = 1 }', 'products  = { g_bound = -1 }', "'bind'", "non-negative"),
    "unknown symbol": ('"rho * g_free + rho_b * g_bound"', '"rho * g_free + rho_x * g_bound"', "'make'", "rho_x"),
    "undefined rate": ('rate = "sb"', 'rate = "sbb"', "'bind'", "sbb"),
    "rate and propensity": ('rate = "sb"', 'rate = "sb"\npropensity = "sb * protein"', "'bind'", "not both"),
    "neither": ('rate = "sb"', '', "'bind'", "needs `rate"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_network_tables_exit_2_naming_reaction_and_field(tmp_path, case):
    old, new, reaction, needle = BAD_TABLES[case]
    assert old in FEEDBACK
    cfg = tmp_path / "bad.toml"
    cfg.write_text(FEEDBACK.replace(old, new, 1))
    with pytest.raises(ConfigError) as ei:
        load_protocol(cfg)
    msg = str(ei.value)
    assert "\n" not in msg and str(cfg) in msg and reaction in msg and needle in msg, msg
    r = run_cli(["simulate", str(cfg), "--n", "2", "--engine", "fsp", "--out", str(tmp_path / "o.h5")], cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o.h5").exists()


def test_conserved_total_must_not_depend_on_parameters(tmp_path):
    text = FEEDBACK.replace("[initial]\ng_free = 1", '[initial]\ng_free = "round(rho / 10)"')
    with pytest.raises(ConfigError, match="conserve g_free \\+ g_bound"):
        parse_protocol(text, "x.toml")


def test_network_file_and_stored_table(tmp_path):
    """network = { file = ... } resolves relative to the protocol; the stored table replaces the file later."""
    start = FEEDBACK.index("[network]")
    end = FEEDBACK.index("[parameters.rho]")
    (tmp_path / "net.toml").write_text(FEEDBACK[start:end])
    cfg = tmp_path / "p.toml"
    cfg.write_text(FEEDBACK[:start] + 'network = { file = "net.toml" }\n' + FEEDBACK[end:])
    p = load_protocol(cfg)
    assert p.network.name == "net"  # a network file's table is named after the file unless it says
    assert {**p.network.table(), "name": "x"} == {**parse_protocol(FEEDBACK, "x").network.table(), "name": "x"}
    (tmp_path / "net.toml").unlink()
    again = parse_protocol(p.toml_text, "stored", network_toml=p.network_toml)
    assert again.network.table() == p.network.table() and again.network.laws == p.network.laws
    with pytest.raises(ConfigError, match="network file .* not found"):
        load_protocol(cfg)


# ------------------------------------------------------------------------------------------- closed forms
def test_beta_poisson_against_quadrature():
    r = {"k_on": 0.7, "k_off": 2.3, "v": 40.0, "d": 1.0}
    pmf = beta_poisson_pmf(r, 120)
    a, b, v = 0.7, 2.3, 40.0
    for n in (0, 1, 5, 13, 40, 90):
        ref = integrate.quad(lambda x: stats.poisson.pmf(n, v * x) * stats.beta.pdf(x, a, b), 0, 1, limit=200)[0]
        assert pmf[n] == pytest.approx(ref, rel=1e-7, abs=1e-14)
    assert abs(pmf.sum() - 1) < 1e-12


def test_closed_forms_are_recognised_from_structure():
    assert find_closed_form(GENE, ["mrna"]).law == "beta_poisson"
    assert find_closed_form(GENE, ["protein"]) is None and find_closed_form(GENE, ["mrna", "protein"]) is None
    assert find_closed_form(get_network("birth_death").with_totals({}), ["x"]).law == "poisson"
    assert find_closed_form(load_protocol("autoregulation").network, ["protein"]) is None


@pytest.mark.parametrize("corner", ["low", "mid", "high", "bursty", "fast"])
def test_telegraph_fsp_equals_beta_poisson(corner):
    p = load_protocol("telegraph_mrna")
    box = p.bounds()
    theta = {"low": box[:, 0], "mid": np.sqrt(box[:, 0] * box[:, 1]), "high": box[:, 1],
             "bursty": np.array([0.05, 100.0, 1000.0]), "fast": np.array([10.0, 0.1, 1000.0])}[corner]
    res = _fsp(p, theta, FSPSettings(tol=1e-12, max_states=100_000))
    law = find_closed_form(p.network, p.species)
    q = law.pmf(_rates(p, theta), p.axes[0].cap)
    tv = 0.5 * (np.abs(q - res.pmf).sum() + abs((1 - q.sum()) - res.overflow))
    assert tv < 1e-8, tv


def test_birth_death_fsp_equals_poisson():
    p = parse_protocol(BIRTH_DEATH_TOML, "bd.toml")
    for a in (4.0, 5.5):
        res = _fsp(p, [a], FSPSettings(tol=1e-12))
        ref = stats.poisson.pmf(np.arange(20), a)
        assert _tv(res.pmf, ref) + abs(res.overflow - stats.poisson.sf(19, a)) < 1e-10


def test_exact_engine_writes_pmf_grid(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text(load_protocol("telegraph_mrna").toml_text.replace('network = "telegraph"',
                                                                      'network = "telegraph"\n'))
    r = run_cli(["simulate", str(cfg), "--engine", "exact", "--n", "3", "--out", str(tmp_path / "e.h5"), "--quiet"],
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import h5py

    with h5py.File(tmp_path / "e.h5") as f:
        assert f["grid"].attrs["kind"] == "pmf" and f["grid"].shape == (3, 1200)
        assert "[network]" in f.attrs["network_toml"]
        np.testing.assert_allclose(f["grid"][...].sum(1) + f["overflow"][...], 1.0, atol=1e-12)


# ------------------------------------------------------------------------------------------- SSA vs FSP
def _gene_protein():
    """seed_joint observing protein alone."""
    head = load_protocol("seed_joint").toml_text.split("[histogram.mrna]")[0]
    return parse_protocol(head + "[histogram.protein]\nedges = { start = 0, stop = 400, width = 5 }\n", "g.toml")


SSA_CASES = {  # protocol, fast-switching parameter values
    "gene": (_gene_protein, {"k0": 2.0, "k1": 3.0, "v0": 0.5, "d1": 0.5}),
    "birth_death": (lambda: parse_protocol(BIRTH_DEATH_TOML, "bd.toml"), {"a": 5.0}),
    "telegraph_mrna": (lambda: load_protocol("telegraph_mrna"), {"k0": 2.0, "k1": 3.0, "v0": 30.0}),
    "autoregulation": (lambda: load_protocol("autoregulation"), {"sb": 0.05, "su": 1.0, "rho_u": 30.0, "rho_b": 5.0}),
    "hill": (lambda: parse_protocol(HILL, "hill.toml"), {"rho": 30.0}),
}


@pytest.mark.parametrize("case", sorted(SSA_CASES))
def test_ssa_matches_fsp_within_sampling_error(case):
    make, values = SSA_CASES[case]
    p = make()
    theta = np.array([[values[k] for k in p.param_names]])
    rates = _rates(p, theta)
    cap = p.axes[0].cap
    fsp = solve_stationary(p.network, rates, p.species, [cap], FSPSettings(tol=1e-10, max_states=200_000))
    n = 20_000
    sim = SSASimulator(p.network, p.species)
    init = dict(zip(p.network.species, p.initial_state(theta)[0]))
    grid, over, _ = sim.histogram(rates, init, n, 20, seed=7, caps=[cap])
    emp = np.append(grid, over) / n
    tv = 0.5 * np.abs(emp - np.append(fsp.pmf, fsp.overflow)).sum()
    bound = sampling_tv_quantile(fsp.pmf, n, np.random.default_rng(1))
    assert tv < 1.5 * bound, (case, tv, bound)  # 1.5x: samples every dt are only nearly independent
