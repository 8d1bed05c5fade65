"""SSA engine: correctness against closed forms (Poisson) and the exact FSP solver, seeding and binning."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from surrogate_abc import BIRTH_DEATH, GENE, ConfigError, parse_protocol
from surrogate_abc.config import FSPSettings
from surrogate_abc.simulate import SSASimulator, count_grid, sampling_interval, set_seed, set_seeds

from conftest import BIRTH_DEATH_TOML

BD_TOML = """
name = "bd_test"
network = "birth_death"
samples = 20000
[parameters.a]
prior = "uniform"
low = 4.9
high = 5.1
[fixed]
b = 1.0
[initial]
x = 0
[histogram.x]
edges = { start = 0, stop = 7, width = 1 }
"""
GENE_RATES = {"k0": 0.5, "k1": 0.5, "v0": 2.0, "d0": 1.0, "v1": 5.0, "d1": 0.5}
GENE_INIT = {"gene_off": 0, "gene_on": 1, "mrna": 1, "protein": 10}
# Thinning: the runner samples every dt = ceil(slowest timescale), where the slowest mode still has lag
# correlation about exp(-1). The statistical tests below keep every THIN-th sample, so the correlation
# between kept samples is about exp(-THIN) (< 2 %) and the multinomial (independent-sample) theory applies.
THIN = 5


@pytest.fixture(scope="module")
def bd_protocol():
    return parse_protocol(BD_TOML, source="bd_test.toml")


@pytest.fixture(scope="module")
def bd_sim():
    return SSASimulator(BIRTH_DEATH, ("x",))  # compiled on first use, shared by this module's tests


@pytest.fixture(scope="module")
def gene_sim():
    return SSASimulator(GENE, ("mrna", "protein"))


def _rates(proto, seed=0):
    theta = proto.sample(1, seed)
    rates = dict(zip(proto.rate_names, proto.rates(theta)[0]))
    init = dict(zip(proto.network.species, proto.initial_state(theta)[0]))
    return rates, init


def chi2_pooled(counts: np.ndarray, probs: np.ndarray) -> float:
    """Chi-square p-value of counts vs probs (same cells, probs sum to 1), pooling adjacent cells with expected < 5."""
    total = counts.sum()
    exp = probs * total
    groups_o, groups_e, o, e = [], [], 0.0, 0.0
    for oi, ei in zip(counts, exp):
        o, e = o + oi, e + ei
        if e >= 5:
            groups_o.append(o), groups_e.append(e)
            o, e = 0.0, 0.0
    if e > 0:  # remainder joins the last group
        groups_o[-1] += o
        groups_e[-1] += e
    go, ge = np.array(groups_o), np.array(groups_e)
    return float(stats.chisquare(go, ge * go.sum() / ge.sum()).pvalue)


def tv_bound(probs: np.ndarray, samples: int, delta: float = 1e-4) -> float:
    """Upper bound on the TV distance of an empirical histogram of `samples` independent draws from `probs`.

    E|p_hat_k - p_k| <= sqrt(p_k (1 - p_k) / S) (Jensen), so E[TV] <= 0.5 * sum_k sqrt(p_k (1 - p_k) / S)
    (at most 0.5 * sqrt(K / S) by Cauchy-Schwarz). One sample moves TV by at most 1/S, so by McDiarmid
    P(TV > E[TV] + t) <= exp(-2 S t^2): t = sqrt(ln(1/delta) / (2 S)) holds with probability 1 - delta.
    A factor 1.5 covers the small residual correlation of thinned samples (exp(-THIN) lag correlation).
    """
    mean = 0.5 * np.sum(np.sqrt(probs * (1 - probs) / samples))
    return 1.5 * (mean + math.sqrt(math.log(1 / delta) / (2 * samples)))


def tv(counts: np.ndarray, probs: np.ndarray) -> float:
    return 0.5 * float(np.abs(counts / counts.sum() - probs).sum())


def test_birth_death_matches_poisson(bd_protocol, bd_sim) -> None:
    rates, init = _rates(bd_protocol)
    lam = rates["a"] / rates["b"]
    S = 20000
    series = bd_sim.trajectory(rates, init, S * THIN, bd_protocol.ssa.burn_in_intervals, seed=set_seed(1, 0))
    x = series[::THIN, 0]
    assert x.shape == (S,)
    cap = 25
    grid, over = count_grid(x, [cap])
    counts = np.append(grid, over)
    probs = np.append(stats.poisson.pmf(np.arange(cap), lam), stats.poisson.sf(cap - 1, lam))
    assert chi2_pooled(counts, probs) > 1e-3
    assert tv(counts, probs) <= tv_bound(probs, S)
    # a wrong law must fail the same test: Poisson(lam + 0.3)
    wrong = np.append(stats.poisson.pmf(np.arange(cap), lam + 0.3), stats.poisson.sf(cap - 1, lam + 0.3))
    assert chi2_pooled(counts, wrong) < 1e-6


def test_histogram_accounting_and_seeding(bd_protocol, bd_sim) -> None:
    rates, init = _rates(bd_protocol)
    cap = [bd_protocol.axes[0].cap]
    assert cap == [7]
    S, burn = 3000, bd_protocol.ssa.burn_in_intervals
    g1, o1, raw = bd_sim.histogram(rates, init, S, burn, seed=123, caps=cap, keep_raw=True)
    assert g1.dtype == np.int64 and g1.shape == (7,)
    assert g1.sum() + o1 == S and o1 > 0  # P(X >= 7) ~ 0.24 for Poisson(5)
    assert raw.dtype == np.int32 and raw.shape == (S, 1)
    g2, o2, _ = bd_sim.histogram(rates, init, S, burn, seed=123, caps=cap)
    assert np.array_equal(g1, g2) and o1 == o2
    g3, o3, _ = bd_sim.histogram(rates, init, S, burn, seed=124, caps=cap)
    assert not (np.array_equal(g1, g3) and o1 == o3)


def test_ssa_matches_fsp_gene_model(gene_sim) -> None:
    from surrogate_abc.simulate.fsp import solve_stationary

    S = 20000
    series = gene_sim.trajectory(GENE_RATES, GENE_INIT, S * THIN, 10, seed=set_seed(2, 0))[::THIN]
    assert sampling_interval(GENE, GENE_RATES) == 2
    # protein marginal
    cap = 80
    fsp = solve_stationary(GENE, GENE_RATES, ["protein"], [cap], FSPSettings())
    grid, over = count_grid(series[:, 1], [cap])
    counts, probs = np.append(grid, over), np.append(fsp.pmf, fsp.overflow)
    probs = probs / probs.sum()
    assert chi2_pooled(counts, probs) > 1e-3
    assert tv(counts, probs) <= tv_bound(probs, S)
    # joint mRNA x protein
    caps = [15, 80]
    fsp2 = solve_stationary(GENE, GENE_RATES, ["mrna", "protein"], caps, FSPSettings())
    grid2, over2 = count_grid(series, caps)
    counts2, probs2 = np.append(grid2.ravel(), over2), np.append(fsp2.pmf.ravel(), fsp2.overflow)
    probs2 = probs2 / probs2.sum()
    assert tv(counts2, probs2) <= tv_bound(probs2, S)
    assert chi2_pooled(counts2, probs2) > 1e-3


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2), st.integers(0, 200), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31))
def test_count_grid_matches_numpy_histogram(k: int, s: int, c0: int, c1: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    caps = [c0, c1][:k]
    x = rng.integers(0, 15, size=(s, k))
    grid, over = count_grid(x, caps)
    ref, _ = np.histogramdd(x, bins=[np.arange(c + 1) - 0.5 for c in caps])
    assert grid.shape == tuple(caps) and np.array_equal(grid, ref.astype(np.int64))
    assert over == int(np.sum(np.any(x >= np.array(caps), axis=1)))
    assert grid.sum() + over == s


def test_set_seed_properties() -> None:
    a = set_seeds(7, range(1000))
    assert a.dtype == np.uint64 and np.all(a >= 1) and np.all(a < 2**31)
    assert len(np.unique(a)) == 1000
    assert np.array_equal(a[500:], set_seeds(7, range(500, 1000)))  # depends on (seed, index) only
    assert set_seed(7, 3) == set_seed(7, 3) != set_seed(8, 3)
    assert 1 <= set_seed(-5, 0) < 2**31


def test_sampling_interval() -> None:
    assert sampling_interval(BIRTH_DEATH, {"a": 5.0, "b": 0.3}) == 4
    assert sampling_interval(BIRTH_DEATH, {"a": 5.0, "b": 20.0}) == 1


def test_ssa_interval_from_the_protocol():
    """[ssa] interval sets the time between samples (for networks whose slowest timescale is not a rate)."""
    proto = parse_protocol(BIRTH_DEATH_TOML + "\n[ssa]\ninterval = 0.3\nburn_in_intervals = 20\n", "bd.toml")
    assert proto.ssa.interval == 0.3
    assert sampling_interval(BIRTH_DEATH, {"a": 5.0, "b": 0.3}, proto.ssa.interval) == 0.3
    sim = SSASimulator(proto.network, proto.species)
    series = sim.trajectory({"a": 5.0, "b": 1.0}, {"x": 5}, 3001, 20, seed=3, interval=proto.ssa.interval)
    assert series.shape == (3001, 1)
    lag1 = np.corrcoef(series[:-1, 0], series[1:, 0])[0, 1]
    assert 0.6 < lag1 < 0.85  # exp(-0.3) = 0.74 for a birth-death chain read every 0.3 time units
    with pytest.raises(ConfigError, match=r"\[ssa.interval\] must be a time > 0"):
        parse_protocol(BIRTH_DEATH_TOML + "\n[ssa]\ninterval = 0\n", "bd.toml")
