"""Gamma-Poisson mixtures at selected bins and their tails (emulators/bin_masses.py) against scipy's nbinom."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from surrogate_abc.emulators.bin_masses import bin_plan, nb_mixture_bin_masses, nb_mixture_outside
from surrogate_abc.emulators.conditional import ConditionalMDN
from surrogate_abc.emulators.distributions import Binning
from surrogate_abc.emulators.mdn import MDN

EDGES = np.array([0, 1, 2, 3, 5, 8, 10, 12, 20, 40, 45, 100, 110, 600.0])  # widths 1 .. 490, lo both sides of 10
COUNT_EDGES = np.array([0, 1, 2, 3, 5, 8, 12, 20, 30.0])
JOINT_EDGES = [np.array([0, 1, 2, 4, 7, 12.0]), np.array([0, 1, 2, 3, 5, 8, 13, 20, 30.0])]


def _index(edges: np.ndarray) -> np.ndarray:
    k = np.arange(int(edges[-1]))
    return np.searchsorted(edges, k, side="right") - 1


def _reference(log_w, mu, r, bins, rows, edges) -> np.ndarray:
    out = np.zeros((mu.shape[0], len(bins)))
    for c, (b, u) in enumerate(zip(bins, rows)):
        k = np.arange(int(edges[b]), int(edges[b + 1]))
        for i in range(mu.shape[0]):
            pmf = stats.nbinom.pmf(k[:, None], r[i, u], r[i, u] / (r[i, u] + mu[i, u])).sum(axis=0)
            out[i, c] = np.sum(np.exp(log_w[i, u]) * pmf)
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), log_mu=st.floats(-3.0, 7.0), log_r=st.floats(-5.0, 14.0))
def test_bin_masses_equal_scipy(seed: int, log_mu: float, log_r: float):
    """Every bin width (Horner's rule over up to 490 integers), first integers below and above the Stirling shift,
    shapes from 0.007 to 1.2e6 (near-Poisson); float64 to 1e-8, float32 to 1e-3 relative. The float64 tolerance
    is scipy's: its lgamma-difference pmf is off by up to ~1e-9 at r ~ 1e5 (log_mu -2, log_r 12: scipy 1.1e-9
    from 40-digit mpmath, this module 3e-14). The float32 one is the rounding of log-pmf terms as large as the
    means (up to ~8000 here: 2.0e-4 seen at log_mu 7; 1.3e-4 over 150 random draws)."""
    rng = np.random.default_rng(seed)
    n, U, K = 2, 3, 4
    mu = np.exp(log_mu + rng.normal(0, 1, (n, U, K)))
    r = np.exp(np.clip(log_r + rng.normal(0, 1, (n, U, K)), -5, 14))
    log_w = np.log(rng.dirichlet(np.ones(K), (n, U)))
    bins = rng.integers(0, len(EDGES) - 1, 12)
    rows = rng.integers(0, U, 12)
    ref = _reference(log_w, mu, r, bins, rows, EDGES)
    keep = ref > 1e-30  # float32 underflows below
    for dtype, rtol in ((torch.float64, 1e-8), (torch.float32, 1e-3)):
        plan = bin_plan(bins, rows, _index(EDGES), len(EDGES) - 1, torch.device("cpu"), dtype)
        got = nb_mixture_bin_masses(*(torch.as_tensor(a, dtype=dtype) for a in (log_w, mu, r)), plan).double().numpy()
        np.testing.assert_allclose(got[keep], ref[keep], rtol=rtol, atol=0)


def test_bin_plan_keeps_the_categories_order_and_refuses_bins_outside():
    bins, rows = np.array([3, 0, 3, 12, 1]), np.array([0, 1, 0, 2, 2])
    plan = bin_plan(bins, rows, _index(EDGES), len(EDGES) - 1, torch.device("cpu"), torch.float64)
    assert sorted(plan.order.tolist()) == list(range(5))
    np.testing.assert_array_equal(plan.lo.numpy(), EDGES[bins[plan.order.numpy()]])
    with pytest.raises(ValueError, match="bins 0..12"):
        bin_plan(np.array([13]), np.array([0]), _index(EDGES), len(EDGES) - 1, torch.device("cpu"), torch.float64)


def test_outside_mass_is_the_float64_tail_on_both_sides():
    """P(X < first) + P(X >= cap) of the mixture from the components' incomplete beta functions, tiny tails
    included (1 - sum in float32 could not tell 1e-20 from 0 or from 1e-7)."""
    mu = torch.tensor([[3.0, 40.0]], dtype=torch.float32)
    r = torch.tensor([[2.0, 500.0]], dtype=torch.float32)
    log_w = torch.log(torch.tensor([[0.3, 0.7]]))
    got = nb_mixture_outside(log_w, mu, r, first=2, cap=120).numpy()[0]
    m, s = mu.double().numpy()[0], r.double().numpy()[0]
    p = s / (s + m)
    ref = np.sum(np.array([0.3, 0.7]) * (stats.nbinom.cdf(1, s, p) + stats.nbinom.sf(119, s, p)))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    tiny = nb_mixture_outside(log_w, mu, r, first=0, cap=400).numpy()[0]
    assert 0 < tiny < 1e-20


def test_conditional_overflow_category_is_the_float64_tail():
    """In float32 the overflow category is each component's tail in float64 (scipy's nbinom.sf of the same
    components), not 1 - sum of the bins in float32, whose rounding (~1e-7) swamps small tails."""
    torch.manual_seed(0)
    net = ConditionalMDN(3, "gamma_poisson", 3, Binning(JOINT_EDGES), hidden=(16, 16), head=(16, 8))
    with torch.no_grad():  # components whose tails beyond the grid are ~1e-10 or below
        for lin in (net.a_params, net.b_params):
            lin.bias.view(-1, 2)[:, 0] -= 2.0
        x = torch.randn(5, 3)
        n_bins = net.binning.n_bins
        got = net.category_probs(x, torch.tensor([n_bins])).numpy()[:, 0]
        one_minus_sum = net(x)[:, -1].numpy()
        log_wa, pa, log_wb, pb = (t.double().numpy() for t in net.factors(x))
    em, ep = JOINT_EDGES

    def sf(log_w, par, k):  # P(X >= k) of the Gamma-Poisson mixture
        return sum(np.exp(lw) * stats.nbinom.sf(k - 1, r, r / (r + mu)) for lw, (mu, r) in zip(log_w, par))

    m = np.arange(int(em[-1]))
    for i in range(5):
        pm = sum(np.exp(lw) * stats.nbinom.pmf(m, r, r / (r + mu)) for lw, (mu, r) in zip(log_wa[i], pa[i]))
        a_bins = np.add.reduceat(pm, em[:-1].astype(int))
        ref = sf(log_wa[i], pa[i], int(em[-1])) + sum(a_bins[j] * sf(log_wb[i, j], pb[i, j], int(ep[-1]))
                                                      for j in range(len(em) - 1))
        np.testing.assert_allclose(got[i], ref, rtol=1e-5)
    assert np.max(np.abs(one_minus_sum - got) / got) > 0.01  # what 1 - sum in float32 gives instead


def test_mdn_overflow_category_is_the_float64_tail():
    """category_probs of the overflow on a float32 MDN: the components' tail in float64 (scipy's nbinom.sf of the
    same components), where 1 - sum of the bins in float32 cannot resolve tails below ~1e-7."""
    torch.manual_seed(0)
    model = MDN(3, "gamma_poisson", 2, Binning([COUNT_EDGES]), hidden=(16, 16))
    with torch.no_grad():
        model.param_head.bias.view(-1, 2)[:, 0] = math.log(4.0)  # means ~4 on a grid to 30: tails ~1e-9
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
        n_bins = len(COUNT_EDGES) - 1
        got = model.category_probs(x, torch.tensor([n_bins, 0])).numpy()
        log_w, params = (t.double().numpy() for t in model.mixture(x))
    mu, r = params[..., 0], params[..., 1]
    ref = (np.exp(log_w) * stats.nbinom.sf(29, r, r / (r + mu))).sum(axis=1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got[:, 0], ref, rtol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(got[:, 1], model(x)[:, 0].numpy(), rtol=1e-6)
