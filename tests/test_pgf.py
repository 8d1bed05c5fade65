"""Generating-function engine of the gene model: references are FSP (where its box converges), the exact
Beta-Poisson mRNA marginal (also in the bursty corner FSP cannot reach) and the network's structure."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from surrogate_abc.config import FSPSettings, load_protocol, parse_protocol
from surrogate_abc.errors import UserError
from surrogate_abc.networks import BIRTH_DEATH, GENE
from surrogate_abc.networks.closed_form import beta_poisson_pmf
from surrogate_abc.simulate import fsp, pgf, run_simulation
from surrogate_abc.simulate import pgf_kernel as kern
from surrogate_abc.simulate.engines import available_engines, resolve_engine

NAMES = ("k0", "k1", "v0", "d0", "v1", "d1")


def _rates(**kw: float) -> np.ndarray:
    return np.array([kw[k] for k in NAMES])


# ---------------------------------------------------------------------------------------- structure
def test_gene_network_is_recognised_in_either_order():
    roles = pgf.match_gene(GENE, ["mrna", "protein"])
    assert roles is not None and (roles.mrna, roles.protein) == ("mrna", "protein")
    assert (roles.k0, roles.k1, roles.v0, roles.d0, roles.v1, roles.d1) == NAMES
    back = pgf.match_gene(GENE, ["protein", "mrna"])
    assert back is not None and (back.mrna, back.protein) == ("mrna", "protein")


@pytest.mark.parametrize("net,observed", [(GENE, ["mrna"]), (GENE, ["gene_on", "mrna"]), (BIRTH_DEATH, ["x"])])
def test_other_shapes_are_refused_in_one_line(net, observed):
    assert pgf.match_gene(net, observed) is None
    with pytest.raises(UserError) as e:
        pgf.require_gene(net, observed)
    assert "\n" not in str(e.value) and "--engine fsp" in str(e.value)


def test_bad_rates_are_a_user_error():
    with pytest.raises(UserError):
        pgf.window_pmf([1.0, 1.0, 10.0, 0.0, 1.0, 1.0], (10, 10))


# ---------------------------------------------------------------------------------------- against FSP
@pytest.mark.parametrize("rates,caps", [
    (dict(k0=1.0, k1=1.0, v0=10.0, d0=1.0, v1=2.0, d1=0.5), (60, 150)),      # whole law inside the window
    (dict(k0=0.4, k1=2.0, v0=30.0, d0=1.0, v1=1.0, d1=0.2), (20, 60)),       # caps cut both axes
    (dict(k0=5.0, k1=0.5, v0=4.0, d0=0.7, v1=6.0, d1=1.5), (25, 80)),
])
def test_window_matches_fsp(rates, caps):
    ref = fsp.solve_stationary(GENE, rates, ["mrna", "protein"], list(caps), FSPSettings(1e-13, 3_000_000))
    res = pgf.window_pmf(_rates(**rates), caps)
    assert res.pmf.shape == caps
    assert np.abs(res.pmf - ref.pmf).max() < 1e-10   # observed: 2.5e-13, 2.8e-15, 3.3e-15
    assert res.overflow == pytest.approx(ref.overflow, abs=1e-9)
    assert 0 <= res.error < 1e-8


def test_gene_joint_caps_with_large_transcription_rate_match_fsp():
    """A gene_joint draw with v0 = 318 that FSP's box still holds (tail 4e-11): the whole 200 x 600 window."""
    proto = load_protocol("gene_joint")
    rates = dict(k0=1.55, k1=7.52, v0=318.0, d0=1.0, v1=0.154, d1=0.0826)
    ref = fsp.solve_stationary(proto.network, rates, list(proto.species), [200, 600], proto.fsp)
    res = pgf.window_pmf(_rates(**rates), (200, 600))
    assert ref.tail_mass < 1e-9 and np.abs(res.pmf - ref.pmf).max() < 1e-10   # observed: 4e-14


# ---------------------------------------------------------------------------------------- mRNA marginal
@pytest.mark.parametrize("k0,k1,v0,v1,d1", [(0.01, 10.0, 60060.0, 0.0333, 0.01), (0.05, 2.0, 1200.0, 40.0, 1.0),
                                            (3.0, 0.2, 50.0, 5.0, 0.3)])
