"""Pure helpers of surrogate_abc.inference.calibration (`surrogate-abc calibrate`): weighted quantiles and credible intervals, coverage of a calibrated
(conjugate Gaussian) posterior, binomial bands, prior variances, exact cell sampling, observed.h5 round trip."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from surrogate_abc.config import Prior, parse_protocol
from surrogate_abc.data.observed import load_observed
from surrogate_abc.inference.calibration import datasets as cdata
from surrogate_abc.inference.calibration import report as creport
from surrogate_abc.inference.calibration import stats as cstats
from surrogate_abc.metrics import hellinger_distance as abc_hellinger

BD = """
name = "bd_cal_test"
network = "birth_death"
samples = 100
[parameters.a]
prior = "uniform"
low = 5.0
high = 30.0
[fixed]
b = 1.0
[histogram.x]
edges = { start = 0, stop = 60, width = 2 }
"""


def test_equal_weight_quantile_is_hazen():
    x = np.random.default_rng(0).gamma(2.0, size=501)
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    assert np.allclose(cstats.weighted_quantile(x, q), np.quantile(x, q, method="hazen"))


def test_weighted_interval_matches_normal_quantiles():
    """Importance-weighted uniform draws (weights = normal pdf) give the normal's central intervals."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-6, 6, 200_000)
    w = stats.norm.pdf(x)
    for prob in (0.5, 0.9):
        lo, hi = cstats.central_interval(x, prob, w)
        z = stats.norm.ppf((1 + prob) / 2)
        assert lo == pytest.approx(-z, abs=0.02) and hi == pytest.approx(z, abs=0.02)
    assert cstats.weighted_var(x, w) == pytest.approx(1.0, rel=0.02)


def test_zero_weights_are_ignored_and_bad_input_raises():
    x = np.array([0.0, 1.0, 2.0, 100.0])
    w = np.array([1.0, 1.0, 1.0, 0.0])
    assert cstats.central_interval(x, 0.9, w)[1] <= 2.0
    with pytest.raises(ValueError):
        cstats.weighted_quantile(x, 0.5, np.zeros(4))
    with pytest.raises(ValueError):
        cstats.central_interval(x, 1.5)


def test_coverage_of_a_calibrated_posterior():
    """theta ~ N(0,1), y ~ N(theta,1): the exact posterior N(y/2, 1/2) covers at the nominal rates."""
    rng = np.random.default_rng(2)
    n = 400
    theta = rng.normal(size=n)
    y = theta + rng.normal(size=n)
    hits = {0.5: 0, 0.9: 0}
    for t, yi in zip(theta, y):
        draws = rng.normal(yi / 2, math.sqrt(0.5), 1000)
        for prob in hits:
            lo, hi = cstats.central_interval(draws, prob)
            hits[prob] += lo <= t <= hi
    for prob, k in hits.items():
        lo, hi = cstats.binomial_band(n, prob)
        assert lo <= k / n <= hi, (prob, k / n)
    # a posterior that is too narrow (sd / 3) must fall outside the band
    k = sum(cstats.central_interval(rng.normal(yi / 2, math.sqrt(0.5) / 3, 1000), 0.9)[0] <= t
            <= cstats.central_interval(rng.normal(yi / 2, math.sqrt(0.5) / 3, 1000), 0.9)[1] for t, yi in zip(theta[:100], y[:100]))
    assert k / 100 < cstats.binomial_band(100, 0.9)[0]


@given(st.integers(5, 500), st.sampled_from([0.5, 0.9]))
@settings(max_examples=30, deadline=None)
def test_binomial_band_holds_95_percent(n, p):
    lo, hi = cstats.binomial_band(n, p)
    assert lo <= p <= hi
    mass = stats.binom.cdf(round(hi * n), n, p) - stats.binom.cdf(round(lo * n) - 1, n, p)
    assert mass >= 0.95


def test_prior_variance_and_contraction():
    rng = np.random.default_rng(3)
    x = Prior("loguniform", ("k",), 0.01, 10.0).sample(rng, 200_000)[:, 0]
    assert cstats.prior_variance("loguniform", 0.01, 10.0) == pytest.approx(np.var(cstats.to_feature("loguniform", x)), rel=0.02)
    assert cstats.prior_variance("uniform", 20.0, 200.0) == pytest.approx(180.0**2 / 12)
    assert cstats.contraction(cstats.prior_variance("uniform", 0, 1), 1 / 12) == pytest.approx(0.0)
    assert cstats.contraction(0.0, 1.0) == 1.0


def test_ppc_hellinger_agrees_with_library_and_bounds():
    p = np.array([0.2, 0.3, 0.5, 0.0])
    q = np.array([0.1, 0.1, 0.4, 0.4])
    assert cstats.ppc_hellinger(p[:3], p[3], q[:3], q[3]) == pytest.approx(abc_hellinger(p, q))
    assert cstats.ppc_hellinger(2 * p[:3], 0.0, p[:3], 0.0) == pytest.approx(0.0, abs=1e-12)  # renormalised
    assert cstats.ppc_hellinger([1], 0, [0], 1) == pytest.approx(1.0)


