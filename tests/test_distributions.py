"""Component families and mixture binning (surrogate_abc.emulators.distributions) against references:
scipy.stats, direct numerical integrals (scipy.integrate.quad) and brute-force binning."""
from __future__ import annotations

import math
from math import exp, lgamma, log

import numpy as np
import pytest
import scipy.stats as st
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst
from scipy import integrate, optimize

from surrogate_abc.config import load_protocol
from surrogate_abc.emulators.distributions import (
    Binning,
    BivariateDMGammaPoissonFamily,
    GammaPoissonFamily,
    GaussianFamily,
    PoissonLogNormalFamily,
    get_family,
    lambertw_exp,
    log_rising_rel,
    mixture_probs,
)
from surrogate_abc.errors import UserError
from surrogate_abc.losses import thesis_h2 as hellinger

F64 = torch.float64


def t64(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


# ------------------------------------------------------------------------------------------ helpers
def test_lambertw_exp_solves_its_equation():
    z = torch.cat([torch.linspace(-60, 60, 601, dtype=F64), torch.logspace(2, 8, 50, dtype=F64)])
    t = lambertw_exp(z)
    assert torch.all(torch.isfinite(t))
    assert torch.allclose(torch.exp(t) + t, z, rtol=1e-13, atol=1e-12)


def test_log_rising_rel_matches_lgamma_and_vanishes_at_large_x():
    x = t64(0.3, 2.0, 9.99, 10.0, 10.01, 57.0, 4.0e3)[:, None]
    k = t64(0, 1, 3, 17, 250)[None, :]
    ref = torch.lgamma(x + k) - torch.lgamma(x) - k * torch.log(x)
    assert torch.allclose(log_rising_rel(x, k), ref, rtol=1e-11, atol=1e-10)
    # x -> inf: lgamma(x + 3) - lgamma(x) - 3 log x = 3 / x + O(1/x^2); lgamma differences cancel here
    big = t64(1e8, 1e11)
    assert torch.allclose(log_rising_rel(big, torch.full_like(big, 3.0)), 3.0 / big, rtol=1e-6)


# ------------------------------------------------------------------------------------------ Gaussian
def test_gaussian_bin_masses_match_scipy_including_far_tails():
    fam = GaussianFamily()
    params = t64([0.3, 1.7], [-2.0, 0.4], [5.0, 3.0])            # (K=3, 2)
    edges = np.array([-15.0, -4.0, -1.0, -0.5, 0.0, 0.2, 1.0, 2.5, 6.0, 15.0])
    log_bins, log_out = fam.log_bin_mass(params, torch.tensor(edges))
    for i, (mu, sd) in enumerate(params.tolist()):
        a, b = edges[:-1], edges[1:]
        upper = (a + b) / 2 > mu   # difference the tail that is small, so the reference is accurate too
        ref = np.where(upper, st.norm.sf(a, mu, sd) - st.norm.sf(b, mu, sd), st.norm.cdf(b, mu, sd) - st.norm.cdf(a, mu, sd))
        np.testing.assert_allclose(log_bins[i].exp().numpy(), ref, rtol=1e-6, atol=1e-300)
        out = st.norm.cdf(edges[0], mu, sd) + st.norm.sf(edges[-1], mu, sd)
        np.testing.assert_allclose(log_out[i].exp().item(), out, rtol=1e-6)
    # bins 40 and 60 standard deviations out: CDF differences 0 - 0 in linear space, exact in log space
    far = torch.tensor([40.0, 41.0, 60.0, 61.0], dtype=F64)
    lb, _ = fam.log_bin_mass(t64([0.0, 1.0]), far)
    ref_right = st.norm.logsf(40.0) + np.log1p(-np.exp(st.norm.logsf(41.0) - st.norm.logsf(40.0)))
    assert lb[0, 0].item() == pytest.approx(ref_right, rel=1e-9)
    lb_left, _ = fam.log_bin_mass(t64([0.0, 1.0]), -far.flip(0))
    assert lb_left[0, -1].item() == pytest.approx(ref_right, rel=1e-9)
    assert torch.all(torch.isfinite(lb))
    cdf = fam.cdf(t64([1.0, 2.0]), torch.tensor([0.0, 1.0, 3.0], dtype=F64))
    np.testing.assert_allclose(cdf[0].numpy(), st.norm.cdf([0.0, 1.0, 3.0], 1.0, 2.0), rtol=1e-12)
    np.testing.assert_allclose(fam.log_cdf(t64([1.0, 2.0]), torch.tensor([-30.0], dtype=F64))[0].numpy(),
                               st.norm.logcdf([-30.0], 1.0, 2.0), rtol=1e-10)


def test_gaussian_mixture_probs_non_uniform_edges_rows_sum_to_one():
    edges = np.concatenate([np.linspace(-10, -2, 5), np.linspace(-1.5, 1.5, 13), [3.0, 7.0, 12.0]])
    binning = Binning([edges], counts=False)
    fam = GaussianFamily()
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(6, 3, 2, generator=gen, dtype=F64) * 2
    logits = torch.randn(6, 3, generator=gen, dtype=F64)
    probs = mixture_probs(fam, logits, fam.constrain(raw), binning)
    assert probs.shape == (6, len(edges))
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, atol=1e-12)
    params, w = fam.constrain(raw).numpy(), torch.softmax(logits, 1).numpy()
    cdf = np.einsum("nk,nke->ne", w, st.norm.cdf(edges[None, None, :], params[..., :1], params[..., 1:]))
    np.testing.assert_allclose(probs[:, :-1].numpy(), np.diff(cdf, axis=1), rtol=1e-6, atol=1e-15)
    probs32 = mixture_probs(fam, logits.float(), fam.constrain(raw.float()), binning)
    assert probs32.dtype == torch.float32
    np.testing.assert_allclose(probs32.double().numpy(), probs.numpy(), atol=2e-6)