def test_mrna_marginal_is_beta_poisson(k0, k1, v0, v1, d1):
    """G(z, 1) inverted on a circle against the exact law, including bursts of ~6000 mRNAs (where FSP fails)."""
    n, cap = 512, 200
    r = 10 ** (-10 / n)
    zs = r * np.exp(2j * np.pi * np.arange(n) / n)
    g = pgf.pgf_values(_rates(k0=k0, k1=k1, v0=v0, d0=1.0, v1=v1, d1=d1), zs, np.array([1.0]), pgf.PGFSettings())
    p = (np.fft.fft(g[:, 0]) / n).real[:cap] * r ** -np.arange(cap, dtype=float)
    ref = beta_poisson_pmf(dict(k_on=k0, k_off=k1, v=v0, d=1.0), cap)
    assert np.abs(p - ref).max() < 1e-9


@pytest.mark.parametrize("a,b,v,n0", [(0.05, 2.0, 1200.0, 400), (0.5, 1.0, 30.0, 100), (3.0, 0.2, 50.0, 64)])
def test_mrna_tail_bound_of_the_aliasing_is_the_beta_poisson_tail(a, b, v, n0):
    pmf = beta_poisson_pmf(dict(k_on=a, k_off=b, v=v, d=1.0), int(v + 50 * (v + 1) ** 0.5 + 200))
    assert kern.beta_poisson_tail_max(a, b, v, n0) == pytest.approx(pmf[n0:].max(), rel=1e-9)


def test_joint_window_sums_to_mrna_marginal_where_protein_fits():
    """Summing the window over protein gives the mRNA law when the protein cap holds all the protein mass."""
    rates = _rates(k0=0.5, k1=1.0, v0=30.0, d0=1.0, v1=0.5, d1=1.0)
    res = pgf.window_pmf(rates, (80, 120))
    ref = beta_poisson_pmf(dict(k_on=0.5, k_off=1.0, v=30.0, d=1.0), 80)
    assert np.abs(res.pmf.sum(axis=1) - ref).max() < 1e-10   # observed: 2e-12


@hsettings(max_examples=6, deadline=None)
@given(k0=st.floats(0.05, 5.0), k1=st.floats(0.05, 5.0), mean_m=st.floats(1.0, 20.0), d1=st.floats(0.1, 1.0),
       mean_p=st.floats(5.0, 60.0))
def test_window_is_a_subprobability(k0, k1, mean_m, d1, mean_p):
    rates = _rates(k0=k0, k1=k1, v0=mean_m * (k0 + k1) / k0, d0=1.0, v1=mean_p * d1 / mean_m, d1=d1)
    res = pgf.window_pmf(rates, (24, 40))
    assert np.all(res.pmf >= 0) and res.pmf.sum() <= 1 + 1e-9
    assert res.pmf.sum() + res.overflow == pytest.approx(1.0, abs=1e-12)
    assert np.isfinite(res.error) and res.error < 1e-7


def test_gene_joint_protocol_rates_map_onto_roles():
    proto = load_protocol("gene_joint")
    roles = pgf.require_gene(proto.network, proto.species)
    theta = np.array([[0.5, 2.0, 0.3, 20.0, 100.0]])
    values = roles.values(dict(zip(proto.rate_names, proto.rates(theta)[0])))
    k0, k1, v0, d0, v1, d1 = values
    assert d0 == 1.0 and v0 == pytest.approx(20.0 * (k0 + k1) / k0) and v1 == pytest.approx(100.0 * d1 / 20.0)


# ---------------------------------------------------------------------------------------- the engine
SMALL = """
name = "gene_small"
network = "gene"
samples = 100
[parameters.k0]
prior = "uniform"
low = 1.0
high = 2.0
[parameters.k1]
prior = "uniform"
low = 1.0
high = 2.0
[parameters.d1]
prior = "uniform"
low = 0.5
high = 1.0
[parameters.mean_mrna]
prior = "uniform"
low = 2.0
high = 4.0
[parameters.mean_protein]
prior = "uniform"
low = 5.0
high = 10.0
[fixed]
d0 = 1.0
[derived]
v0 = "mean_mrna * d0 * (k0 + k1) / k0"
v1 = "mean_protein * d1 / mean_mrna"
[initial]
gene_on = 1
[histogram.protein]
edges = [{ start = 0, stop = 30, width = 1 }]
[histogram.mrna]
edges = [{ start = 0, stop = 12, width = 1 }]
"""


def test_engine_is_offered_for_joint_gene_protocols_only():
    assert "pgf" in available_engines(load_protocol("gene_joint"))
    single = load_protocol("gene_protein")
    assert "pgf" not in available_engines(single)
    with pytest.raises(UserError, match="two-state switch"):
        resolve_engine(single, "pgf")


