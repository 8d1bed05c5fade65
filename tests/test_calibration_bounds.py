"""`calibrate`'s 94% HDI (issue 29, boundaries): the HDI of weighted draws against arviz and an analytic case,
and its coverage in the table."""
from __future__ import annotations

import math

import numpy as np
import pytest

from surrogate_abc.inference.calibration import report as creport
from surrogate_abc.inference.calibration import stats as cstats


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


def test_parameter_metrics_have_the_hdi_on_the_natural_scale():
    """lo94/hi94/in94 next to the central intervals; for a log-uniform prior the HDI is that of the natural values
    (infer's summary), not of their log10."""
    rng = np.random.default_rng(2)
    values = 10 ** rng.normal(0.0, 0.5, 4000)
    w = np.ones_like(values)
    row = cstats.parameter_metrics("a", ("loguniform", 0.01, 100.0), 1.0, values, w, values, rng)
    assert (row["lo94_a"], row["hi94_a"]) == cstats.weighted_hdi(values, 0.94, w)
    log_lo, _ = cstats.weighted_hdi(np.log10(values), 0.94, w)
    assert row["lo94_a"] < 10 ** log_lo and row["in94_a"] == 1 and row["in90_a"] == 1


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
