"""The first-order posterior shift of an emulator's likelihood error (inference/calibration/shift.py), against
the closed form of a Poisson model whose 'emulator' has its rate off by a factor 1 + eps."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from surrogate_abc.config import load_protocol
from surrogate_abc.emulators.exact import bin_integer_pmf
from surrogate_abc.inference.calibration.shift import dataset_shift, first_order_shift, rank_implied_shift
from surrogate_abc.inference.priors import prior_box

N_CELLS = 1000


def poisson_probs(lam: float, size: int = 400) -> np.ndarray:
    return stats.poisson.pmf(np.arange(size), lam)


@pytest.mark.parametrize("eps", [0.01, -0.02])
def test_first_order_shift_of_a_scaled_poisson_rate_is_its_closed_form(eps):
    # n cells of Poisson(lam); the emulator says Poisson(lam (1 + eps)): its MLE is the exact one / (1 + eps),
    # a shift of -eps lam / (1 + eps) against a posterior sd of sqrt(lam / n)
    lam = 30.0
    sd = math.sqrt(lam / N_CELLS)
    step = 0.5 * sd
    p0, q0 = poisson_probs(lam), poisson_probs(lam * (1 + eps))
    p1, q1 = poisson_probs(lam + step), poisson_probs((lam + step) * (1 + eps))
    got = first_order_shift(p0, q0, p1[None], q1[None], np.array([step]), np.array([[sd ** 2]]), N_CELLS)
    want = -eps * lam / (1 + eps) / sd
    assert got.shape == (1,)
    assert got[0] == pytest.approx(want, rel=0.05)


def test_an_exact_emulator_shifts_nothing_and_the_covariance_carries_a_shift_across_parameters():
    p = np.array([[0.2, 0.3, 0.5], [0.25, 0.3, 0.45]])
    assert np.allclose(first_order_shift(p[0], p[0], p[1:], p[1:], np.array([0.1]), np.eye(1), 100), 0.0)
    # the error's gradient lies along parameter 0 only; a posterior correlation of 0.8 moves parameter 1 too
    g0 = first_order_shift(p[0], p[0], p[1:], np.array([[0.26, 0.3, 0.44]]), np.array([0.1]), np.eye(1), 100)[0]
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    q_steps = np.array([[0.26, 0.3, 0.44], p[0]])
    got = first_order_shift(p[0], p[0], np.array([p[1], p[0]]), q_steps, np.array([0.1, 0.1]), cov, 100)
    assert got == pytest.approx([g0, 0.8 * g0])


def test_first_order_shift_refuses_mismatched_shapes_and_zero_steps():
    p = np.full(3, 1 / 3)
    with pytest.raises(ValueError, match="shapes"):
        first_order_shift(p, p, p[None], p[None], np.array([0.1, 0.2]), np.eye(2), 10)
    with pytest.raises(ValueError, match="non-zero"):
        first_order_shift(p, p, p[None], p[None], np.array([0.0]), np.eye(1), 10)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=-2.5, max_value=2.5))
def test_rank_implied_shift_inverts_the_mean_rank_of_a_shifted_gaussian_posterior(s):
    mean_rank = 99 * stats.norm.cdf(-s / math.sqrt(2.0))
    assert rank_implied_shift(mean_rank) == pytest.approx(s, abs=1e-6)


def test_rank_implied_shift_is_zero_for_uniform_ranks_and_upward_for_low_ones():
    assert rank_implied_shift(49.5) == pytest.approx(0.0, abs=1e-12)
    assert rank_implied_shift(40.0) > 0 > rank_implied_shift(60.0)


class ScaledPoisson:
    """An 'emulator' of the poisson protocol that is the exact law at rate k (1 + eps), on its bins."""

    def __init__(self, protocol, eps: float):
        self.protocol, self.eps = protocol, eps
        self.edges = tuple(np.asarray(a.edges, float) for a in protocol.axes)

    def category_probs(self, theta, categories, allow_extrapolation=False):
        rows = []
        for (k,) in np.atleast_2d(theta):
            binned, over = bin_integer_pmf(poisson_probs(k * (1 + self.eps), 2000), self.edges)
            rows.append(np.append(binned, over)[np.asarray(categories)])
        return np.array(rows)


def test_dataset_shift_on_the_poisson_protocol_matches_the_closed_form():
    protocol = load_protocol("poisson")
    box = prior_box(protocol)
    k, eps = 20.0, 0.01
    # posterior draws of log10 k with the exact posterior's sd 1 / (ln 10 sqrt(n k))
    sd = 1.0 / (math.log(10) * math.sqrt(N_CELLS * k))
    draws = {"k": 10.0 ** (math.log10(k) + sd * stats.norm.ppf((np.arange(4000) + 0.5) / 4000))}
    res = dataset_shift(ScaledPoisson(protocol, eps), protocol, [k], draws, box, N_CELLS)
    got = res.shift
    want = -math.log(1 + eps) * math.sqrt(N_CELLS * k)  # shift of ln k over its sd
    assert set(got) == {"k"}
    assert got["k"] == pytest.approx(want, rel=0.05)
    assert res.step_kl == pytest.approx([0.5], rel=0.05)  # a one-sd step of the likelihood's Gaussian
    assert res.linear


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=4, max_size=4),
       st.floats(min_value=0.1, max_value=3.0))
def test_any_spanning_steps_recover_a_linear_likelihood_error(b_and_angle, scale):
    # an error D(theta) = n b . theta: steps along the axes or along rotated axes give the same shift n cov b / sd
    b = np.array(b_and_angle[:2])
    angle = b_and_angle[2] * math.pi
    rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    cov = np.array([[1.0, b_and_angle[3] * 0.9], [b_and_angle[3] * 0.9, 1.0]]) * 0.04
    p0 = np.array([0.1, 0.2, 0.3, 0.4])
    want = 50 * cov @ b / np.sqrt(np.diag(cov))
    for steps in (np.diag([0.2, -0.3]), rot):
        q_steps = p0[None, :] * np.exp(steps @ b)[:, None]
        got = first_order_shift(p0, p0, np.tile(p0, (2, 1)), q_steps, steps, cov, 50)
        assert got == pytest.approx(want, abs=1e-9)


def test_steps_stay_inside_the_prior_when_the_posterior_is_wider_than_its_room():
    from surrogate_abc.inference.calibration.shift import inside_step

    lo, hi = np.array([0.0, 0.0]), np.array([1.0, 1.0])
    f0 = np.array([0.3, 0.5])
    assert inside_step(f0, np.array([0.2, 0.0]), lo, hi) == pytest.approx([0.2, 0.0])
    assert inside_step(f0, np.array([0.0, 0.6]), lo, hi) == pytest.approx([0.0, 0.5])  # both leave: shortened
    assert inside_step(f0, np.array([0.8, 0.0]), lo, hi) == pytest.approx([0.7, 0.0])  # more room upward
    assert inside_step(np.array([0.9, 0.5]), np.array([0.2, 0.1]), lo, hi) == pytest.approx([-0.2, -0.1])

    class Recording(ScaledPoisson):
        seen: list = []

        def category_probs(self, theta, categories, allow_extrapolation=False):
            self.seen.append(float(np.atleast_2d(theta)[0, 0]))
            return super().category_probs(theta, categories, allow_extrapolation)

    protocol = load_protocol("poisson")  # k log-uniform on [0.1, 1000]: 4 decades
    em = Recording(protocol, 0.01)
    draws = {"k": 10.0 ** np.linspace(-1.0, 3.0, 200)}  # as wide as the prior, sd ~1.2 decades
    res = dataset_shift(em, protocol, [500.0], draws, prior_box(protocol), N_CELLS)
    assert np.isfinite(res.shift["k"])
    assert not res.linear  # a prior-wide posterior: its step is ~50 nats away, not the Gaussian's 0.5
    assert all(0.1 <= k <= 1000.0 * (1 + 1e-9) for k in em.seen)