def test_wasserstein_normalised_of_a_shift():
    x = np.random.default_rng(4).normal(size=1000)
    assert cstats.wasserstein_normalised(x, None, x + 0.3, None, 3.0) == pytest.approx(0.1)


def test_sample_cells_follows_pmf_and_puts_overflow_beyond_the_grid():
    rng = np.random.default_rng(5)
    pmf = np.array([0.1, 0.2, 0.3, 0.2])
    cells = cdata.sample_cells(pmf, 0.2, 20_000, rng)
    assert cells.shape == (20_000, 1)
    counts = np.bincount(cells[:, 0], minlength=5)
    assert set(np.unique(cells)) <= {0, 1, 2, 3, 4}
    chi2 = stats.chisquare(counts, 20_000 * np.append(pmf, 0.2))
    assert chi2.pvalue > 1e-3
    grid = np.full((3, 4), 1 / 13)
    cells2 = cdata.sample_cells(grid, 1 / 13, 2000, rng)
    assert cells2.shape == (2000, 2)
    over = (cells2 == [3, 4]).all(axis=1)
    assert 0 < over.sum() < 2000 and ((cells2[~over] < [3, 4]).all())


def test_make_dataset_writes_exact_poisson_cells(tmp_path):
    proto = parse_protocol(BD, source="bd.toml")
    (tmp_path / "bd.toml").write_text(BD)
    path = tmp_path / "obs.h5"
    pmf, overflow, tail = cdata.make_dataset(proto, np.array([12.0]), index=3, seed=9, n_cells=1000, path=path)
    assert tail == 0.0  # the closed form places all the mass
    assert np.allclose(pmf, stats.poisson.pmf(np.arange(60), 12.0), atol=1e-7)  # the closed form
    assert overflow == pytest.approx(stats.poisson.sf(59, 12.0), abs=1e-9)
    obs = load_observed(path)
    assert obs.species == ("x",) and obs.n_cells == 1000
    assert obs.true_params() == {"a": 12.0}
    import h5py

    with h5py.File(path) as f:
        assert f.attrs["fsp_tail_mass"] == 0.0 and "from the exact distribution" in f.attrs["description"]
    assert abs(obs.mean("x") - 12.0) < 4 * math.sqrt(12.0 / 1000)
    again = tmp_path / "again.h5"
    cdata.make_dataset(proto, np.array([12.0]), index=3, seed=9, n_cells=1000, path=again)
    assert np.array_equal(load_observed(again).counts, obs.counts)  # deterministic in (seed, index)


def test_summarise_table():
    rows = [{"in50_a": i % 2, "in90_a": 1, "contraction_a": 0.5, "hellinger_ppc": 0.01 * i} for i in range(10)]
    table = cstats.summarise(rows, ["a"])
    assert table[0]["coverage_50"] == 0.5 and table[0]["coverage_90"] == 1.0
    assert table[0]["contraction"] == pytest.approx(0.5)
    assert table[1]["hellinger_mean"] == pytest.approx(0.045) and table[1]["hellinger_max"] == pytest.approx(0.09)
    assert "posterior_predictive" in creport.format_table(table)


def test_rank_shift_against_uniform_ranks():
    """A calibrated posterior's ranks are uniform on 0..99: every rank once gives mean 49.5 and z 0; truths below
    every draw (rank 0, a posterior too high) a negative z of mean / (sd / sqrt(n))."""
    assert cstats.rank_shift(range(cstats.N_RANK_DRAWS + 1)) == (49.5, 0.0)
    sd = math.sqrt((100 ** 2 - 1) / 12)
    assert cstats.rank_shift([0, 0, 0, 0])[1] == pytest.approx(-49.5 / (sd / 2))
    assert cstats.rank_shift([99] * 9)[1] == pytest.approx(49.5 / (sd / 3))
    rng = np.random.default_rng(3)  # ranks of draws from the truth's own law: |z| within chance
    ranks = [cstats.sbc_rank(rng.normal(size=400), float(rng.normal()), rng) for _ in range(400)]
    assert abs(cstats.rank_shift(ranks)[1]) < 3
    shifted = [cstats.sbc_rank(rng.normal(0.3, 1, size=400), float(rng.normal()), rng) for _ in range(400)]
    assert cstats.rank_shift(shifted)[1] < -3  # posteriors 0.3 sd too high: ranks lean low


