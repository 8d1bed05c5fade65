"""The telegraph model with splicing (`telegraph_splicing`: nascent and mature RNA of a gene): its network and
protocol, the exact FSP against the closed forms that exist (the nascent marginal is Beta-Poisson with decay
beta; with constitutive transcription both species are independent Poissons; as splicing becomes instantaneous
the mature marginal tends to the telegraph Beta-Poisson), and the SSA against the FSP."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from surrogate_abc import load_protocol
from surrogate_abc.config import FSPSettings
from surrogate_abc.metrics import sampling_tv_quantile, total_variation
from surrogate_abc.networks.closed_form import beta_poisson_pmf, find_closed_form
from surrogate_abc.simulate.fsp import solve_stationary
from surrogate_abc.simulate.ssa import SSASimulator

EXACT = FSPSettings(tol=1e-11, max_states=500_000)


@pytest.fixture(scope="module")
def protocol():
    return load_protocol("telegraph_splicing")


def _solve(p, rates, settings=EXACT):
    return solve_stationary(p.network, rates, p.species, [a.cap for a in p.axes], settings)


def _rates(p, theta):
    return dict(zip(p.rate_names, p.rates(np.atleast_2d(np.asarray(theta, float)))[0]))


def test_protocol_names_species_and_prior(protocol):
    assert protocol.species == ("nascent", "mature")
    assert protocol.param_names == ("k0", "k1", "v0", "beta")
    assert _rates(protocol, [1.0, 2.0, 3.0, 4.0])["gamma"] == 1.0
    np.testing.assert_allclose(protocol.bounds(), [[0.01, 10], [0.1, 100], [0.1, 100], [1, 100]])
    names = {r.name for r in protocol.network.reactions}
    assert names == {"on", "off", "transcription", "splicing", "mature_decay"}


@pytest.mark.parametrize("corner", ["low", "mid", "bursty", "slow_splicing"])
def test_nascent_marginal_is_beta_poisson_with_decay_beta(protocol, corner):
    box = protocol.bounds()
    theta = {"low": box[:, 0], "mid": np.sqrt(box[:, 0] * box[:, 1]), "bursty": [0.05, 100.0, 100.0, 2.0],
             "slow_splicing": [0.3, 3.0, 30.0, 1.0]}[corner]
    r = _rates(protocol, theta)
    res = _solve(protocol, r)
    cap = protocol.axes[0].cap
    law = find_closed_form(protocol.network, ["nascent"])  # recognised from the structure: decay = splicing
    assert law is not None and dict(law.roles) == {"k_on": "k0", "k_off": "k1", "v": "v0", "d": "beta"}
    q = beta_poisson_pmf({"k_on": r["k0"], "k_off": r["k1"], "v": r["v0"], "d": r["beta"]}, cap)
    assert total_variation(np.append(res.pmf.sum(axis=1), res.overflow), np.append(q, 1 - q.sum())) < 1e-10


def test_constitutive_transcription_gives_independent_poissons(protocol):
    r = {"k0": 1.0, "k1": 1e-12, "v0": 20.0, "beta": 3.0, "gamma": 1.0}  # the promoter stays on
    res = _solve(protocol, r, FSPSettings(tol=1e-12, max_states=500_000))
    n = np.arange(protocol.axes[0].cap)
    ref = np.outer(stats.poisson.pmf(n, 20.0 / 3.0), stats.poisson.pmf(n, 20.0))
    assert 0.5 * np.abs(res.pmf - ref).sum() < 1e-10


def test_mature_marginal_tends_to_the_telegraph_law_as_splicing_becomes_instantaneous(protocol):
    q = beta_poisson_pmf({"k_on": 0.5, "k_off": 2.0, "v": 30.0, "d": 1.0}, protocol.axes[1].cap)
    tvs = [0.5 * np.abs(_solve(protocol, {"k0": 0.5, "k1": 2.0, "v0": 30.0, "beta": b, "gamma": 1.0}).pmf.sum(axis=0)
                        - q).sum() for b in (10.0, 100.0, 1000.0)]
    assert tvs[0] > tvs[1] > tvs[2] and tvs[2] < 1e-5  # ~1 / beta^2
    assert tvs[0] / tvs[1] > 20 and tvs[1] / tvs[2] > 20


def test_ssa_matches_fsp_within_sampling_error(protocol):
    theta = np.array([[2.0, 3.0, 30.0, 4.0]])
    r = _rates(protocol, theta)
    caps = [a.cap for a in protocol.axes]
    fsp = _solve(protocol, r, FSPSettings(tol=1e-10, max_states=500_000))
    n = 20_000
    sim = SSASimulator(protocol.network, protocol.species)
    init = dict(zip(protocol.network.species, protocol.initial_state(theta)[0]))
    grid, over, _ = sim.histogram(r, init, n, 20, seed=7, caps=caps)
    for name, emp, ref in (("nascent", grid.sum(axis=1), fsp.pmf.sum(axis=1)),
                           ("mature", grid.sum(axis=0), fsp.pmf.sum(axis=0)), ("joint", grid.ravel(), fsp.pmf.ravel())):
        tv = total_variation(np.append(emp, over) / n, np.append(ref, fsp.overflow))
        bound = sampling_tv_quantile(ref, n, np.random.default_rng(1))
        assert tv < 1.5 * bound, (name, tv, bound)  # 1.5x: samples every interval are only nearly independent
