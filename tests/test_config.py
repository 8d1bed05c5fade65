"""Protocol configs: parsing, validation errors, derived rates, priors, and network moments."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surrogate_abc import BIRTH_DEATH, GENE, ConfigError, load_protocol, parse_protocol
from surrogate_abc.networks.gene import gene_means

DESIGNS = sorted((Path(__file__).resolve().parents[1] / "examples" / "training_design").glob("*.toml"))
SHIPPED = ["seed_protein", "seed_joint", "gene_protein", "gene_joint", "gaussian_mixture", "telegraph_mrna", "telegraph_splicing"]

BD = """
name = "bd"
network = "birth_death"
samples = 1000
[parameters.a]
prior = "uniform"
low = 1.0
high = 10.0
[fixed]
b = 1.0
[histogram.x]
edges = { start = 0, stop = 40, width = 1 }
"""


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_protocols_load_and_give_valid_rates(name):
    p = load_protocol(name)
    theta = p.sample(200, seed=3)
    assert theta.shape == (200, len(p.param_names))
    lo, hi = p.bounds().T
    assert np.all(theta >= lo) and np.all(theta <= hi)
    rates = p.rates(theta)
    assert rates.shape == (200, len(p.rate_names)) and np.all(np.isfinite(rates))
    init = p.initial_state(theta)
    assert init.dtype == np.int64 and np.all(init >= 0)


def test_seed_protein_derives_v1_for_mean_protein_100():
    p = load_protocol("seed_protein")
    rates = p.rates(p.sample(500, seed=1))
    r = dict(zip(p.rate_names, rates.T))
    _, mean_p = gene_means(r["k0"], r["k1"], r["v0"], r["d0"], r["v1"], r["d1"])
    np.testing.assert_allclose(mean_p, 100.0, rtol=1e-12)
    assert np.all(r["d0"] == 1.0)
    assert p.axes[0].bins == 100 and p.axes[0].edges[-1] == 300 and p.axes[0].cap == 300


def test_seed_joint_derives_both_means():
    p = load_protocol("seed_joint")
    r = dict(zip(p.rate_names, p.rates(p.sample(300, seed=2)).T))
    m, pr = gene_means(r["k0"], r["k1"], r["v0"], r["d0"], r["v1"], r["d1"])
    np.testing.assert_allclose(m, 50.0, rtol=1e-12)
    np.testing.assert_allclose(pr, 100.0, rtol=1e-12)
    assert p.species == ("mrna", "protein")


def test_gene_protein_mean_is_free_and_edges_resolve_low_end():
    p = load_protocol("gene_protein")
    assert "mean_protein" in p.param_names
    lo, hi = p.bounds()[p.param_names.index("mean_protein")]
    assert lo <= 20 and hi >= 200
    e = p.axes[0].edges
    assert np.all(np.diff(e)[:40] == 1)  # unit bins at the low end
    j = load_protocol("gene_joint")
    lo, hi = j.bounds()[j.param_names.index("mean_mrna")]
    assert lo <= 5 and hi >= 60


def test_draws_depend_only_on_seed_and_extend():
    p = load_protocol("seed_protein")
    a, b = p.sample(50, seed=7), p.sample(80, seed=7)
    np.testing.assert_array_equal(a, b[:50])
    assert not np.allclose(a, p.sample(50, seed=8))


def test_loguniform_prior_is_uniform_in_log10():
    p = load_protocol("seed_protein")
    k0 = p.sample(20000, seed=0)[:, 0]
    # log10 k0 ~ U(-2, 1): mean -0.5, sd 3/sqrt(12)
    assert abs(np.log10(k0).mean() + 0.5) < 0.03
    assert abs(np.log10(k0).std() - 3 / math.sqrt(12)) < 0.03


def test_dirichlet_weights_sum_to_one():
    p = load_protocol("gaussian_mixture")
    th = p.sample(1000, seed=0)
    w = th[:, [p.param_names.index(f"w{i}") for i in (1, 2, 3)]]
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(w.mean(0), 1 / 3, atol=0.03)


def _bad(text, *match):
    with pytest.raises(ConfigError) as ei:
        parse_protocol(text, source="bad.toml")
    msg = str(ei.value)
    assert "bad.toml" in msg and "\n" not in msg
    for m in match:
        assert m in msg, msg
    return msg


def test_config_errors_name_file_and_field():
    _bad("name = [", "malformed TOML")
    _bad(BD.replace('low = 1.0\nhigh = 10.0', 'low = 10.0\nhigh = 1.0'), "parameters.a", "low", "below")
    _bad(BD.replace('prior = "uniform"', 'prior = "normal"'), "parameters.a", "unknown prior")
    _bad(BD.replace("[fixed]\nb = 1.0", '[derived]\nb = "a * zeta"'), "derived.b", "zeta")
    _bad(BD.replace("[fixed]\nb = 1.0", ""), "needs rate", "b")
    _bad(BD.replace('network = "birth_death"', 'network = "lotka"'), "network", "unknown network")
    _bad(BD.replace("[histogram.x]", "[histogram.y]"), "histogram.y", "unknown species")
    _bad(BD.replace("width = 1 }", "width = 0.7 }"), "histogram.x", "multiple of width")
    _bad("bogus = 1\n" + BD, "bogus", "unknown key")
    _bad(BD + "\nbogus = 1\n", "histogram.x", "bogus")
    _bad(BD.replace('name = "bd"', ""), "name", "missing")
    _bad(BD.replace("samples = 1000", "samples = -5"), "samples")
    _bad(BD.replace("[fixed]\nb = 1.0", '[derived]\nb = "__import__(1)"'), "derived.b")


def test_rates_outside_sane_range_name_parameter_and_value():
    text = BD.replace("[fixed]\nb = 1.0", '[derived]\nb = "a - 5"')
    msg = _bad(text, "b=", "finite and > 0")
    assert "-4" in msg  # a = 1 at the prior's lower corner gives b = -4
    p = parse_protocol(BD, source="ok.toml")
    with pytest.raises(ConfigError, match="a=nan|b=nan|nan"):
        p.rates(np.array([[np.nan]]))


def test_missing_config_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_protocol(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="known protocols"):
        load_protocol("no_such_protocol")


def test_gene_moments_match_closed_forms():
    r = dict(k0=0.3, k1=0.7, v0=2.0, d0=1.0, v1=5.0, d1=0.2)
    mean, cov = GENE.stationary_moments(r)
    ks = r["k0"] + r["k1"]
    m = r["v0"] * r["k0"] / (r["d0"] * ks)
    np.testing.assert_allclose(mean, [r["k0"] / ks, m, r["v1"] * m / r["d1"]], rtol=1e-10)
    # Peccoud & Ycart: Var(m) = <m> + v0^2 k0 k1 / (d0 (k0+k1)^2 (k0+k1+d0))
    var_m = m + r["v0"] ** 2 * r["k0"] * r["k1"] / (r["d0"] * ks**2 * (ks + r["d0"]))
    np.testing.assert_allclose(cov[1, 1], var_m, rtol=1e-10)
    np.testing.assert_allclose(cov[0, 0], r["k0"] * r["k1"] / ks**2, rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(a=st.floats(0.1, 100), b=st.floats(0.1, 10))
def test_birth_death_moments_are_poisson(a, b):
    mean, cov = BIRTH_DEATH.stationary_moments({"a": a, "b": b})
    np.testing.assert_allclose(mean[0], a / b, rtol=1e-9)
    np.testing.assert_allclose(cov[0, 0], a / b, rtol=1e-9)


def test_gillespy2_model_has_all_reactions():
    model = GENE.gillespy2_model(dict(k0=1, k1=1, v0=1, d0=1, v1=1, d1=1), {"gene_on": 1, "protein": 5})
    assert set(model.listOfReactions) == {r.name for r in GENE.reactions}
    assert model.listOfSpecies["protein"].initial_value == 5


def test_training_designs_are_found():
    """The design test below runs once per file; a moved folder must fail here, not leave it with no cases."""
    assert len(DESIGNS) >= 10


@pytest.mark.parametrize("path", DESIGNS, ids=[p.stem for p in DESIGNS])
def test_training_design_protocols_match_gene_joint(path):
    """examples/training_design/*.toml reshape gene_joint's prior (or gene_joint_mrna's, for the joint emulator's
    mRNA factor) for the default joint emulator's training data (narrowed to a region, or widened past its
    bounds): the files they make must train with that protocol's (same name, parameters, rates, bins), each
    parameter's range overlapping its prior range and at least one differing."""
    p = load_protocol(str(path))
    assert p.name in ("gene_joint", "gene_joint_mrna"), p.name
    ref = load_protocol(p.name)
    assert (p.name, p.param_names, p.rate_names, p.species) == (ref.name, ref.param_names, ref.rate_names, ref.species)
    for a, b in zip(p.axes, ref.axes):
        assert np.array_equal(a.edges, b.edges)
    lo, hi = p.bounds().T
    ref_lo, ref_hi = ref.bounds().T
    assert np.all(lo > 0) and np.all(lo < ref_hi) and np.all(hi > ref_lo) and np.any((lo != ref_lo) | (hi != ref_hi))
    theta = p.sample(100, seed=1)
    assert np.all((theta >= lo) & (theta <= hi))
    np.testing.assert_allclose(p.rates(theta), ref.rates(theta))