def test_summarise_reports_the_rank_shift_when_every_row_has_a_rank():
    rows = [{"in50_a": 1, "in90_a": 1, "contraction_a": 0.5, "hellinger_ppc": 0.0, "rank_a": r} for r in (0, 0, 0, 0)]
    row = cstats.summarise(rows, ["a"])[0]
    assert row["rank_mean"] == 0.0 and row["rank_z"] == pytest.approx(cstats.rank_shift([0] * 4)[1])
    assert f"{row['rank_z']:+.1f}" in creport.format_table(cstats.summarise(rows, ["a"]))
    del rows[0]["rank_a"]  # an older row without its rank: no shift, a "-"
    assert cstats.summarise(rows, ["a"])[0]["rank_z"] == ""


def test_exact_pmf_closed_form_agrees_with_fsp():
    """The closed-form path (birth-death: Poisson) and the FSP solver give the same pmf."""
    from surrogate_abc.simulate.fsp import solve_stationary

    proto = parse_protocol(BD, source="bd.toml")
    pmf, overflow, _ = cdata.exact_counts_pmf(proto, np.array([12.0]), [60])
    rates = dict(zip(proto.rate_names, proto.rates(np.array([[12.0]]))[0]))
    res = solve_stationary(proto.network, rates, proto.species, (60,), proto.fsp)
    assert np.allclose(pmf, res.pmf, atol=1e-6) and overflow == pytest.approx(res.overflow, abs=1e-6)


def test_sbc_rank_is_uniform_for_draws_from_the_same_law():
    rng = np.random.default_rng(6)
    ranks = [cstats.sbc_rank(rng.normal(size=500), float(rng.normal()), rng) for _ in range(2000)]
    assert min(ranks) >= 0 and max(ranks) <= cstats.N_RANK_DRAWS
    counts = np.histogram(ranks, bins=np.linspace(0, cstats.N_RANK_DRAWS + 1, cstats.RANK_BINS + 1))[0]
    assert stats.chisquare(counts).pvalue > 1e-3
    assert cstats.sbc_rank(np.zeros(5), 1.0, rng) == cstats.N_RANK_DRAWS  # fewer draws: drawn with replacement
    assert 0 <= cstats.sbc_rank(np.zeros(5), 0.0, rng) <= cstats.N_RANK_DRAWS  # ties broken at random
    lo, hi = cstats.rank_band(100)
    assert lo <= 10 <= hi


def test_finish_reports_datasets_without_an_exact_reference_apart(tmp_path):
    """Datasets whose FSP reference missed > EXACT_TAIL_MASS are named, and the table is repeated without them."""
    import csv

    rng = np.random.default_rng(0)
    rows = [{"index": i, "in50_a": int(i < 6), "in90_a": int(i < 9), "contraction_a": 0.5, "rank_a": int(rng.integers(100)),
             "hellinger_ppc": 0.01, "final_epsilon": 1.0, "fsp_tail_mass": 0.05 if i in (8, 9) else 1e-9} for i in range(12)]
    text, paths = creport.finish(rows, [], 12, ["a"], tmp_path, reused=0)
    assert "2 with a reference that is not exact" in text and ": 8, 9" in text
    assert "the 10 datasets with an exact reference:" in text
    table = list(csv.DictReader(open(paths["calibration"])))
    sub = [r for r in table if r["subset"] == "exact reference" and r["parameter"] == "a"]
    assert len(sub) == 1 and float(sub[0]["coverage_50"]) == pytest.approx(0.6) and float(sub[0]["coverage_90"]) == pytest.approx(0.8) and sub[0]["datasets"] == "10"
    assert float([r for r in table if r["subset"] == "all" and r["parameter"] == "a"][0]["coverage_90"]) == 0.75
    for r in rows:
        r["fsp_tail_mass"] = 0.0
    text, paths = creport.finish(rows, [], 12, ["a"], tmp_path, reused=0)
    assert "not exact" not in text and {r["subset"] for r in csv.DictReader(open(paths["calibration"]))} == {"all"}


def test_finished_datasets_reads_each_result_in_folder_order_and_refuses_none(tmp_path):
    """The benchmarks' reader of calibrate --out folders: finished datasets only (those with result.json), in
    folder order across the folders given; a folder with none is a one-line UserError naming it."""
    from surrogate_abc.errors import UserError

    for root, names in (("a", ["ds_001", "ds_000", "ds_002"]), ("b", ["ds_000"])):
        for n in names:
            (tmp_path / root / n).mkdir(parents=True)
            if n != "ds_002":  # unfinished: no result.json
                (tmp_path / root / n / "result.json").write_text(f'{{"id": "{root}/{n}"}}')
    got = creport.finished_datasets([tmp_path / "a", tmp_path / "b"])
    assert [r["id"] for _, r in got] == ["a/ds_000", "a/ds_001", "b/ds_000"]
    assert got[0][0] == tmp_path / "a" / "ds_000"
    (tmp_path / "c").mkdir()
    with pytest.raises(UserError, match=r"no finished datasets .* under .*c: give the --out folders"):
        creport.finished_datasets([tmp_path / "c"])
