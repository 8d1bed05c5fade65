"""`calibrate`'s 94% HDI and `--near-bounds` (issue 29, boundaries): the HDI of weighted draws against arviz and
an analytic case, the near-bound truths, the near-bounds table, and one small end-to-end run."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from surrogate_abc.errors import UserError
from surrogate_abc.inference.calibration import bounds as cbounds
from surrogate_abc.inference.calibration import report as creport
from surrogate_abc.inference.calibration import stats as cstats

from conftest import run_cli, write_protocol


@pytest.mark.parametrize("n", [50, 999, 1000, 1001])
def test_hdi_of_equal_weights_is_arvizs(n):
    """Equal weights: exactly arviz.hdi's interval (floor(prob n) + 1 sorted draws), for integer and non-integer
    prob * n, on a skewed sample."""
    import arviz as az

    x = np.random.default_rng(n).gamma(1.5, size=n)
    for prob in (0.5, 0.9, cstats.HDI_PROB):
        want = az.hdi(x, hdi_prob=prob)
        assert cstats.weighted_hdi(x, prob) == (want[0], want[1])
        assert cstats.weighted_hdi(x, prob, np.full(n, 3.0)) == (want[0], want[1])  # the scale of weights is moot


def test_hdi_of_weighted_draws_agrees_with_arviz_on_resampled_draws():
    """Importance-weighted draws: the HDI agrees with arviz.hdi on many equal-weight draws resampled from them."""
    import arviz as az

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 6, 20_000)
    w = stats_lognormal_pdf(x)
    lo, hi = cstats.weighted_hdi(x, 0.94, w)
    want = az.hdi(x[rng.choice(x.size, 200_000, p=w / w.sum())], hdi_prob=0.94)
    assert lo == pytest.approx(want[0], abs=0.02) and hi == pytest.approx(want[1], abs=0.05)


def stats_lognormal_pdf(x: np.ndarray) -> np.ndarray:
    """Density of a log-normal(0, 0.5): skewed, so its HDI and central interval differ."""
    return np.exp(-np.log(x) ** 2 / (2 * 0.25)) / (x * 0.5 * math.sqrt(2 * math.pi))


def test_hdi_of_a_truncated_exponential_takes_the_bound_in():
    """Density exp(-x) on [0, L] (a marginal piled at a bound): the HDI is [0, q] with mass prob, where the central
    interval leaves out the (1 - prob) / 2 next to the bound."""
    L, prob = 3.0, 0.94
    x = np.linspace(0, L, 30_001)
    w = np.exp(-x)
    q = -math.log(1 - prob * (1 - math.exp(-L)))
    lo, hi = cstats.weighted_hdi(x, prob, w)
    assert lo == 0.0 and hi == pytest.approx(q, abs=1e-3)
    c_lo, _ = cstats.central_interval(x, 0.9, w)
    assert c_lo > 0.04  # the central interval cuts its 5% tail at the bound


def test_hdi_ignores_zero_weights_and_refuses_bad_input():
    x, w = np.array([0.0, 1.0, 2.0, 50.0, 3.0]), np.array([1.0, 1.0, 1.0, 0.0, 2.0])
    assert cstats.weighted_hdi(x, 0.7, w) == cstats.weighted_hdi(x[w > 0], 0.7, w[w > 0]) == (1.0, 3.0)
    assert cstats.weighted_hdi(x, 0.5, w) == (2.0, 3.0)  # 3/5 of the weight in the shortest pair
    with pytest.raises(ValueError):
        cstats.weighted_hdi(x, 1.0)
    with pytest.raises(ValueError):
        cstats.weighted_hdi(x, 0.5, -w)
    with pytest.raises(ValueError):
        cstats.weighted_hdi(np.array([]), 0.5)


def test_parameter_metrics_have_the_hdi_on_the_sampling_scale():
    """lo94/hi94/in94 next to the central intervals; for a log-uniform prior the HDI is that of the log10 values
    mapped back (infer's summary, output.summarise), not that of the natural values, which leans low."""
    rng = np.random.default_rng(2)
    values = 10 ** rng.normal(0.0, 0.5, 4000)
    w = np.ones_like(values)
    row = cstats.parameter_metrics("a", ("loguniform", 0.01, 100.0), 1.0, values, w, values, rng)
    log_lo, log_hi = cstats.weighted_hdi(np.log10(values), 0.94, w)
    np.testing.assert_allclose((row["lo94_a"], row["hi94_a"]), (10 ** log_lo, 10 ** log_hi), rtol=1e-12)
    assert row["lo94_a"] > cstats.weighted_hdi(values, 0.94, w)[0] and row["in94_a"] == 1 and row["in90_a"] == 1
    upper = cstats.parameter_metrics("a", ("loguniform", 0.01, 100.0), 7.0, values, w, values, rng)
    assert upper["in94_a"] == 1 and upper["hi94_a"] > 7.0 > cstats.weighted_hdi(values, 0.94, w)[1]  # 8.5 > 7 > 5.7


def test_near_targets_cycle_over_parameters_then_sides():
    names = ("k0", "k1", "d1")
    got = [cbounds.near_target(i, names) for i in range(8)]
    assert got == [("k0", "low"), ("k1", "low"), ("d1", "low"), ("k0", "high"), ("k1", "high"), ("d1", "high"),
                   ("k0", "low"), ("k1", "low")]


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_near_draws_lie_in_the_outer_fraction_on_the_sampling_scale(fraction):
    """The chosen parameter lies in the outer fraction of its range on its side (log10 scale for log-uniform,
    where it is uniform); the other parameters are the prior draws they were; the draws are seeded by (seed, i)."""
    from scipy import stats

    box = {"a": ("loguniform", 0.01, 100.0), "b": ("uniform", 2.0, 12.0)}
    names = ("a", "b")
    n = 4000
    rng = np.random.default_rng(5)
    prior = np.stack([10 ** rng.uniform(-2, 2, n), rng.uniform(2, 12, n)], axis=1)
    thetas, targets = cbounds.near_thetas(prior, box, names, fraction, seed=7)
    assert [t for t in targets] == [cbounds.near_target(i, names) for i in range(n)]
    for j, name in enumerate(names):
        kind, lo, hi = box[name]
        a, b = float(cstats.to_feature(kind, lo)), float(cstats.to_feature(kind, hi))
        width = fraction * (b - a)
        for side in ("low", "high"):
            rows = [i for i, t in enumerate(targets) if t == (name, side)]
            z = (cstats.to_feature(kind, thetas[rows, j]) - (a if side == "low" else b - width)) / width
            assert len(rows) == n // 4 and z.min() >= -1e-9 and z.max() <= 1 + 1e-9
            assert stats.kstest(z, "uniform").pvalue > 1e-3  # uniform on the sampling scale
        others = [i for i, t in enumerate(targets) if t[0] != name]
        assert np.array_equal(thetas[others, j], prior[others, j])  # the others: untouched prior draws
    again, _ = cbounds.near_thetas(prior[:10], box, names, fraction, seed=7)
    assert np.array_equal(again, thetas[:10])  # row i depends on (seed, i) only
    other_seed, _ = cbounds.near_thetas(prior[:10], box, names, fraction, seed=8)
    assert not np.array_equal(other_seed, thetas[:10])


@pytest.mark.parametrize("bad", [0.0, -0.1, 0.6, float("nan")])
def test_near_bounds_fraction_outside_its_range_is_one_line(bad):
    with pytest.raises(UserError, match=r"--near-bounds .*must be in \(0, 0.5\]"):
        cbounds.check_fraction(bad)
    assert cbounds.check_fraction(0.5) == 0.5


def test_flagged_sides_from_prior_bound_flags():
    assert cbounds.flagged_sides(["k0_high", "d1_low"], ("k0", "k1", "d1")) == \
        {"bound_k0": "high", "bound_k1": "", "bound_d1": "low"}


def near_rows() -> list[dict]:
    """12 datasets, parameters a, b in turn, low then high: a near its bound in 0, 2, 4, ..."""
    rows = []
    for i in range(12):
        name, side = cbounds.near_target(i, ("a", "b"))
        rows.append({"index": i, "near_parameter": name, "near_side": side, "near_flagged": int(i % 4 == 0),
                     "in94_a": int(i != 0), "in90_a": int(i > 4), "in94_b": 1, "in90_b": 1, "in50_a": 1, "in50_b": 1,
                     "contraction_a": 0.5, "contraction_b": 0.2, "rank_a": 3, "rank_b": 3, "hellinger_ppc": 0.01,
                     "final_epsilon": 1.0, "fsp_tail_mass": 0.0})
    return rows


def test_near_table_is_over_the_datasets_that_put_each_parameter_near_a_bound(tmp_path):
    rows = near_rows()
    table = cbounds.summarise_near(rows, ("a", "b"))
    a, b, ppc = table
    assert a["datasets"] == 6 and (a["near_low"], a["near_high"]) == (3, 3)
    assert a["coverage_94"] == pytest.approx(5 / 6) and a["coverage_90"] == pytest.approx(3 / 6)  # 0, 2, 4 miss
    assert a["flagged"] == pytest.approx(3 / 6) and b["flagged"] == 0.0  # 0, 4, 8 flagged; all a's
    assert (a["band94_lo"], a["band94_hi"]) == cstats.binomial_band(6, 0.94)
    assert b["coverage_94"] == 1.0 and b["contraction"] == pytest.approx(0.2)
    assert ppc["parameter"] == "posterior_predictive" and ppc["datasets"] == 12
    assert cbounds.summarise_near(rows[:1], ("a", "b"))[1]["datasets"] == 0  # b never near: an empty row
    assert "no dataset put it near a bound" in cbounds.format_near_table(cbounds.summarise_near(rows[:1], ("a", "b")))

    text, paths = creport.finish(rows, [], 12, ["a", "b"], tmp_path, reused=0, near_bounds=True)
    assert "sbc_ranks" not in paths and not (tmp_path / "sbc_ranks.png").exists()
    assert "need not be nominal" in text and "HDI 94%" in text and "flagged" in text
    csv_rows = list(csv.DictReader(open(paths["calibration"])))
    assert {r["subset"] for r in csv_rows} == {"near bound"}
    assert float(csv_rows[0]["coverage_94"]) == pytest.approx(5 / 6)


def test_plain_table_has_hdi_coverage_and_tolerates_older_rows():
    rows = [{"in50_a": 1, "in90_a": 1, "in94_a": int(i < 9), "contraction_a": 0.5, "hellinger_ppc": 0.0}
            for i in range(10)]
    table = cstats.summarise(rows, ["a"])
    assert table[0]["coverage_94"] == pytest.approx(0.9)
    assert (table[0]["band94_lo"], table[0]["band94_hi"]) == cstats.binomial_band(10, 0.94)
    assert "HDI 94%" in creport.format_table(table)
    del rows[0]["in94_a"]  # a dataset finished before the HDI column: no HDI coverage, a "-"
    table = cstats.summarise(rows, ["a"])
    assert table[0]["coverage_94"] == "" and " - " in creport.format_table(table)


def test_calibrate_near_bounds_end_to_end(tmp_path):
    """Two datasets of a one-parameter log-uniform protocol with its exact model: a near its low, then high, bound;
    the new columns in datasets.csv and calibration.csv; a bad fraction is one line before anything is written."""
    proto = write_protocol(tmp_path, "bd_near", high=20.0, low=1.0, edges="{ start = 0, stop = 60, width = 1 }")
    out = tmp_path / "cal"
    args = ["calibrate", "--emulator", f"exact:{proto}", "--datasets", "2", "--cells", "200", "--population", "60",
            "--generations", "3", "--jobs", "1", "--quiet", "--out", str(out)]
    bad = run_cli([*args, "--near-bounds", "0.7"], cwd=tmp_path)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "--near-bounds 0.7" in lines[0], bad.stderr
    assert not out.exists()

    r = run_cli([*args, "--near-bounds", "0.1"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "near (lo/hi)" in r.stdout and "HDI 94%" in r.stdout
    rows = list(csv.DictReader(open(out / "datasets.csv")))
    assert [(x["near_parameter"], x["near_side"]) for x in rows] == [("a", "low"), ("a", "high")]
    log_a = [math.log10(float(x["true_a"])) for x in rows]
    assert 0 <= log_a[0] <= 0.1 * math.log10(20) and log_a[1] >= 0.9 * math.log10(20)
    for x in rows:
        assert x["in94_a"] in ("0", "1") and x["near_flagged"] in ("0", "1") and x["bound_a"] in ("", "low", "high")
        assert float(x["lo94_a"]) <= float(x["hi94_a"]) and x["near_bounds"] == "0.1"
    table = list(csv.DictReader(open(out / "calibration.csv")))
    assert table[0]["parameter"] == "a" and table[0]["subset"] == "near bound" and table[0]["datasets"] == "2"
    for col in ("coverage_94", "band94_lo", "coverage_90", "flagged", "near_low", "near_high"):
        assert table[0][col] != "", col
    assert not (out / "sbc_ranks.png").exists()
