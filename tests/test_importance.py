"""The batch method's importance sampling (inference/transcriptome/importance.py, refine.py) against references:
scipy's Student-t density, numpy's quantiles, and a Gaussian-likelihood posterior known in closed form."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from surrogate_abc.inference.transcriptome.importance import (
    DF,
    AMISState,
    Box,
    TMixture,
    ess,
    systematic_resample,
    tempered_log_weights,
    weighted_quantiles,
)


def test_tmixture_density_is_scipys_multivariate_t_and_a_mixture_of_them():
    rng = np.random.default_rng(0)
    cov = np.array([[0.5, 0.2, 0.0], [0.2, 0.3, 0.1], [0.0, 0.1, 0.2]])
    means = rng.normal(size=(3, 3))
    mix = TMixture(means, np.linalg.cholesky(cov))
    z = rng.normal(size=(50, 3))
    ref = np.log(np.mean([stats.multivariate_t(m, cov, df=DF).pdf(z) for m in means], axis=0))
    np.testing.assert_allclose(mix.logpdf(z), ref, rtol=1e-10)
    draws = TMixture(means[:1], np.linalg.cholesky(cov)).sample(200000, rng)
    np.testing.assert_allclose(np.cov(draws.T), cov * DF / (DF - 2), atol=0.02)


@given(st.lists(st.floats(-100, 100), min_size=2, max_size=60), st.floats(0.01, 0.99))
@settings(max_examples=60, deadline=None)
def test_weighted_quantiles_of_equal_weights_are_numpys_midpoint_quantiles(xs, q):
    x = np.array(xs)
    w = np.full(len(x), 1.0 / len(x))
    got = weighted_quantiles(x, w, np.array([q]))[0]
    assert np.sort(x)[0] - 1e-9 <= got <= np.sort(x)[-1] + 1e-9
    # the weighted CDF puts each sample's mass at its midpoint: numpy's "hazen" definition
    np.testing.assert_allclose(got, np.quantile(x, q, method="hazen"), rtol=1e-9, atol=1e-9)


def test_ess_and_tempering():
    assert ess(np.zeros(10)) == pytest.approx(10.0)
    assert ess(np.array([0.0, -np.inf, -np.inf])) == pytest.approx(1.0)
    loglik = -np.linspace(0, 500, 1000)
    lw, tau = tempered_log_weights(loglik, np.zeros(1000), 50.0)
    assert 0 < tau < 1 and ess(lw) == pytest.approx(50.0, rel=0.01)
    lw, tau = tempered_log_weights(np.zeros(1000), np.zeros(1000), 50.0)
    assert tau == 1.0


def test_systematic_resample_keeps_the_weights():
    w = np.array([0.5, 0.25, 0.125, 0.125])
    idx = systematic_resample(w, 800, np.random.default_rng(1))
    np.testing.assert_array_equal(np.bincount(idx, minlength=4), [400, 200, 100, 100])


def test_amis_reaches_a_sharp_gaussian_posterior_from_prior_draws():
    """A 2-D Gaussian likelihood 1000x narrower than the uniform prior: the tempered then adapted proposals give
    its mean, sd and 5%/95% quantiles (known in closed form; the prior box cuts nothing)."""
    rng = np.random.default_rng(2)
    box = Box(np.array([-5.0, -5.0]), np.array([5.0, 5.0]))
    mu, sd = np.array([1.234, -2.5]), np.array([0.004, 0.01])

    def loglik(z):
        return -0.5 * np.sum(((z - mu) / sd) ** 2, axis=1)

    z0 = box.uniform(4096, seed=3)
    ll0 = loglik(z0)
    keep = np.argsort(ll0)[-256:]
    state = AMISState.from_prior(box, z0[keep], ll0[keep], 4096)
    for _ in range(15):
        if state.ess() >= 1000:
            break
        prop = state.next_proposal(40.0, 1e-6 * (box.high - box.low), 50, rng)
        z = prop.sample(400, rng)
        z = z[box.inside(z)]
        state.add(prop, 400, z, loglik(z))
    assert state.ess() >= 1000
    w = np.exp(state.log_weights() - state.log_weights().max())
    w /= w.sum()
    for j in range(2):
        q = weighted_quantiles(state.z[:, j], w, np.array([0.05, 0.5, 0.95]))
        ref = stats.norm(mu[j], sd[j]).ppf([0.05, 0.5, 0.95])
        np.testing.assert_allclose(q, ref, atol=0.1 * (ref[2] - ref[0]))