def test_simulate_pgf_matches_fsp_with_protein_axis_first(tmp_path: Path):
    """Observed as (protein, mRNA): the engine transposes; the file matches fsp's set by set."""
    proto = parse_protocol(SMALL, "gene_small.toml")
    for eng in ("pgf", "fsp"):
        run_simulation(proto, n=2, out=tmp_path / f"{eng}.h5", seed=4, engine=eng, progress=False)
    with h5py.File(tmp_path / "pgf.h5", "r") as a, h5py.File(tmp_path / "fsp.h5", "r") as b:
        assert a["grid"].shape == (2, 30, 12) and a["grid"].attrs["kind"] == "pmf"
        assert np.abs(a["grid"][...] - b["grid"][...]).max() < 1e-10
        np.testing.assert_allclose(a["overflow"][...], b["overflow"][...], atol=1e-10)
        assert np.all(a["tail_mass"][...] < 1e-8) and "truncation" not in a


def test_calibration_datasets_of_gene_joint_are_exact_in_the_bursty_corner():
    """calibrate draws the joint cells from the generating-function law, where FSP's box at max_states 5e5 loses
    more than 1e-3 (the bursty corner): its tail_mass is pgf's error estimate and the law is pgf's window."""
    from surrogate_abc.inference.calibration.datasets import exact_counts_pmf

    protocol = load_protocol("gene_joint")
    theta = np.array([0.0133, 2.53, 0.605, 31.7, 131.0])  # k0, k1, d1, mean mRNA, mean protein: v0 ~ 6.1e3
    law = exact_counts_pmf(protocol, theta, (200, 600))
    assert law.tail_mass < 1e-7 and law.pmf.shape == (200, 600)  # FSP's tail mass here is ~7e-3
    assert abs(law.pmf.sum() + law.overflow - 1.0) < 1e-12 and law.overflow > 0.01


# ---------------------------------------------------------------------------------------- thinned counts
@pytest.mark.parametrize("beta", [(0.5, 0.3), (1.0, 0.2), (0.15, 1.0)])
def test_thinned_window_is_the_binomial_thinning_of_a_window_that_holds_the_law(beta):
    """G at thinned arguments against thin_integer_pmf along each axis of a window holding every molecule."""
    from surrogate_abc.emulators.exact import thin_integer_pmf

    rates = _rates(k0=0.4, k1=2.0, v0=30.0, d0=1.0, v1=1.0, d1=0.2)
    whole = pgf.window_pmf(rates, (200, 400))
    assert whole.overflow < 1e-12
    ref = thin_integer_pmf(thin_integer_pmf(whole.pmf.T, beta[0], 20).T, beta[1], 60)
    res = pgf.window_pmf(rates, (20, 60), beta=beta)
    assert np.abs(res.pmf - ref).max() < 1e-10   # observed: 6e-12
    assert res.overflow == pytest.approx(1.0 - ref.sum(), abs=1e-10) and res.error < 1e-8


def test_thinned_mrna_marginal_is_beta_poisson_with_v_times_beta_in_the_bursty_corner():
    """mRNA seen with probability 0.1 from bursts of ~6000 (FSP cannot hold them): Beta-Poisson with v0 * 0.1
    (proteins all but unseen, so the window's 4 protein counts hold them)."""
    rates = _rates(k0=0.0133, k1=2.53, v0=6080.0, d0=1.0, v1=2.6, d1=0.605)
    res = pgf.window_pmf(rates, (400, 4), beta=(0.1, 1e-9))
    ref = beta_poisson_pmf(dict(k_on=0.0133, k_off=2.53, v=608.0, d=1.0), 400)
    assert np.abs(res.pmf.sum(axis=1) - ref).max() < 1e-10   # observed: 3e-13
    assert res.overflow == pytest.approx(1.0 - ref.sum(), abs=1e-10)


def test_bad_detection_probability_is_a_user_error():
    with pytest.raises(UserError, match="detection probabilities"):
        pgf.window_pmf(_rates(k0=1.0, k1=1.0, v0=10.0, d0=1.0, v1=1.0, d1=1.0), (10, 10), beta=(0.0, 1.0))


