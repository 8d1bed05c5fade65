"""Negative-binomial mixtures' bin masses by one walk along the integers (emulators/nb_walk.py) against scipy."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from surrogate_abc.emulators.bin_masses import nb_mixture_category_masses
from surrogate_abc.emulators.nb_walk import bin_ranges, nb_mixture_walk

EDGES = np.array([0, 1, 2, 3, 5, 8, 10, 12, 20, 40, 45, 100, 110, 600.0])  # widths 1 .. 490


def _log_reference(log_w, mu, r, rows, lo, hi) -> np.ndarray:
    """log of each category's mass, the log-pmf summed term by term in float64 (log Gamma(r + k) / Gamma(r) as
    sum_{j < k} log(r + j): no cancellation between two large lgammas, unlike scipy's nbinom at r ~ 1e6, whose
    log-pmf is off by up to ~7e-8 there), and the bins' integers by log-sum-exp (no underflow at any size)."""
    top = int(np.max(hi)) + 1
    j = np.arange(top)
    rising = np.concatenate([np.zeros(mu.shape + (1,)), np.cumsum(np.log(r[..., None] + j), axis=-1)], axis=-1)
    log_q = np.log(mu) - np.log(mu + r)
    logpmf = (rising[..., :top] - special.gammaln(j + 1.0) + j * log_q[..., None]
              - (r * np.log1p(mu / r))[..., None] + log_w[..., None])  # (n, U, K, top)
    out = np.empty((mu.shape[0], len(rows)))
    for c, (u, a, b) in enumerate(zip(rows, lo, hi)):
        out[:, c] = special.logsumexp(logpmf[:, u, :, a:b + 1], axis=(1, 2))
    return out


def _draw(rng, n, U, K, log_mu, log_r):
    mu = np.exp(log_mu + rng.normal(0, 1, (n, U, K)))
    r = np.exp(np.clip(log_r + rng.normal(0, 1, (n, U, K)), -5, 14))
    return np.log(rng.dirichlet(np.ones(K), (n, U))), mu, r


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), log_mu=st.floats(-3.0, 7.0), log_r=st.floats(-5.0, 14.0))
def test_walk_equals_scipy(seed: int, log_mu: float, log_r: float):
    """Random bins of every width under random rows, means 0.05 to ~1e4 and shapes 0.007 to 1.2e6: float64 to
    1e-9 relative wherever the mass is a normal number (the walk was within 8e-15 of 40-digit mpmath at seed 1,
    log_mu 0, log_r 14, a mass of 3.2e-178, where scipy's nbinom is off by 1.5e-8)."""
    rng = np.random.default_rng(seed)
    log_w, mu, r = _draw(rng, 3, 3, 4, log_mu, log_r)
    first, last = bin_ranges(np.searchsorted(EDGES, np.arange(600), side="right") - 1, len(EDGES) - 1)
    bins = rng.choice(len(EDGES) - 1, 8, replace=False)
    rows = rng.integers(0, 3, 8)
    got = nb_mixture_walk(log_w, mu, r, rows, first[bins], last[bins])
    ref = np.exp(_log_reference(log_w, mu, r, rows, first[bins], last[bins]))
    keep = ref > 1e-300
    np.testing.assert_allclose(got[keep], ref[keep], rtol=1e-9, atol=0)
    assert np.all(got[~keep] < 1e-290)


def test_walk_rescales_a_pmf_that_starts_below_the_float_range():
    """NB(0) = (1 - q)^r is e^-2956 at mean 3000 and shape 1e5 (0 in float64): the walk carries a log-scale, so
    the bins around the mode still come out right, as do masses of 1e-200 in the far tail."""
    log_w, mu, r = np.zeros((1, 1, 1)), np.full((1, 1, 1), 3000.0), np.full((1, 1, 1), 1e5)
    lo, hi = np.array([0, 2900, 3000, 4800]), np.array([99, 2999, 3099, 4850])
    rows = np.zeros(4, dtype=np.int64)
    got = nb_mixture_walk(log_w, mu, r, rows, lo, hi)[0]
    ref = np.exp(_log_reference(log_w, mu, r, rows, lo, hi))[0]
    assert got[0] == 0.0 and ref[0] == 0.0
    np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-8)
    assert 1e-220 < got[3] < 1e-100


def test_row_weights_floor_and_order():
    """Row weights multiply each category's mass, after the floor; categories come back in the order asked,
    whatever their rows and bins."""
    rng = np.random.default_rng(3)
    log_w, mu, r = _draw(rng, 150, 4, 3, 2.0, 1.0)
    rows, lo = np.array([2, 0, 2, 1, 0]), np.array([5, 0, 0, 3, 9])
    hi = lo + np.array([0, 3, 4, 1, 20])
    weight = rng.uniform(0.1, 1.0, (150, 4))
    got = nb_mixture_walk(log_w, mu, r, rows, lo, hi, row_weight=weight)
    ref = np.exp(_log_reference(log_w, mu, r, rows, lo, hi)) * weight[:, rows]
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    floored = nb_mixture_walk(log_w, mu, r, rows, lo, hi, floor=1e-3, row_weight=weight)
    np.testing.assert_allclose(floored, np.maximum(ref / weight[:, rows], 1e-3) * weight[:, rows], rtol=1e-9)


def test_walk_and_the_per_category_path_agree_and_bad_bins_are_refused():
    """Without gradients on the CPU nb_mixture_category_masses walks; with them it takes the per-category torch
    path: both give the same float64 masses. Bins that hold no integers, or lo > hi, are refused."""
    rng = np.random.default_rng(5)
    log_w, mu, r = (torch.as_tensor(a) for a in _draw(rng, 4, 2, 3, 3.0, 2.0))
    index = np.searchsorted(EDGES, np.arange(600), side="right") - 1
    bins, rows = np.array([0, 3, 7, 11, 12, 4]), np.array([0, 1, 1, 0, 1, 0])
    walked = nb_mixture_category_masses(log_w, mu, r, rows, bins, index, len(EDGES) - 1)
    mu_grad = mu.clone().requires_grad_(True)
    torch_path = nb_mixture_category_masses(log_w, mu_grad, r, rows, bins, index, len(EDGES) - 1)
    assert torch_path.requires_grad
    np.testing.assert_allclose(walked.numpy(), torch_path.detach().numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match="bins 0..12"):
        nb_mixture_category_masses(log_w, mu, r, np.array([0]), np.array([13]), index, len(EDGES) - 1)
    with pytest.raises(ValueError, match="lo <= hi"):
        nb_mixture_walk(log_w.numpy(), mu.numpy(), r.numpy(), [0], [5], [4])
