"""Exact FSP stationary solver: references are scipy's Poisson pmf, the closed-form moments and a dense null space."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from surrogate_abc.config import FSPSettings, load_protocol
from surrogate_abc.errors import UserError
from surrogate_abc.networks import BIRTH_DEATH, GENE
from surrogate_abc.simulate import fsp

TOL = FSPSettings(tol=1e-8, max_states=2_000_000)


def _rates(protocol, theta) -> dict[str, float]:
    return dict(zip(protocol.rate_names, protocol.rates(np.array([theta]))[0]))


def _extreme(d1: float = 0.5) -> dict[str, float]:
    """k0=0.047, k1=2.9, v0=0.29, d0=1; v1 from mean protein 100: mean mRNA 0.005, bursts of ~10^4."""
    k0, k1, v0, d0 = 0.047, 2.9, 0.29, 1.0
    return dict(k0=k0, k1=k1, v0=v0, d0=d0, d1=d1, v1=100 * d1 * d0 * (k0 + k1) / (v0 * k0))


def _moments_1d(pmf):
    x = np.arange(len(pmf))
    m = pmf @ x
    return m, pmf @ (x - m) ** 2


# ---------------------------------------------------------------------------------------- birth-death
@pytest.mark.parametrize("a,b", [(20.0, 1.0), (3.0, 0.7), (0.05, 1.0)])
def test_birth_death_is_poisson(a, b):
    res = fsp.solve_stationary(BIRTH_DEATH, {"a": a, "b": b}, ["x"], [120], TOL)
    ref = scipy.stats.poisson(a / b).pmf(np.arange(120))
    np.testing.assert_allclose(res.pmf, ref, rtol=0, atol=1e-10)
    assert res.pmf.sum() + res.overflow == pytest.approx(1.0, abs=1e-12)
    assert res.overflow == pytest.approx(scipy.stats.poisson(a / b).sf(119), abs=1e-10)
    assert 0 <= res.tail_mass <= TOL.tol


def test_cap_below_box_moves_mass_to_overflow():
    res = fsp.solve_stationary(BIRTH_DEATH, {"a": 20.0, "b": 1.0}, ["x"], [15], TOL)
    assert res.pmf.shape == (15,)
    assert res.overflow == pytest.approx(scipy.stats.poisson(20).sf(14), rel=1e-9)
    assert res.pmf.sum() + res.overflow == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------------------------- gene model
@pytest.mark.parametrize("theta", [[0.3, 0.3, 0.5, 0.5], [2.0, 0.05, 0.9, 0.1], [1.0, 0.1, 0.3, 0.05]])
def test_gene_protein_moments(theta):
    proto = load_protocol("seed_protein")
    rates = _rates(proto, theta)
    res = fsp.solve_stationary(GENE, rates, ["protein"], [40_000], proto.fsp)
    assert res.pmf.sum() + res.overflow == pytest.approx(1.0, abs=1e-12)
    assert res.overflow == 0.0 and res.tail_mass <= proto.fsp.tol
    mean, cov = GENE.stationary_moments(rates)
    m, v = _moments_1d(res.pmf)
    assert m == pytest.approx(mean[2], rel=1e-3)
    assert v == pytest.approx(cov[2, 2], rel=1e-3)
    # cut at the protocol's cap: same numbers, the rest is overflow
    cut = fsp.solve_stationary(GENE, rates, ["protein"], [300], proto.fsp)
    np.testing.assert_allclose(cut.pmf, res.pmf[:300], atol=1e-14)
    assert cut.overflow == pytest.approx(res.pmf[300:].sum(), abs=1e-12)


def test_gene_joint_moments_and_axis_order():
    proto = load_protocol("seed_joint")
    rates = _rates(proto, [3.0, 3.0, 0.8])
    res = fsp.solve_stationary(GENE, rates, ["mrna", "protein"], [400, 1000], proto.fsp)
    assert res.pmf.shape == (400, 1000)
    assert res.pmf.sum() + res.overflow == pytest.approx(1.0, abs=1e-12)
    mean, cov = GENE.stationary_moments(rates)
    mm, vm = _moments_1d(res.pmf.sum(axis=1))
    mp, vp = _moments_1d(res.pmf.sum(axis=0))
    assert (mm, mp) == (pytest.approx(mean[1], rel=1e-3), pytest.approx(mean[2], rel=1e-3))
    assert (vm, vp) == (pytest.approx(cov[1, 1], rel=1e-3), pytest.approx(cov[2, 2], rel=1e-3))
    x, y = np.arange(400)[:, None], np.arange(1000)[None, :]
    c = (res.pmf * (x - mm) * (y - mp)).sum()
    assert c == pytest.approx(cov[1, 2], rel=1e-3)
    swapped = fsp.solve_stationary(GENE, rates, ["protein", "mrna"], [1000, 400], proto.fsp)
    np.testing.assert_allclose(swapped.pmf, res.pmf.T, atol=1e-14)


def test_extreme_point_is_capped_and_low_counts_converge():
    """Bursts of ~10^4 proteins: the tail needs > 1e5 protein states, the mass on [0, 300) does not.

    With a reflecting wall the clipped excursions return early, which shifts the mass on [0, 300) by
    about the excluded mass; tail_mass estimates that, so the change between the two budgets must
    stay below the smaller budget's tail_mass (measured: 9.0e-4 change vs tail_mass 2.2e-3).
    """
    rates = _extreme()
    small = fsp.solve_stationary(GENE, rates, ["protein"], [300], FSPSettings(1e-8, 200_000))
    big = fsp.solve_stationary(GENE, rates, ["protein"], [300], FSPSettings(1e-8, 400_000))
    for r, cap in ((small, 200_000), (big, 400_000)):
        assert np.prod(r.truncation) <= cap
        assert r.tail_mass > 1e-8  # growth was stopped by max_states, and that is recorded
        assert r.pmf.sum() + r.overflow == pytest.approx(1.0, abs=1e-12)
        assert r.pmf.min() >= 0
    assert big.truncation[2] > small.truncation[2]
    assert big.tail_mass < small.tail_mass
    assert abs(small.pmf.sum() - big.pmf.sum()) < small.tail_mass
    assert np.abs(small.pmf - big.pmf).sum() < small.tail_mass
    assert big.pmf.sum() > 0.95  # the counts below 300 hold almost all the mass


# ---------------------------------------------------------------------------------------- linear algebra
@pytest.mark.parametrize("fixed", [0, 17, 59])
def test_fixed_state_solve_matches_dense_null_space(fixed):
    rates = _rates(load_protocol("seed_protein"), [0.4, 0.9, 0.6, 0.3])
    q = fsp.generator(GENE, rates, [2, 5, 6])
    ns = scipy.linalg.null_space(q.toarray().T)
    assert ns.shape[1] == 1
    ref = ns[:, 0] / ns[:, 0].sum()
    np.testing.assert_allclose(fsp.stationary(q, fixed=fixed), ref, rtol=1e-10, atol=1e-15)


def test_negligible_fixed_state_is_refixed():
    """Fixing a state with probability ~1e-262 gives values ~1e262; the solver re-fixes and still agrees."""
    q = fsp.generator(BIRTH_DEATH, {"a": 1.0, "b": 1.0}, [150])
    p = fsp.stationary(q, fixed=149)
    np.testing.assert_allclose(p, scipy.stats.poisson(1.0).pmf(np.arange(150)), rtol=1e-10, atol=1e-300)


@hsettings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.01, 10.0), min_size=6, max_size=6), st.integers(2, 7), st.integers(2, 9))
def test_generator_is_a_proper_ctmc(r, nm, npr):
    rates = dict(zip(GENE.rate_names, r))
    q = fsp.generator(GENE, rates, [2, nm, npr]).toarray()
    off = q - np.diag(np.diag(q))
    assert off.min() >= 0
    np.testing.assert_allclose(q.sum(axis=1), 0, atol=1e-12)
    x = fsp.state_grid([2, nm, npr])
    i = np.flatnonzero((x == [1, 0, 0]).all(axis=1))[0]
    j = np.flatnonzero((x == [1, 1, 0]).all(axis=1))[0]
    assert q[i, j] == pytest.approx(rates["v0"])  # transcription from the active promoter


def test_unknown_observed_species_is_a_user_error():
    with pytest.raises(UserError, match="gene_off"):
        fsp.solve_stationary(GENE, _extreme(), ["gene_off"], [10], TOL)


@pytest.mark.parametrize("theta,box", [([0.4, 0.9, 0.6, 0.3], [2, 8, 400]), ([0.02, 0.5, 0.2, 0.8], [2, 6, 3000]),
                                       ([5.0, 0.05, 0.9, 0.1], [2, 5, 700])])
def test_level_elimination_matches_sparse_lu(theta, box):
    """The block elimination over protein levels agrees with SuperLU on the same reflecting box."""
    rates = _rates(load_protocol("seed_protein"), theta)
    rp = fsp._reaction_props(GENE.affine_reactions(rates), box)
    p_level = fsp.level_stationary([x[0] for x in rp], [x[1] for x in rp], box[0] * box[1])
    p_lu = fsp.stationary(fsp.generator(GENE, rates, box), fixed=box[0] * box[1] * 50, permc_spec="MMD_AT_PLUS_A")
    np.testing.assert_allclose(p_level, p_lu, rtol=1e-8, atol=1e-15)


def test_level_elimination_birth_death_is_poisson():
    """Block size 1: a scalar recursion, compared with scipy's Poisson pmf on a box holding its tail."""
    rp = fsp._reaction_props(BIRTH_DEATH.affine_reactions({"a": 30.0, "b": 1.0}), [200])
    p = fsp.level_stationary([x[0] for x in rp], [x[1] for x in rp], 1)
    np.testing.assert_allclose(p, scipy.stats.poisson(30.0).pmf(np.arange(200)), rtol=1e-9, atol=1e-300)


def test_sub_chain_solve_keeps_truncation_in_network_species_order():
    """Observing mRNA alone solves the (gene, mRNA) sub-chain: `truncation` still has one entry per reduced species
    (gene_on, mrna, protein), the box in the species' own columns and 0 for protein, which was not in the box."""
    rates = dict(k0=0.5, k1=1.0, v0=30.0, d0=1.0, v1=4.0, d1=0.2)
    res = fsp.solve_stationary(GENE, rates, ["mrna"], [80], TOL)
    assert list(GENE.reduced_species) == ["gene_on", "mrna", "protein"]
    assert len(res.truncation) == 3 and res.truncation[2] == 0
    assert res.truncation[0] == 2 and res.truncation[1] == res.observed_box[0] >= 40
    full = fsp.solve_stationary(GENE, rates, ["mrna", "protein"], [80, 200], TOL)
    assert full.truncation[1] == full.observed_box[0] and full.truncation[2] == full.observed_box[1] > 0