def test_exact_emulator_thins_the_joint_gene_law_as_fsp_does():
    """ExactEmulator of a gene-shaped (protein, mRNA) observation: the generating-function engine, thinned per
    species (G at thinned arguments), against the FSP engine's thinning of its own pmf on the grid of its box (mass beyond the caps,
    thinned, lands inside them: 5e-4 of row 0 when the box was once read in the network's species order)."""
    from surrogate_abc.emulators.exact import ExactEmulator

    exact = ExactEmulator(parse_protocol(SMALL, "gene_small.toml"))
    assert exact.solves_each_set and not exact.uses_fsp
    theta = np.array([[1.5, 1.2, 0.7, 3.0, 8.0], [1.1, 1.9, 0.9, 2.5, 6.0]])
    beta = np.array([[0.4, 0.7], [1.0, 0.5]])  # (protein, mRNA): the protocol's order
    got = exact.thinned_flat_probs(theta, beta)  # FSP's box holds these: FSP's route
    probs, over = exact._pmf_pgf(theta, beta=beta)
    assert np.abs(got - np.concatenate([probs.reshape(2, -1), over[:, None]], axis=1)).max() < 1e-10
    probs, over = exact._pmf_fsp(theta, beta=beta)
    assert np.abs(got - np.concatenate([probs.reshape(2, -1), over[:, None]], axis=1)).max() < 1e-12
    assert np.abs(exact._flat_probs(theta) - exact.thinned_flat_probs(theta, 1.0)).max() < 1e-12


@pytest.mark.parametrize("beta", [(1.0, 1.0), (0.3, 0.5)])
def test_inverting_only_the_mrna_rows_that_hold_mass_changes_nothing(beta):
    """mean mRNA ~7 in a 200-row window: the inversion on the rows holding all but ZERO_MASS of the exact
    Beta-Poisson law equals the one on all 200 rows to 1e-12, with a smaller FFT (the cost is proportional to it)."""
    rates = _rates(k0=0.6, k1=0.5, v0=13.0, d0=1.0, v1=10.0, d1=0.8)
    rows, left = pgf.mrna_rows(rates, 200, beta[0])
    law = beta_poisson_pmf(dict(k_on=0.6, k_off=0.5, v=13.0 * beta[0], d=1.0), 200)
    assert 10 < rows < 60 and left == pytest.approx(law[rows:].sum(), rel=1e-6, abs=1e-20)
    assert left <= pgf.ZERO_MASS < law[rows - 1:].sum()
    fit = pgf.window_pmf(rates, (200, 300), beta=beta)
    whole = pgf.window_pmf(rates, (200, 300), pgf.PGFSettings(fit_mrna=False), beta=beta)
    assert fit.sizes[0] < whole.sizes[0] == 400 and fit.pmf.shape == whole.pmf.shape == (200, 300)
    assert np.abs(fit.pmf - whole.pmf).max() < 1e-12 and not fit.pmf[rows:].any()
    assert fit.overflow == pytest.approx(whole.overflow, abs=1e-10) and fit.parts["rows_left_out"] == left


def test_mrna_rows_keep_the_whole_window_when_the_law_reaches_its_cap():
    rates = _rates(k0=0.0133, k1=2.53, v0=6080.0, d0=1.0, v1=2.6, d1=0.605)   # bursts of ~6000 mRNAs
    assert pgf.mrna_rows(rates, 200) == (200, 0.0)
    assert pgf.mrna_rows(_rates(k0=1.0, k1=1.0, v0=0.0, d0=1.0, v1=1.0, d1=1.0), 50) == (1, 0.0)


@hsettings(max_examples=40, deadline=None)
@given(k0=st.floats(0.01, 10.0), k1=st.floats(0.01, 10.0), v0=st.floats(0.0, 2e4), beta=st.floats(0.01, 1.0),
       cap=st.integers(1, 400))
def test_mrna_rows_are_the_fewest_that_leave_out_at_most_zero_mass(k0, k1, v0, beta, cap):
    """Against the per-set Beta-Poisson series: what is left out is at most ZERO_MASS and one row fewer would
    leave out more (rows >= 1; all of them when the law reaches the cap)."""
    rows, left = pgf.mrna_rows(_rates(k0=k0, k1=k1, v0=v0, d0=1.0, v1=1.0, d1=1.0), cap, beta)
    assert 1 <= rows <= cap and 0.0 <= left <= pgf.ZERO_MASS
    if v0 * beta > 0:
        law = beta_poisson_pmf(dict(k_on=k0, k_off=k1, v=v0 * beta, d=1.0), cap)
        assert left == pytest.approx(law[rows:].sum(), rel=1e-6, abs=1e-22)
        if rows > 1:
            assert law[rows - 1:].sum() > pgf.ZERO_MASS * (1 - 1e-6)
