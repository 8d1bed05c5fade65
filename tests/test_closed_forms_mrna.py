"""Closed-form mRNA laws for model comparison (poisson, negbin, telegraph_mrna): the negative binomial law of the
birth-immigration-death network, recognised from structure; the vectorised ExactEmulator against scipy and the
per-set pmfs; binomial thinning against closed forms and against thinned samples."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from surrogate_abc.config import FSPSettings, load_protocol, parse_protocol
from surrogate_abc.emulators.exact import ExactEmulator, bin_integer_pmf, thin_integer_pmf
from surrogate_abc.metrics import sampling_tv_quantile, total_variation
from surrogate_abc.networks import find_closed_form, get_network, network_names
from surrogate_abc.networks.closed_form import (
    LAWS,
    beta_poisson_pmf,
    beta_poisson_pmf_rows,
    negative_binomial_pmf,
)
from surrogate_abc.simulate.engines import available_engines
from surrogate_abc.simulate.fsp import solve_stationary

BURSTY_TABLE = """
[network]
name = "{name}"
species = ["mrna"{extra_species}]

[[network.reactions]]
name = "immigration"
reactants = {{}}
products = {{ mrna = 1 }}
rate = "a"

[[network.reactions]]
name = "duplication"
reactants = {{ mrna = 1 }}
products = {{ mrna = 2 }}
{dup}