# ------------------------------------------------------------------------------------------ Gamma-Poisson
@pytest.mark.parametrize("mu,r", [(5.0, 0.1), (100.0, 2.0), (50.0, 1e5), (3.0, 1e-3), (300.0, 50.0),
                                  (0.01, 3.0), (20.0, 9.999), (20.0, 10.001)])
def test_gamma_poisson_matches_scipy_nbinom(mu, r):
    k = np.arange(0, 4000)
    lp = GammaPoissonFamily().log_pmf(t64([mu, r]), torch.tensor(k))[0].numpy()
    ref = st.nbinom.logpmf(k, r, r / (r + mu))
    keep = ref > -600
    np.testing.assert_allclose(lp[keep], ref[keep], rtol=0, atol=1e-6)   # |log ratio| < 1e-6: rel 1e-6
    assert np.exp(lp).sum() == pytest.approx(1.0 - st.nbinom.sf(k[-1], r, r / (r + mu)), abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(log_mu=hst.floats(-3.0, 5.5), log_r=hst.floats(-2.0, 9.0))
def test_gamma_poisson_property_sums_to_one_and_matches_scipy(log_mu, log_r):
    mu, r = math.exp(log_mu), math.exp(log_r)
    k = np.arange(0, 20000)
    lp = GammaPoissonFamily().log_pmf(t64([mu, r]), torch.tensor(k))[0].numpy()
    assert np.all(np.isfinite(lp))
    p = r / (r + mu)
    assert np.exp(lp).sum() == pytest.approx(1.0 - st.nbinom.sf(k[-1], r, p), abs=1e-6)
    ref = st.nbinom.logpmf(k[:400], r, p)
    keep = ref > -300
    np.testing.assert_allclose(lp[:400][keep], ref[keep], atol=1e-6)


def test_gamma_poisson_poisson_limit():
    k = np.arange(0, 200)
    lp = GammaPoissonFamily().log_pmf(t64([40.0, 1e12]), torch.tensor(k))[0].numpy()
    np.testing.assert_allclose(lp, st.poisson.logpmf(k, 40.0), atol=1e-8)


# ------------------------------------------------------------------------------------------ Poisson-log-normal
def pln_quad_logpmf(k: int, mu: float, sigma: float) -> float:
    """log p(k) by adaptive quadrature over x = log lam, split at the integrand's mode (brentq)."""
    def g(x):
        return k * x - exp(x) - 0.5 * ((x - mu) / sigma) ** 2
    dg = lambda x: k - exp(x) - (x - mu) / sigma ** 2  # noqa: E731
    lo = min(mu, log(k) if k > 0 else mu) - 5.0 - 10.0 * sigma
    hi = max(mu, log(k + 1.0)) + 5.0
    mode = optimize.brentq(dg, lo, hi, xtol=1e-14)
    g0 = g(mode)
    f = lambda x: exp(g(x) - g0)  # noqa: E731
    span = 12.0 * sigma + 1.0  # g is (1/sigma^2)-strongly concave: g drops by > 72 beyond this
    left = integrate.quad(f, mode - span, mode, epsabs=0, epsrel=1e-11, limit=500)[0]
    right = integrate.quad(f, mode, mode + span, epsabs=0, epsrel=1e-11, limit=500)[0]
    return g0 + log(left + right) - lgamma(k + 1) - log(sigma) - 0.5 * log(2 * math.pi)


@pytest.mark.parametrize("mu,sigma", [(0.0, 0.5), (2.0, 1.0), (8.0, 2.5), (3.0, 2.5), (8.0, 0.05),
                                      (-3.0, 2.5), (5.0, 3.0)])
def test_poisson_lognormal_matches_quad(mu, sigma):
    ks = [0, 1, 2, 5, 30, 200, 3000]
    lp = PoissonLogNormalFamily().log_pmf(t64([mu, sigma]), torch.tensor(ks))[0].numpy()
    assert np.all(np.isfinite(lp))
    ref = np.array([pln_quad_logpmf(k, mu, sigma) for k in ks])
    np.testing.assert_allclose(np.expm1(lp - ref), 0.0, atol=1e-6)   # relative error of the pmf


@pytest.mark.parametrize("mu,sigma", [(1.0, 0.5), (3.0, 0.3), (0.0, 1.2), (4.0, 0.01)])
def test_poisson_lognormal_sums_to_one(mu, sigma):
    lp = PoissonLogNormalFamily().log_pmf(t64([mu, sigma]), torch.arange(0, 6000))
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_poisson_lognormal_tends_to_poisson_as_sigma_vanishes():
    k = np.arange(0, 120)
    fam = PoissonLogNormalFamily()
    for mu in (-2.0, 1.0, 3.5):
        lp = fam.log_pmf(t64([mu, 1e-6]), torch.tensor(k))[0].numpy()
        ref = st.poisson.logpmf(k, math.exp(mu))
        keep = ref > -200
        np.testing.assert_allclose(lp[keep], ref[keep], atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_poisson_lognormal_no_nan_at_extremes(dtype):
    params = torch.tensor([[8.0, 2.5], [12.0, 4.0], [-20.0, 1e-12], [0.0, 1e-12], [8.0, 1e-4], [-8.0, 6.0],
                           [20.0, 0.01]], dtype=dtype)
    lp = PoissonLogNormalFamily().log_pmf(params, torch.arange(0, 2000))
    assert torch.all(torch.isfinite(lp))
    assert torch.all(lp <= 1e-5)


# ------------------------------------------------------------------------------------------ bivariate
def bivariate_integral(m, p, mu, r, a, b, c) -> float:
    """exp(-c) * double integral over lam ~ Gamma(r, mu/r), q ~ Beta(a, b) of Pois(m; lam q) Pois(p; lam (1-q))."""
    lbeta = lgamma(a) + lgamma(b) - lgamma(a + b)
    th = mu / r

    def integrand(lam, q):
        if lam <= 0 or q <= 0 or q >= 1:
            return 0.0
        x = (m * log(lam * q) - lam * q - lgamma(m + 1) + p * log(lam * (1 - q)) - lam * (1 - q) - lgamma(p + 1)
             + (r - 1) * log(lam) - lam / th - lgamma(r) - r * log(th)
             + (a - 1) * log(q) + (b - 1) * log(1 - q) - lbeta)
        return exp(x - c)
    hi = mu + 40 * math.sqrt(mu + mu * mu / r) + 5 * (m + p) + 50
    def inner(q):
        return integrate.quad(integrand, 0, hi, args=(q,), epsabs=0, epsrel=1e-10, limit=200, points=[m + p])[0]
    return integrate.quad(inner, 0, 1, epsabs=0, epsrel=1e-9, limit=200)[0]


@pytest.mark.parametrize("mu,r,a,b", [(30.0, 2.0, 2.0, 3.0), (60.0, 1.3, 4.0, 1.2)])
def test_bivariate_matches_double_integral(mu, r, a, b):
    ms, ps = [0, 3, 12], [0, 25]
    lp = BivariateDMGammaPoissonFamily().log_pmf(t64([mu, r, a, b]), torch.tensor(ms), torch.tensor(ps))[0]
    assert lp.shape == (3, 2)
    for i, m in enumerate(ms):
        for j, p in enumerate(ps):
            assert bivariate_integral(m, p, mu, r, a, b, lp[i, j].item()) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("mu,r,a,b", [(30.0, 2.0, 2.0, 3.0), (40.0, 1.5, 0.6, 5.0), (40.0, 1e6, 1e5, 3e5)])
def test_bivariate_sums_to_one_and_has_negative_binomial_total(mu, r, a, b):
    g = torch.arange(0, 600)
    pmf = BivariateDMGammaPoissonFamily().log_pmf(t64([mu, r, a, b]), g, g)[0].exp().numpy()
    assert pmf.sum() == pytest.approx(1.0, abs=1e-6)
    total = np.array([np.trace(np.fliplr(pmf), offset=599 - n) for n in range(200)])   # P(m + p = n)
    np.testing.assert_allclose(total, st.nbinom.pmf(np.arange(200), r, r / (r + mu)), rtol=1e-6, atol=1e-14)
    q = a / (a + b)
    mean_m = (pmf.sum(1) * np.arange(600)).sum()
    assert mean_m == pytest.approx(mu * q, rel=1e-5)


def test_bivariate_poisson_limit_is_two_independent_poissons():
    m, p = torch.arange(0, 40), torch.arange(0, 60)
    lp = BivariateDMGammaPoissonFamily().log_pmf(t64([30.0, 1e12, 1e11, 2e11]), m, p)[0].numpy()
    ref = st.poisson.logpmf(m.numpy()[:, None], 10.0) + st.poisson.logpmf(p.numpy()[None, :], 20.0)
    keep = ref > -100
    np.testing.assert_allclose(lp[keep], ref[keep], atol=1e-6)


# ------------------------------------------------------------------------------------------ binning
def test_binning_from_protocols():
    b1 = Binning.from_protocol(load_protocol("gene_protein"))
    assert b1.counts and b1.shape == (40 + 30 + 60 + 20,) and b1.support == (600,)
    assert b1.index[0][39].item() == 39 and b1.index[0][40].item() == 40 and b1.index[0][41].item() == 40
    assert b1.index[0][599].item() == b1.shape[0] - 1
    b2 = Binning.from_protocol(load_protocol("gene_joint"))
    assert b2.shape == (80, 150) and b2.n_categories == 80 * 150 + 1 and b2.species == ("mrna", "protein")
    b3 = Binning.from_protocol(load_protocol("gaussian_mixture"))
    assert not b3.counts and b3.shape == (100,)
    moved = b1.to("cpu")
    assert moved is not b1 and moved.shape == b1.shape and moved.device.type == "cpu"


def brute_force_bins(pmf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Sum a pmf on 0..len-1 into bins edges[i] <= k < edges[i+1] with an explicit loop."""
    out = np.zeros(len(edges) - 1)
    for k, v in enumerate(pmf):
        for i in range(len(edges) - 1):
            if edges[i] <= k < edges[i + 1]:
                out[i] += v
    return out


@pytest.mark.parametrize("family", [GammaPoissonFamily(), PoissonLogNormalFamily()])
def test_univariate_mixture_probs_match_brute_force(family):
    edges = np.array([2.0, 3.0, 5.5, 6.0, 10.0, 20.0, 45.0, 70.5])    # non-uniform, non-integer, first > 0
    binning = Binning([edges])
    assert binning.support == (71,)
    params = (t64([[12.0, 3.0], [40.0, 50.0], [3.0, 0.5]], [[1.0, 0.1], [30.0, 2.0], [60.0, 100.0]])
              if family.name == "gamma_poisson"
              else t64([[2.0, 0.5], [3.5, 0.2], [1.0, 1.0]], [[0.0, 0.1], [3.0, 1.0], [4.0, 0.3]]))
    logits = t64([0.2, -1.0, 0.5], [1.0, 1.0, -3.0])
    probs = mixture_probs(family, logits, params, binning).numpy()
    assert probs.shape == (2, len(edges))
    w = torch.softmax(logits, 1).numpy()
    big = torch.arange(0, 20000)
    for n in range(2):
        pmf = (w[n][:, None] * family.log_pmf(params[n], big).exp().numpy()).sum(0)
        ref = brute_force_bins(pmf[:71], edges)
        np.testing.assert_allclose(probs[n, :-1], ref, rtol=1e-10, atol=1e-16)
        assert probs[n, -1] == pytest.approx(1.0 - ref.sum(), abs=1e-12)   # below 2 and from 71 on
        assert probs[n, -1] == pytest.approx(pmf[:2].sum() + pmf[71:].sum(), abs=1e-6)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)


def test_bivariate_mixture_probs_match_brute_force_on_non_uniform_2d_edges():
    em = np.array([0.0, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0])
    ep = np.array([0.0, 5.0, 10.0, 12.0, 30.0, 50.5, 80.0])
    binning = Binning([em, ep], species=("mrna", "protein"))
    fam = BivariateDMGammaPoissonFamily()
    params = t64([[20.0, 2.0, 1.5, 3.0], [50.0, 8.0, 2.0, 5.0]], [[10.0, 0.8, 0.7, 1.0], [60.0, 30.0, 3.0, 6.0]])
    logits = t64([0.0, 0.5], [-1.0, 1.0])
    probs = mixture_probs(fam, logits, params, binning)
    assert probs.shape == (2, 6 * 6 + 1)
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, atol=1e-12)
    w = torch.softmax(logits, 1).numpy()
    for n in range(2):
        grid = (w[n][:, None, None] * fam.log_pmf(params[n], torch.arange(30), torch.arange(80)).exp().numpy()).sum(0)
        ref = np.zeros((6, 6))
        for m in range(30):
            for p in range(80):
                im, ip = np.searchsorted(em, m, "right") - 1, np.searchsorted(ep, p, "right") - 1
                ref[im, ip] += grid[m, p]
        np.testing.assert_allclose(probs[n, :-1].reshape(6, 6).numpy(), ref, rtol=1e-10, atol=1e-16)
    p32 = mixture_probs(fam, logits.float(), params.float(), binning)
    np.testing.assert_allclose(p32.double().numpy(), probs.numpy(), atol=1e-5)
    np.testing.assert_allclose(p32.sum(1).double().numpy(), 1.0, atol=1e-5)


def test_family_binning_mismatch_is_a_user_error():
    one = Binning([np.arange(0.0, 10.0)])
    two = Binning([np.arange(0.0, 5.0), np.arange(0.0, 5.0)])
    real = Binning([np.linspace(-1.0, 1.0, 5)], counts=False)
    p2, p4, w = torch.ones(1, 2, 2), torch.ones(1, 2, 4), torch.zeros(1, 2)
    with pytest.raises(UserError, match="bivariate"):
        mixture_probs(GammaPoissonFamily(), w, p2, two)
    with pytest.raises(UserError, match="univariate"):
        mixture_probs(BivariateDMGammaPoissonFamily(), w, p4, one)
    with pytest.raises(UserError, match="gaussian"):
        mixture_probs(PoissonLogNormalFamily(), w, p2, real)
    with pytest.raises(UserError, match="gamma_poisson"):
        get_family("negbin")
    with pytest.raises(UserError, match="strictly increasing"):
        Binning([np.array([0.0, 2.0, 1.0])])


# ------------------------------------------------------------------------------------------ gradients
EXTREME_RAW = [0.0, 3.0, -27.0, 27.0]   # exp(-27) ~ 2e-12, exp(27) ~ 5e11


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["gaussian", "gamma_poisson", "poisson_lognormal", "bivariate_dm_gamma_poisson"])
def test_gradients_finite_including_zero_counts_and_extreme_parameters(name, dtype):
    fam = get_family(name)
    if fam.event_dim == 2:
        binning = Binning([np.arange(0.0, 13.0), np.array([0.0, 1.0, 3.0, 10.0, 25.0])])
    elif fam.discrete:
        binning = Binning([np.array([0.0, 1.0, 2.0, 5.0, 10.0, 40.0])])
    else:
        binning = Binning([np.linspace(-6.0, 6.0, 25)], counts=False)
    values = torch.tensor(EXTREME_RAW, dtype=dtype)
    grids = torch.meshgrid(*([values] * fam.raw_size), indexing="ij")
    raw = torch.stack([g.reshape(-1) for g in grids], dim=-1)        # every combination of extremes
    if name in ("gaussian", "poisson_lognormal"):
        raw[:, 0] = raw[:, 0].clamp(-8.0, 8.0)                       # the location: log-lambda of 8 ~ 3000
    raw = raw.reshape(-1, 2, fam.raw_size).clone().requires_grad_(True)
    logits = torch.zeros(raw.shape[0], 2, dtype=dtype, requires_grad=True)
    probs = mixture_probs(fam, logits, fam.constrain(raw), binning)
    assert torch.all(torch.isfinite(probs))
    np.testing.assert_allclose(probs.sum(1).detach().double().numpy(), 1.0, atol=1e-4 if dtype == torch.float32 else 1e-9)
    target = torch.full_like(probs, 1.0 / probs.shape[1])
    hellinger(probs, target).backward()
    assert torch.all(torch.isfinite(raw.grad)) and torch.all(torch.isfinite(logits.grad))
    assert raw.grad.abs().sum() > 0


@pytest.mark.parametrize("family,params,k0", [
    (GammaPoissonFamily(), [[5.0, 2.0], [1e-12, 1e-12], [1e12, 1e12], [300.0, 1e-12]], 0),
    (PoissonLogNormalFamily(), [[2.0, 0.5], [8.0, 2.5], [-10.0, 1e-12], [0.0, 5.0]], 0),
])
def test_log_pmf_gradient_at_k_zero(family, params, k0):
    p = torch.tensor(params, dtype=F64, requires_grad=True)
    lp = family.log_pmf(p, torch.tensor([k0, 1, 7]))
    assert torch.all(torch.isfinite(lp))
    lp.sum().backward()
    assert torch.all(torch.isfinite(p.grad))


def test_gamma_poisson_gradient_matches_finite_differences():
    fam = GammaPoissonFamily()
    p = t64([17.0, 2.5]).requires_grad_(True)
    k = torch.arange(0, 60)
    fam.log_pmf(p, k)[0, 11].backward()
    h = 1e-6
    for j in range(2):
        e = torch.zeros(2, dtype=F64)
        e[j] = h
        fd = (fam.log_pmf(p.detach() + e, k)[0, 11] - fam.log_pmf(p.detach() - e, k)[0, 11]) / (2 * h)
        assert p.grad[0, j].item() == pytest.approx(fd.item(), rel=1e-6)


# ------------------------------------------------------------------ fast grid paths used by mixture_probs
@pytest.mark.parametrize("r", [1e-9, 1e-3, 0.5, 9.99, 10.0, 37.0, 1e4, 1e9])
@pytest.mark.parametrize("mu", [1e-3, 3.0, 150.0, 2000.0])
def test_gamma_poisson_grid_equals_direct_log_pmf(mu, r):
    fam = GammaPoissonFamily()
    params = torch.tensor([[[mu, r]]], dtype=torch.float64)
    grid = fam.log_pmf_grid(params, 700)
    direct = fam.log_pmf(params, torch.arange(700))
    assert grid.shape == direct.shape == (1, 1, 700)
    finite = direct > -600
    np.testing.assert_allclose(grid[finite].numpy(), direct[finite].numpy(), rtol=1e-10, atol=1e-9)
    # scipy's nbinom loses digits at huge r, where the Poisson limit is the reference
    ref = st.nbinom.pmf(np.arange(700), r, r / (r + mu)) if r < 1e5 else st.poisson.pmf(np.arange(700), mu)
    np.testing.assert_allclose(grid.exp()[0, 0].numpy(), ref, atol=1e-10 if r < 1e5 else 1e-6 * mu)


@given(hst.floats(-3, 3), hst.floats(-3, 5), hst.floats(-2, 4), hst.floats(-2, 4))
@settings(max_examples=40, deadline=None)
def test_bivariate_grid_equals_direct_log_pmf(log_mu, log_r, log_a, log_b):
    fam = BivariateDMGammaPoissonFamily()
    params = torch.tensor([[[10 ** log_mu, 10 ** log_r, 10 ** log_a, 10 ** log_b]]], dtype=torch.float64)
    grid = fam.log_pmf_grid(params, 17, 41)
    direct = fam.log_pmf(params, torch.arange(17), torch.arange(41))
    assert grid.shape == direct.shape == (1, 1, 17, 41)
    np.testing.assert_allclose(grid.numpy(), direct.numpy(), rtol=1e-9, atol=1e-8)


def test_mixture_probs_chunking_does_not_change_rows(monkeypatch):
    """Rows are evaluated in cache-sized chunks; a batch spanning many chunks equals row-by-row results."""
    import surrogate_abc.emulators.distributions as dist

    binning = Binning([np.arange(0.0, 120.0, 3.0)])
    fam = GammaPoissonFamily()
    g = torch.Generator().manual_seed(3)
    n = 37
    params = torch.stack([torch.exp(torch.randn(n, 4, generator=g) + 3.0),
                          torch.exp(2.0 * torch.randn(n, 4, generator=g))], dim=-1).double()
    logits = torch.randn(n, 4, generator=g).double()
    monkeypatch.setattr(dist, "_CHUNK_ELEMENTS", 4 * 120 * 5)   # 5 rows per chunk, last chunk short
    chunked = mixture_probs(fam, logits, params, binning)
    single = torch.cat([mixture_probs(fam, logits[i:i + 1], params[i:i + 1], binning) for i in range(n)])
    np.testing.assert_allclose(chunked.numpy(), single.numpy(), rtol=1e-11, atol=1e-15)
    assert mixture_probs(fam, logits[:0], params[:0], binning).shape == (0, binning.n_categories)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_far_tail_floor_is_a_normal_number_and_leaves_pmfs_exact(dtype):
    """Grid terms are clamped at log_tiny before exp (subnormal exp is ~10x slower on CPU): the floor
    must give a normal float, and a mixture with far tails (log pmf ~ -1e3) still matches scipy."""
    import surrogate_abc.emulators.distributions as D
    from surrogate_abc.emulators.distributions import log_tiny

    floor = torch.exp(torch.tensor(log_tiny(dtype), dtype=dtype))
    assert floor >= torch.finfo(dtype).tiny and floor < 1e3 * torch.finfo(dtype).tiny
    fam = D.GammaPoissonFamily()
    binning = D.Binning([np.arange(0.0, 601.0)])
    params = torch.tensor([[[5.0, 1e4], [500.0, 1e4]]], dtype=dtype)  # near-Poisson: tails far below the floor
    probs = D.mixture_probs(fam, torch.log(torch.tensor([[0.3, 0.7]], dtype=dtype)), params, binning)[0].numpy()
    k = np.arange(600)
    ref = sum(w * st.nbinom.pmf(k, 1e4, 1e4 / (1e4 + m)) for w, m in ((0.3, 5.0), (0.7, 500.0)))
    tol = 2e-5 if dtype == torch.float32 else 1e-12  # float32: cumsum rounding over ~500 terms, not the floor
    np.testing.assert_allclose(probs[:-1], ref, atol=tol)
    assert abs(probs.sum() - 1.0) < 10 * tol
