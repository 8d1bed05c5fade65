"""Component families of the mixture-density emulators (count and real-valued distributions in log space).

Every family works in log space (lgamma, log_ndtr, logsumexp), vectorised over any batch shape and
the component axis K, in float32 (training) or float64 (evaluation):

* GaussianFamily            (mu, sigma)      real-valued; bin masses by stable CDF differences.
* GammaPoissonFamily        (mu, r)          negative binomial, mean mu, variance mu + mu^2 / r.
* PoissonLogNormalFamily    (mu, sigma)      k | lam ~ Poisson(lam), log lam ~ N(mu, sigma^2);
                                             trapezoid quadrature on a range fitted around the mode.
* BivariateDMGammaPoissonFamily (mu, r, a, b) joint (m, p): N = m + p ~ GammaPoisson(mu, r),
                                             m | N ~ BetaBinomial(N, a, b).

The count families are written as a Poisson term plus corrections that vanish in the Poisson limit
(r, a, b -> infinity), using `log_rising_rel` (lgamma(x + k) - lgamma(x) - k log x, by Stirling's series
for x >= 10), so nothing cancels catastrophically at large shapes.

Bivariate closed form (derived from m ~ Pois(lam q), p ~ Pois(lam (1 - q)), lam ~ Gamma(r, scale mu / r),
q ~ Beta(a, b); checked against a numerical double integral in tests/test_distributions.py):

    P(m, p) = Gamma(N + r) / (Gamma(r) m! p!) * (mu / r)^N * (1 + mu / r)^-(N + r)
              * B(m + a, p + b) / B(a, b),                      N = m + p.

"""
from __future__ import annotations

import math

import torch

from ..errors import UserError

PARAM_MIN = 1e-12  # lower clamp of positive parameters (the thesis' choice)
PARAM_MAX = 1e12   # upper clamp: keeps exp(raw) finite in float32
_LN2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_STIRLING_MIN = 10.0


# ----------------------------------------------------------------------------------------- helpers
def positive(raw: torch.Tensor) -> torch.Tensor:
    """exp(raw) clamped to [PARAM_MIN, PARAM_MAX]."""
    return torch.exp(raw).clamp(PARAM_MIN, PARAM_MAX)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate everywhere and with finite gradients (x is clamped below 0)."""
    x = x.clamp(max=-1e-30)
    near = torch.log(-torch.expm1(x.clamp(min=-_LN2)))
    far = torch.log1p(-torch.exp(x.clamp(max=-_LN2)))
    return torch.where(x > -_LN2, near, far)


def _stirling_tail(x: torch.Tensor) -> torch.Tensor:
    """lgamma(x) - [(x - 1/2) log x - x + log(2 pi)/2] for x >= 10 (error < 1e-12)."""
    r = 1.0 / x
    r2 = r * r
    return r * (1.0 / 12 - r2 * (1.0 / 360 - r2 * (1.0 / 1260 - r2 / 1680)))


def log_rising_rel(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """lgamma(x + k) - lgamma(x) - k log(x) for x > 0, k >= 0 (broadcast); tends to 0 as x -> inf.

    lgamma differences for x < 10, Stirling's series above (no cancellation of two huge lgammas)."""
    small = x.clamp(max=_STIRLING_MIN)
    by_lgamma = torch.lgamma(small + k) - torch.lgamma(small) - k * torch.log(small)
    big = x.clamp(min=_STIRLING_MIN)
    by_stirling = (k + big - 0.5) * torch.log1p(k / big) - k + _stirling_tail(big + k) - _stirling_tail(big)
    return torch.where(x < _STIRLING_MIN, by_lgamma, by_stirling)