[[network.reactions]]
name = "decay"
reactants = {{ mrna = 1 }}
products = {{}}
rate = "m"
{more}
"""


def _bursty_protocol(dup: str = 'rate = "l"', more: str = "", extra_species: str = "") -> str:
    """negbin.toml with the bursty network written inline (variants: the duplication's rate, more reactions)."""
    text = load_protocol("negbin").toml_text.replace('network = "bursty"\n', "")
    return text + BURSTY_TABLE.format(name="variant", dup=dup, more=more, extra_species=extra_species)


def _scipy_bins(dist, edges: np.ndarray) -> np.ndarray:
    """Bin masses (then the overflow, to relative precision) of a frozen scipy count distribution."""
    top = int(edges[-1])
    k = np.arange(top)
    pmf = dist.pmf(k)
    idx = np.searchsorted(edges, k, side="right") - 1
    inside = (k >= edges[0]) & (k < edges[-1])
    probs = np.bincount(idx[inside], weights=pmf[inside], minlength=len(edges) - 1)
    return np.append(probs, pmf[~inside].sum() + dist.sf(top - 1))


def _close(got: np.ndarray, ref: np.ndarray, rtol: float, floor: float = 1e-280, atol: float = 1e-15,
           overflow_rel: bool = True) -> None:
    """Relative agreement where the reference is above floor (the overflow, last, too if overflow_rel: not for
    references whose overflow is 1 - sum), absolute everywhere."""
    np.testing.assert_allclose(got, ref, rtol=0, atol=atol)
    m = ref > floor
    if not overflow_rel:
        m[-1] = False
    np.testing.assert_allclose(got[m], ref[m], rtol=rtol)


# ------------------------------------------------------------------------------------ structure and files
def test_negative_binomial_is_recognised_from_structure_only():
    law = find_closed_form(get_network("bursty"), ["mrna"])
    assert law is not None and law.law == "negative_binomial"
    assert dict(law.roles) == {"immigration": "a", "birth": "l", "death": "m"}
    assert find_closed_form(get_network("constitutive"), ["mrna"]).law == "poisson"
    assert find_closed_form(get_network("birth_death"), ["x"]).law == "poisson"
    # (a promoter's conservation law is bound by a protocol's initial counts)
    assert find_closed_form(load_protocol("telegraph_mrna").network, ["mrna"]).law == "beta_poisson"
    assert find_closed_form(load_protocol("gene_joint").network, ["mrna"]).law == "beta_poisson"
    assert find_closed_form(load_protocol("autoregulation").network, ["protein"]) is None
    # the same reactions under another name are recognised; changed structure is not
    assert find_closed_form(parse_protocol(_bursty_protocol(), "v.toml").network, ["mrna"]).law == "negative_binomial"
    not_nb = {
        "propensity": _bursty_protocol(dup='propensity = "l * mrna"'),               # not mass action
        "dimer decay": _bursty_protocol(more='[[network.reactions]]\nname = "dimer"\nreactants = { mrna = 2 }\n'
                                              'products = { mrna = 1 }\nrate = "k2"\n'),
        "X -> 3X": _bursty_protocol().replace("products = { mrna = 2 }", "products = { mrna = 3 }"),
        "no decay": _bursty_protocol().replace("products = {}\nrate = \"m\"", "products = { mrna = 1 }\nrate = \"m\""),
    }
    for case, text in not_nb.items():
        text = text.replace("[derived]", "[fixed]\nk2 = 1.0\n\n[derived]") if "k2" in text else text
        net = parse_protocol(text, f"{case}.toml").network
        law = find_closed_form(net, ["mrna"])
        assert law is None or law.law != "negative_binomial", case


def test_shipped_mrna_protocols_load_with_the_telegraph_bins():
    assert {"bursty", "constitutive"} <= set(network_names())
    tele = load_protocol("telegraph_mrna")
    for name, params in (("poisson", ("k",)), ("negbin", ("k0", "b"))):
        p = load_protocol(name)
        assert p.name == name and p.param_names == params and p.species == ("mrna",) and p.description
        np.testing.assert_array_equal(p.axes[0].edges, tele.axes[0].edges)
        assert p.axes[0].cap == tele.axes[0].cap == 1200
        assert "exact" in available_engines(p)
    nb = load_protocol("negbin")
    box = dict(zip(nb.param_names, nb.bounds()))
    assert tuple(box["k0"]) == (0.01, 10.0) and tuple(box["b"]) == (0.1, 1000.0)
    rates = dict(zip(nb.rate_names, nb.rates(np.array([[2.0, 5.0]]))[0]))
    assert rates == {"a": 10.0, "l": 5.0, "m": 6.0}
    assert tuple(dict(zip(load_protocol("poisson").param_names, load_protocol("poisson").bounds()))["k"]) == (0.1, 1000.0)


def test_bursty_rates_give_the_bursty_mrna_law():
    """a = k0 b, l = b, m = 1 + b: NB with shape k0, mean k0 b and Fano factor 1 + b."""
    for k0, b in ((0.3, 4.0), (2.0, 0.5), (5.0, 30.0)):
        law = find_closed_form(get_network("bursty"), ["mrna"])
        pmf = law.pmf({"a": k0 * b, "l": b, "m": 1 + b}, 20000)
        n = np.arange(len(pmf))
        mean = (n * pmf).sum()
        var = (n**2 * pmf).sum() - mean**2
        assert np.isclose(pmf.sum(), 1.0, atol=1e-10)
        assert np.isclose(mean, k0 * b, rtol=1e-8) and np.isclose(var / mean, 1 + b, rtol=1e-8)
        np.testing.assert_allclose(pmf, stats.nbinom.pmf(n, k0, 1 / (1 + b)), rtol=1e-10, atol=1e-300)


def test_negative_binomial_without_a_stationary_law_puts_all_mass_beyond_the_cap():
    assert not negative_binomial_pmf({"immigration": 1.0, "birth": 2.0, "death": 2.0}, 50).any()
    np.testing.assert_allclose(negative_binomial_pmf({"immigration": 3.0, "birth": 0.0, "death": 2.0}, 50),
                               stats.poisson.pmf(np.arange(50), 1.5))


def test_negative_binomial_pmf_matches_fsp():
    net = get_network("bursty")
    law = find_closed_form(net, ["mrna"])
    for rates in ({"a": 6.0, "l": 3.0, "m": 4.0}, {"a": 0.5, "l": 10.0, "m": 11.0}, {"a": 20.0, "l": 0.5, "m": 2.0}):
        res = solve_stationary(net, rates, ["mrna"], [300], FSPSettings(tol=1e-12, max_states=100_000))
        np.testing.assert_allclose(res.pmf, law.pmf(rates, 300), atol=1e-9)


# ------------------------------------------------------------------------------------ vectorised emulator
def test_negbin_and_poisson_emulator_bins_match_scipy():
    for name, law in (("negbin", lambda t: stats.nbinom(t[0], 1 / (1 + t[1]))), ("poisson", lambda t: stats.poisson(t[0]))):
        p = load_protocol(name)
        em = ExactEmulator(p)
        theta = np.vstack([p.sample(12, seed=3), p.bounds().T])  # prior draws and the two corners
        y = em._flat_probs(theta)
        assert y.shape == (len(theta), em.n_categories)
        for t, row in zip(theta, y):
            _close(row, _scipy_bins(law(t), em.edges[0]), rtol=1e-8, atol=1e-12)


def test_vectorised_beta_poisson_equals_the_per_set_pmf():
    p = load_protocol("telegraph_mrna")
    em = ExactEmulator(p)
    box = p.bounds()
    corners = np.array([[box[0, i], box[1, j], box[2, k]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    theta = np.vstack([p.sample(16, seed=5), corners])
    y = em._flat_probs(theta)
    for t, row in zip(theta, y):
        pmf = beta_poisson_pmf({"k_on": t[0], "k_off": t[1], "v": t[2], "d": 1.0}, 1200)
        probs, over = bin_integer_pmf(pmf, em.edges)
        # (the per-set overflow is 1 - sum of a pmf with ~1e-12 relative error: absolute agreement ~1e-11)
        _close(row, np.append(probs, over), rtol=1e-9, floor=1e-250, atol=1e-11, overflow_rel=False)
    # the integer pmf itself, tails included
    r = {"k_on": theta[:, 0], "k_off": theta[:, 1], "v": theta[:, 2], "d": 1.0}
    rows = beta_poisson_pmf_rows(r, 1200)
    for i, t in enumerate(theta):
        _close(rows[i, :1200], beta_poisson_pmf({"k_on": t[0], "k_off": t[1], "v": t[2], "d": 1.0}, 1200), rtol=1e-9,
               atol=1e-12)


# ------------------------------------------------------------------------------------ binomial thinning
@pytest.mark.parametrize("name", ["poisson", "negbin", "telegraph_mrna"])
def test_thinned_closed_forms_match_thinning_of_the_pmf(name):
    """The thinned closed-form law (same family) equals thin_integer_pmf of the unthinned pmf."""
    p = load_protocol(name)
    em = ExactEmulator(p)
    theta = p.sample(4, seed=11)
    # keep all but < 1e-12 of the mass on the 1200 grid: means up to ~600
    theta[:, -1] = np.minimum(theta[:, -1], {"poisson": 600.0, "negbin": 30.0, "telegraph_mrna": 600.0}[name])
    if name == "negbin":
        theta[:, 0] = np.minimum(theta[:, 0], 0.3)
    beta = np.array([0.05, 0.3, 0.7, 1.0])
    got = em.thinned_flat_probs(theta, beta)
    law = find_closed_form(p.network, p.species)
    rates = p.rates(theta)
    for i in range(len(theta)):
        rmap = dict(zip(p.rate_names, rates[i]))
        full = law.pmf(rmap, 1200)
        assert 1 - full.sum() < 1e-12
        # relative agreement only above 1e-10: the reference misses the thinned mass from counts >= 1200
        ref = np.append(*bin_integer_pmf(thin_integer_pmf(full, beta[i]), em.edges))
        _close(got[i], ref, rtol=1e-7, floor=1e-10, atol=1e-12, overflow_rel=False)
        _close(np.append(*bin_integer_pmf(law.thinned_pmf(rmap, 1200, beta[i]), em.edges)), ref, rtol=1e-7,
               floor=1e-10, atol=1e-12, overflow_rel=False)
    np.testing.assert_allclose(em.thinned_flat_probs(theta, 1.0), em._flat_probs(theta), atol=1e-15)


def test_thinned_laws_match_scipy():
    edges = load_protocol("negbin").axes[0].edges
    nb = ExactEmulator(load_protocol("negbin"))
    theta = np.array([[0.5, 40.0], [3.0, 200.0], [10.0, 1000.0]])
    beta = np.array([0.2, 0.05, 0.5])
    for t, bt, row in zip(theta, beta, nb.thinned_flat_probs(theta, beta)):
        ref = _scipy_bins(stats.nbinom(t[0], 1 / (1 + bt * t[1])), edges)  # same shape, mean x beta
        _close(row, ref, rtol=1e-8, atol=1e-12)
    po = ExactEmulator(load_protocol("poisson"))
    for t, bt, row in zip([[500.0], [1000.0]], [0.3, 0.9], po.thinned_flat_probs(np.array([[500.0], [1000.0]]),
                                                                                 np.array([0.3, 0.9]))):
        _close(row, _scipy_bins(stats.poisson(bt * t[0]), edges), rtol=1e-8, atol=1e-12)
    # Beta-Poisson: v scaled by beta
    tele = ExactEmulator(load_protocol("telegraph_mrna"))
    t, bt = np.array([0.5, 2.0, 800.0]), 0.25
    ref = np.append(*bin_integer_pmf(beta_poisson_pmf({"k_on": 0.5, "k_off": 2.0, "v": 200.0, "d": 1.0}, 1200),
                                     tele.edges))
    _close(tele.thinned_flat_probs(t[None], bt)[0], ref, rtol=1e-8, atol=1e-12, overflow_rel=False)
    with pytest.raises(ValueError, match="beta"):
        tele.thinned_flat_probs(t[None], 1.5)


def test_fsp_path_thinning_equals_the_thinned_closed_form():
    """The bursty network with a propensity expression is not recognised, so the emulator solves it by FSP and
    thins the integer pmf: it must give the thinned negative binomial."""
    fsp_proto = parse_protocol(_bursty_protocol(dup='propensity = "l * mrna"'), "v.toml")
    fsp_em = ExactEmulator(fsp_proto)
    assert fsp_em._law is None
    nb_em = ExactEmulator(load_protocol("negbin"))
    theta = np.array([[2.0, 3.0], [2.0, 800.0]])  # the second has most of its mass beyond 1200 (mean 1600)
    beta = np.array([0.5, 0.2])
    assert nb_em._flat_probs(theta)[1, -1] > 0.5
    np.testing.assert_allclose(fsp_em.thinned_flat_probs(theta, beta), nb_em.thinned_flat_probs(theta, beta),
                               atol=1e-8)


SAMPLERS = {  # protocol, parameter set, beta, sampler of the unthinned counts
    "poisson": ([300.0], 0.5, lambda t, rng, n: rng.poisson(t[0], n)),
    "negbin": ([2.0, 30.0], 0.3, lambda t, rng, n: rng.negative_binomial(t[0], 1 / (1 + t[1]), n)),
    "telegraph_mrna": ([0.5, 1.0, 200.0], 0.4,
                       lambda t, rng, n: rng.poisson(t[2] * rng.beta(t[0], t[1], n))),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_thinning_matches_thinned_samples(name):
    """The histogram of 200k binomially thinned draws from the unthinned law is within sampling error of
    thinned_flat_probs."""
    values, beta, draw = SAMPLERS[name]
    em = ExactEmulator(load_protocol(name))
    rng = np.random.default_rng(2024)
    n = 200_000
    kept = rng.binomial(draw(values, rng, n), beta)
    e = em.edges[0]
    inside = (kept >= e[0]) & (kept < e[-1])
    hist = np.bincount(np.searchsorted(e, kept[inside], side="right") - 1, minlength=len(e) - 1)
    emp = np.append(hist, (~inside).sum()) / n
    probs = em.thinned_flat_probs(np.array([values]), np.array([beta]))[0]
    bound = sampling_tv_quantile(probs[:-1], n, np.random.default_rng(1))
    assert total_variation(emp, probs) < bound, (name, total_variation(emp, probs), bound)
    # and it is not the unthinned law
    assert total_variation(emp, em._flat_probs(np.array([values]))[0]) > 10 * bound


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40).filter(lambda w: sum(w) > 1e-3),
       st.floats(0.0, 1.0))
@example([0.0, 0.0, 1.0], 1.1125369292536007e-308)  # a subnormal beta (scipy's binomial pmf overflowed)
@example([0.0, 0.0, 0.0, 0.0, 1.0], 2.2250738585072014e-308)
def test_thinning_preserves_mass_and_scales_the_mean(weights, beta):
    pmf = np.array(weights) / np.sum(weights)
    q = thin_integer_pmf(pmf, beta)
    k = np.arange(len(pmf))
    assert np.all(q >= -1e-15)
    assert np.isclose(q.sum(), 1.0, atol=1e-12)
    assert np.isclose((k * q).sum(), beta * (k * pmf).sum(), atol=1e-10)
    # batch form: one pmf per row, one beta per row
    both = thin_integer_pmf(np.stack([pmf, pmf]), np.array([beta, 1.0]))
    np.testing.assert_allclose(both, np.stack([q, pmf]), atol=1e-12)
    np.testing.assert_allclose(thin_integer_pmf(pmf, beta, size=3), q[:3] if len(q) >= 3 else np.append(q, [0] * (3 - len(q))),
                               atol=1e-12)


def test_laws_table_has_a_thinning_for_every_law():
    assert set(LAWS) == {"poisson", "negative_binomial", "beta_poisson"}
    for spec in LAWS.values():
        assert callable(spec.match) and callable(spec.pmf) and callable(spec.thin)
