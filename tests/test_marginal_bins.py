"""simulate.marginal_bins: a telegraph mRNA's exact Beta-Poisson law on a protocol's bins."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from surrogate_abc.config import load_protocol
from surrogate_abc.errors import UserError
from surrogate_abc.networks.closed_form import beta_poisson_pmf
from surrogate_abc.simulate.marginal_bins import beta_poisson_bins


@pytest.fixture(scope="module")
def joint():
    return load_protocol("gene_joint")


def test_bins_are_the_beta_poisson_series_summed(joint):
    """Every set's bins equal the per-set series (closed_form.beta_poisson_pmf) summed over the same integers,
    for more sets than one pmf table holds (chunks of 64)."""
    theta = joint.sample(70, seed=11)
    edges = np.array([0, 1, 2, 5, 20, 60, 200])
    got = beta_poisson_bins(joint, theta, edges)
    rates, names = joint.rates(theta), list(joint.rate_names)
    for i in (0, 33, 64, 69):
        r = {"k_on": rates[i, names.index("k0")], "k_off": rates[i, names.index("k1")],
             "v": rates[i, names.index("v0")], "d": rates[i, names.index("d0")]}
        pmf = beta_poisson_pmf(r, int(edges[-1]))
        want = [pmf[lo:hi].sum() for lo, hi in zip(edges[:-1], edges[1:])]
        np.testing.assert_allclose(got[i], want, rtol=1e-8, atol=1e-15)


def test_bins_match_the_poisson_mixture_over_the_beta_law(joint):
    """At one slow-switching set, P(m) = E[Poisson(m; v B / d)], B ~ Beta(k_on / d, k_off / d), by quadrature."""
    theta = np.array([[0.3, 0.5, 0.5, 20.0, 100.0]])  # k0, k1, d1, mean mRNA, mean protein
    rates, names = joint.rates(theta)[0], list(joint.rate_names)
    k_on, k_off, v = (rates[names.index(k)] for k in ("k0", "k1", "v0"))
    edges = np.array([0, 1, 10, 40, 200])
    got = beta_poisson_bins(joint, theta, edges)[0]
    beta = stats.beta(k_on, k_off)  # d0 = 1
    for (lo, hi), g in zip(zip(edges[:-1], edges[1:]), got):
        want = integrate.quad(lambda b: beta.pdf(b) * (stats.poisson.cdf(hi - 1, v * b) - stats.poisson.cdf(lo - 1, v * b)),
                              0, 1, limit=200, points=[1e-6, 1e-3])[0]
        assert g == pytest.approx(want, rel=1e-6, abs=1e-12)


def test_a_species_without_the_law_is_a_user_error(joint):
    with pytest.raises(UserError, match="protein.*Beta-Poisson"):
        beta_poisson_bins(joint, joint.sample(2, seed=1), np.array([0, 5, 10]), species="protein")