def _as_float(k, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(k, device=like.device).to(like.dtype)


def _floating(params) -> torch.Tensor:
    """params as a floating tensor (integer input is promoted to the default dtype)."""
    params = torch.as_tensor(params)
    return params if params.is_floating_point() else params.to(torch.get_default_dtype())


def log_rising_rel_grid(x: torch.Tensor, n: int) -> torch.Tensor:
    """log_rising_rel(x, k) for k = 0..n-1 at once: (...,) -> (..., n).

    The cumulative sum of log(1 + j / x), j = 0..k-1: one vectorised log1p per point instead of the
    lgamma pair of `log_rising_rel`, exact for any x > 0 (the j = 0 term is log(x) - log(x) = 0).
    The summands are 0, 0, 1, ..., n-2 over x, so the sum at k = 0 and k = 1 is 0 without padding."""
    j = (torch.arange(n, device=x.device, dtype=x.dtype) - 1.0).clamp(min=0.0)
    return torch.cumsum(torch.log1p(j * torch.reciprocal(x)[..., None]), dim=-1)


def _log_factorials(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(torch.arange(n, device=like.device, dtype=like.dtype) + 1.0)


def nb_log_pmf(k: torch.Tensor, log_mu: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """log NegBin(k; mean exp(log_mu), shape r), broadcast; stable for r -> 0 and r -> inf."""
    log_r = torch.log(r)
    return (k * log_mu - torch.lgamma(k + 1.0) + log_rising_rel(r, k)
            - (k + r) * torch.nn.functional.softplus(log_mu - log_r))


def lambertw_exp(z: torch.Tensor, iterations: int = 8) -> torch.Tensor:
    """log W(exp(z)): the t solving exp(t) + t = z (Newton from a close start; any real z)."""
    big = z > 1.0
    zb = z.clamp(min=1.0)
    t = torch.where(big, torch.log(zb - torch.log(zb)), z - torch.nn.functional.softplus(z))
    for _ in range(iterations):
        et = torch.exp(t)
        t = t - (et + t - z) / (et + 1.0)
    return t


# ----------------------------------------------------------------------------------------- families
class GaussianFamily:
    """Normal components (mu, sigma) on real-valued data; bin masses by CDF differences on the edges."""

    name = "gaussian"
    event_dim = 1
    raw_size = 2
    param_names = ("mu", "sigma")
    discrete = False
    Z_MAX = 150.0

    def constrain(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., K, 2) raw head outputs -> (mu, sigma): identity, exp clamped."""
        return torch.stack([raw[..., 0], positive(raw[..., 1])], dim=-1)

    def _z(self, params: torch.Tensor, x) -> torch.Tensor:
        """Standardised x, clamped to +-Z_MAX: beyond it every mass is below exp(-11000), and torch's
        log_ndtr gradient is wrong far out (NaN/inf at |z| ~ 1e12 with a near-zero sigma)."""
        x = _as_float(x, params)
        return ((x - params[..., 0:1]) / params[..., 1:2]).clamp(-self.Z_MAX, self.Z_MAX)

    def log_cdf(self, params: torch.Tensor, x) -> torch.Tensor:
        """log P(X <= x): params (..., K, 2), x (E,) -> (..., K, E)."""
        params = _floating(params)
        return torch.special.log_ndtr(self._z(params, x))

    def cdf(self, params: torch.Tensor, x) -> torch.Tensor:
        """P(X <= x): params (..., K, 2), x (E,) -> (..., K, E)."""
        params = _floating(params)
        return torch.special.ndtr(self._z(params, x))

    def log_pdf(self, params: torch.Tensor, x) -> torch.Tensor:
        """Log density at x: (..., K, E)."""
        params = _floating(params)
        z = self._z(params, x)
        return -0.5 * z * z - torch.log(params[..., 1:2]) - _HALF_LOG_2PI

    def log_bin_mass(self, params: torch.Tensor, edges) -> tuple[torch.Tensor, torch.Tensor]:
        """(log mass of each bin [e_i, e_i+1) (..., K, B), log mass outside [e_0, e_B) (..., K)).

        Differences are taken on the lower tail left of the mean and on the upper tail right of it,
        in log space, so a bin far in either tail keeps its (tiny) mass instead of 0 - 0."""
        params = _floating(params)
        z = self._z(params, edges)
        za, zb = z[..., :-1], z[..., 1:]
        upper = (za + zb) > 0
        lp, lq = torch.special.log_ndtr(z), torch.special.log_ndtr(-z)  # once per edge, shared by both bins
        lpa, lpb, lqa, lqb = lp[..., :-1], lp[..., 1:], lq[..., :-1], lq[..., 1:]
        left = lpb + log1mexp(lpa - lpb)
        right = lqa + log1mexp(lqb - lqa)
        log_bins = torch.where(upper, right, left)
        # Bins much narrower than sigma: the midpoint rule (relative error < dz^2 (1 + |m|)^2 / 24 < 5e-8)
        # beats a difference of two nearly equal CDFs, which float32 cannot resolve.
        dz, mid = zb - za, 0.5 * (za + zb)
        narrow = dz * (1.0 + mid.abs()) < 1e-3
        by_mid = torch.log(dz.clamp(min=1e-30)) - 0.5 * mid * mid - _HALF_LOG_2PI
        log_bins = torch.where(narrow, by_mid, log_bins)
        log_out = torch.logaddexp(lp[..., 0], lq[..., -1])
        return log_bins, log_out


class GammaPoissonFamily:
    """Negative binomial components, mean mu > 0 and shape r > 0 (variance mu + mu^2 / r)."""

    name = "gamma_poisson"
    event_dim = 1
    raw_size = 2
    param_names = ("mu", "r")
    discrete = True

    def constrain(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., K, 2) raw -> (mu, r), both exp(raw) clamped to [1e-12, 1e12]."""
        return positive(raw)

    def log_pmf(self, params: torch.Tensor, k) -> torch.Tensor:
        """params (..., K, 2), k integers (E,) -> (..., K, E)."""
        params = _floating(params)
        k = _as_float(k, params)
        mu, r = params[..., 0:1], params[..., 1:2]
        return nb_log_pmf(k, torch.log(mu), r)

    def thin(self, params: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Components of the counts after binomial thinning (each molecule kept with probability beta, (...,)
        broadcast over K): a negative binomial stays one, mean beta * mu, shape r."""
        return torch.stack([params[..., 0] * beta[..., None], params[..., 1]], dim=-1)

    def log_pmf_grid(self, params: torch.Tensor, n: int) -> torch.Tensor:
        """log_pmf on the grid k = 0..n-1, (..., K, n): the lgamma(k + r) - lgamma(r) term by a cumulative
        sum (`log_rising_rel_grid`), ~15x faster than `log_pmf` on CPU and equal to float rounding."""
        params = _floating(params)
        mu, r = params[..., 0], params[..., 1]
        log_mu = torch.log(mu)
        s = torch.nn.functional.softplus(log_mu - torch.log(r))                # log(1 + mu / r)
        k = torch.arange(n, device=params.device, dtype=params.dtype)
        return (log_rising_rel_grid(r, n) + k * (log_mu - s)[..., None] - _log_factorials(n, params)
                - (r * s)[..., None])


class PoissonLogNormalFamily:
    """Poisson-log-normal components: k | lam ~ Poisson(lam), log lam ~ N(mu, sigma^2).

    p(k) = integral over x = log lam of exp(g(x)) / (k! sigma sqrt(2 pi)),
    g(x) = k x - e^x - (x - mu)^2 / (2 sigma^2), which is strictly concave. Its mode is closed-form,
    x* = log W(sigma^2 exp(mu + sigma^2 k)) - 2 log sigma (W: Lambert W, computed in log space), and on
    each side of it the point where g has dropped by `drop` is found by Newton's method from a proven
    upper bound. The integral is the trapezoid rule with `n_nodes` nodes on that range (placed in the
    standardised variable z = (x - mu) / sigma, so a tiny sigma survives float32): exponentially
    accurate for this smooth, fast-decaying integrand, and unlike Gauss-Hermite it copes with its strong
    asymmetry at small k and large sigma (Gaussian tail on the left, a double-exponential cliff on the
    right). The nodes are placed in float64 without gradient (the integral does not depend on them);
    the integrand is evaluated in the parameters' dtype with gradients."""

    name = "poisson_lognormal"
    event_dim = 1
    raw_size = 2
    param_names = ("mu", "sigma")
    discrete = True

    def __init__(self, n_nodes: int = 64, drop: float = 36.0):
        if n_nodes < 8:
            raise ValueError(f"n_nodes must be >= 8, got {n_nodes}")
        self.n_nodes, self.drop = int(n_nodes), float(drop)

    def constrain(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., K, 2) raw -> (mu, sigma): identity, exp clamped."""
        return torch.stack([raw[..., 0], positive(raw[..., 1])], dim=-1)

    def thin(self, params: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Components after binomial thinning with probability beta (...,): Poisson(beta lam) with log(beta lam)
        ~ N(mu + log beta, sigma^2), so mu shifts by log beta."""
        return torch.stack([params[..., 0] + torch.log(beta)[..., None], params[..., 1]], dim=-1)

    def integration_range(self, params: torch.Tensor, k) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(left end, mode, right end) of the integration range in x = log lam, (..., K, E), float64."""
        params = _floating(params)
        with torch.no_grad():
            p = params.detach().to(torch.float64)
            mu, sig = p[..., 0:1], p[..., 1:2]
            kk = torch.as_tensor(k, device=p.device).to(torch.float64)
            log_s2 = 2.0 * torch.log(sig)
            s2 = sig * sig
            mode = lambertw_exp(log_s2 + mu + s2 * kk) - log_s2

            def g(x):
                return kk * x - torch.exp(x) - 0.5 * (x - mu) ** 2 / s2

            def dg(x):
                return kk - torch.exp(x) - (x - mu) / s2

            g0, big_d = g(mode), self.drop
            quad_bound = math.sqrt(2.0 * big_d) * sig  # g is (1/sigma^2)-strongly concave
            e_mode = torch.exp(-mode)
            left = torch.minimum(quad_bound, 1.0 + big_d * e_mode)
            right = torch.minimum(quad_bound, torch.log(2.0 * big_d * e_mode + 2.0) + 1.0)
            for _ in range(12):  # Newton on convex increasing functions, from above: stays above the root
                left = left - (g0 - g(mode - left) - big_d) / dg(mode - left).clamp(min=1e-300)
                right = right - (g0 - g(mode + right) - big_d) / (-dg(mode + right)).clamp(min=1e-300)
            left, right = left.clamp(min=1e-8), right.clamp(min=1e-8)
        return mode - left, mode, mode + right

    def log_pmf(self, params: torch.Tensor, k) -> torch.Tensor:
        """params (..., K, 2), k integers (E,) -> (..., K, E)."""
        params = _floating(params)
        k = _as_float(k, params)
        lo, _, hi = self.integration_range(params, k)
        with torch.no_grad():  # nodes in standardised z = (x - mu) / sigma, placed in float64
            p = params.detach().to(torch.float64)
            mu64, sig64 = p[..., 0:1], p[..., 1:2]
            zlo, zhi = (lo - mu64) / sig64, (hi - mu64) / sig64
            u = torch.linspace(0.0, 1.0, self.n_nodes, dtype=torch.float64, device=params.device)
            z = (zlo.unsqueeze(-1) + (zhi - zlo).unsqueeze(-1) * u)                # (..., K, E, Q)
            log_h = torch.log((zhi - zlo) / (self.n_nodes - 1)).to(params.dtype)
            half_z2 = (0.5 * z * z).to(params.dtype)
            z = z.to(params.dtype)
        x = params[..., 0:1, None] + params[..., 1:2, None] * z  # differentiable in mu and sigma
        g = k[:, None] * x - torch.exp(x) - half_z2
        return torch.logsumexp(g, dim=-1) + log_h - _HALF_LOG_2PI - torch.lgamma(k + 1.0)


class BivariateDMGammaPoissonFamily:
    """Joint (m, p): N = m + p ~ GammaPoisson(mu, r) and m | N ~ BetaBinomial(N, a, b).

    Equivalently m ~ Pois(lam q), p ~ Pois(lam (1 - q)), lam ~ Gamma(r, mu / r), q ~ Beta(a, b).
    Computed as two Poisson terms (means mu q and mu (1 - q), q = a / (a + b)) plus corrections that
    vanish as r, a, b -> infinity."""

    name = "bivariate_dm_gamma_poisson"
    event_dim = 2
    raw_size = 4
    param_names = ("mu", "r", "a", "b")
    discrete = True

    def constrain(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., K, 4) raw -> (mu, r, a, b), all exp(raw) clamped to [1e-12, 1e12]."""
        return positive(raw)

    def thin(self, params: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Both species thinned with probability beta (...,): m ~ Pois(beta lam q), p ~ Pois(beta lam (1 - q)),
        so only mu scales."""
        return torch.cat([params[..., :1] * beta[..., None, None], params[..., 1:]], dim=-1)

    def log_pmf(self, params: torch.Tensor, m, p) -> torch.Tensor:
        """params (..., K, 4), m integers (Km,), p integers (Kp,) -> (..., K, Km, Kp)."""
        params = _floating(params)
        m = _as_float(m, params)[:, None]
        p = _as_float(p, params)[None, :]
        n = m + p
        sp = torch.nn.functional.softplus
        mu, r, a, b = (params[..., i, None, None] for i in range(4))
        log_mu, log_r, log_a, log_b = torch.log(mu), torch.log(r), torch.log(a), torch.log(b)
        log_q, log_1mq = -sp(log_b - log_a), -sp(log_a - log_b)
        return (m * (log_mu + log_q) + p * (log_mu + log_1mq) - torch.lgamma(m + 1.0) - torch.lgamma(p + 1.0)
                + log_rising_rel(r, n) - (n + r) * sp(log_mu - log_r)
                + log_rising_rel(a, m) + log_rising_rel(b, p) - log_rising_rel(a + b, n))

    def log_pmf_grid(self, params: torch.Tensor, n_m: int, n_p: int) -> torch.Tensor:
        """log_pmf on the grid m = 0..n_m-1, p = 0..n_p-1, (..., K, n_m, n_p), ~20x faster than `log_pmf`.

        The pmf separates as A(m) + B(p) + C(m + p); each term is built on its 1-D grid by cumulative
        sums (`log_rising_rel_grid`) and C(m + p) is read through a Hankel view (`unfold`), so the only
        work per grid point is two additions."""
        params = _floating(params)
        sp = torch.nn.functional.softplus
        mu, r, a, b = (params[..., i] for i in range(4))
        log_mu, log_r, log_a, log_b = torch.log(mu), torch.log(r), torch.log(a), torch.log(b)
        log_q, log_1mq = -sp(log_b - log_a), -sp(log_a - log_b)
        n_n = n_m + n_p - 1
        km = torch.arange(n_m, device=params.device, dtype=params.dtype)
        kp = torch.arange(n_p, device=params.device, dtype=params.dtype)
        kn = torch.arange(n_n, device=params.device, dtype=params.dtype)
        s = sp(log_mu - log_r)
        big_a = km * (log_mu + log_q)[..., None] - _log_factorials(n_m, params) + log_rising_rel_grid(a, n_m)
        big_b = kp * (log_mu + log_1mq)[..., None] - _log_factorials(n_p, params) + log_rising_rel_grid(b, n_p)
        big_c = (log_rising_rel_grid(r, n_n) - (kn + r[..., None]) * s[..., None]
                 - log_rising_rel_grid(a + b, n_n))
        return big_a[..., :, None] + big_b[..., None, :] + big_c.unfold(-1, n_p, 1)


FAMILIES = {c.name: c for c in (GaussianFamily, GammaPoissonFamily, PoissonLogNormalFamily,
                                BivariateDMGammaPoissonFamily)}


def get_family(name: str):
    """A family instance by name; UserError listing the known names."""
    if name not in FAMILIES:
        raise UserError(f"unknown component family {name!r}; use one of {', '.join(FAMILIES)}")
    return FAMILIES[name]()
