"""Observed data loading/validation, binning onto emulator edges, and the ExactEmulator's reference numbers."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from surrogate_abc.config import load_protocol, parse_protocol
from surrogate_abc.data.observed import (
    check_observed_in_domain,
    load_observed,
    observed_histogram,
    protocol_mean_ranges,
)
from surrogate_abc.emulators.exact import ExactEmulator, bin_integer_pmf, count_bin_index
from surrogate_abc.errors import DataFileError, UserError

BD = """
name = "bd_test"
network = "birth_death"
samples = 100
[parameters.a]
prior = "uniform"
low = 1.0
high = 50.0
[fixed]
b = 1.0
[histogram.x]
edges = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55]
"""


def write(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return path


def test_poisson_exact_emulator_matches_scipy():
    em = ExactEmulator(parse_protocol(BD))
    lam = np.array([[3.0], [17.5], [49.0]])
    probs, overflow = em.pmf(lam)
    e = em.edges[0]
    for i, l in enumerate(lam[:, 0]):
        ref = [stats.poisson.pmf(np.arange(int(e[j]), int(e[j + 1])), l).sum() for j in range(len(e) - 1)]
        np.testing.assert_allclose(probs[i], ref, rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(overflow[i], stats.poisson.sf(54, l), rtol=1e-8)
    np.testing.assert_allclose(probs.sum(1) + overflow, 1.0, atol=1e-12)


def test_integer_grid_binning_equals_cdf_differences():
    em = ExactEmulator(parse_protocol(BD))
    pmf = stats.poisson.pmf(np.arange(70), 20.0)
    binned, overflow = bin_integer_pmf(pmf, em.edges)
    probs, ov = em.pmf(np.array([[20.0]]))
    np.testing.assert_allclose(binned, probs[0], atol=1e-14)
    np.testing.assert_allclose(overflow, ov[0], atol=1e-12)
    assert list(count_bin_index(np.array([1.0, 2.5, 4.0]), 6)) == [-1, 0, 0, 1, -1, -1]


def test_gaussian_toy_and_sample_counts():
    em = ExactEmulator(load_protocol("gaussian_mixture"))
    theta = em.protocol.sample(4, seed=1)
    probs, overflow = em.pmf(theta)
    np.testing.assert_allclose(probs.sum(1) + overflow, 1.0, atol=1e-12)
    counts, ovc = em.sample_counts(theta, 1000, np.random.default_rng(0))
    assert counts.shape == probs.shape and counts.dtype == np.int64
    np.testing.assert_array_equal(counts.sum(1) + ovc, 1000)


def test_pmf_outside_domain_is_refused():
    em = ExactEmulator(parse_protocol(BD))
    with pytest.raises(UserError, match=r"parameter a ?= ?60 .*domain \[1, 50\]"):
        em.pmf(np.array([[60.0]]))


def test_load_counts_and_joint(tmp_path):
    obs = load_observed(write(tmp_path / "o.h5", protein=np.array([1, 2, 3]), mrna=np.array([0, 1, 1])))
    assert obs.species == ("mrna", "protein") and obs.n_cells == 3
    np.testing.assert_array_equal(obs.counts[:, 1], [1, 2, 3])


@pytest.mark.parametrize("data, message", [
    ({"protein": np.array([1, -2, 3])}, "'protein' has negative counts"),
    ({"protein": np.array([1.0, np.nan])}, "'protein' contains NaN"),
    ({"protein": np.array([1.5, 2.0])}, "'protein' has non-integer counts"),
    ({"protein": np.zeros(0, int)}, "'protein' is empty"),
    ({"protein": np.array([1, 2, 3]), "mrna": np.array([1, 2])}, "differ in length"),
    ({"other": np.array([1, 2])}, "no known dataset"),
    ({"histogram": np.array([1, 2, 3]), "edges": np.array([0.0, 1, 2])}, "'edges' has shape .* needs 4 edges"),
    ({"histogram": np.ones((2, 3), int), "edges_mrna": np.arange(3.0), "edges_protein": np.arange(3.0)},
     "'edges_protein' has shape"),
])
def test_bad_observed_files(tmp_path, data, message):
    with pytest.raises(DataFileError, match=message):
        load_observed(write(tmp_path / "bad.h5", **data))


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("cell,protein\n1,2\n")
    with pytest.raises(DataFileError, match="not an HDF5 file"):
        load_observed(p)


def test_overflow_warning_and_counts(tmp_path):
    obs = load_observed(write(tmp_path / "o.h5", x=np.array([0, 1, 4, 54, 55, 100])))
    with pytest.warns(UserWarning, match="2 of 6 cells lie beyond"):
        hist, overflow = observed_histogram(obs, (np.array([0, 1, 2, 3, 5, 8, 13, 21, 34, 55.0]),))
    assert overflow == 2
    np.testing.assert_array_equal(hist, [1, 1, 0, 1, 0, 0, 0, 0, 1])


def test_histogram_coarsening_and_incompatible_edges(tmp_path):
    obs = load_observed(write(tmp_path / "h.h5", histogram=np.array([1, 2, 3, 4]), edges=np.array([0.0, 1, 2, 3, 4])))
    hist, overflow = observed_histogram(obs, (np.array([0.0, 2, 3]),))
    np.testing.assert_array_equal(hist, [3, 3])
    assert overflow == 4
    with pytest.raises(DataFileError, match="cannot be re-binned"):
        observed_histogram(obs, (np.array([0.0, 1.5, 4]),))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=1, max_size=300))
def test_histogram_conserves_cells(values):
    from surrogate_abc.data.observed import Observed

    obs = Observed("mem", ("x",), len(values), counts=np.array(values)[:, None])
    edges = (np.array([0.0, 1, 2, 5, 10, 50, 100]),)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist, overflow = observed_histogram(obs, edges)
    assert hist.sum() + overflow == len(values)
    assert overflow == sum(v >= 100 for v in values)


def test_mean_outside_training_domain(tmp_path):
    proto = load_protocol("gene_protein")
    lo, hi = protocol_mean_ranges(proto)["protein"]
    assert 19.9 < lo < 25 and 190 < hi < 200.1  # mean_protein ~ U(20, 200)
    obs = load_observed(write(tmp_path / "o.h5", protein=np.full(50, 400)))
    with pytest.raises(DataFileError, match="mean protein count 400 lies outside .*gene_protein"):
        check_observed_in_domain(obs, proto, "exact:gene_protein")
    check_observed_in_domain(load_observed(write(tmp_path / "ok.h5", protein=np.full(50, 100))), proto, "e")


def test_predictive_domain_check_with_default_emulator(tmp_path):
    """The neural emulator's check uses the sample means it predicts over its prior: a bursty in-domain
    data set whose sample mean is far below the smallest population mean (20) passes; mean 400 does not."""
    import warnings
    from pathlib import Path

    import surrogate_abc
    from surrogate_abc.data.observed import binned_means, check_observed_predictive, observed_histogram
    from surrogate_abc.emulators.io import load_emulator

    em = load_emulator(Path(surrogate_abc.__file__).parent / "resources" / "gene_protein.safetensors")
    edges = np.asarray(em.edges[0])
    # bursty corner of the prior: gene rarely on, short-lived proteins, mean protein 20
    theta = np.array([[0.0101, 9.9, 0.5, 0.99, 20.5]])
    counts, over = em.sample_counts(theta, 1000, np.random.default_rng(3))
    cells = np.concatenate([np.repeat(edges[:-1].astype(int), counts[0]), np.full(int(over[0]), int(edges[-1]) + 5)])
    obs = load_observed(write(tmp_path / "bursty.h5", protein=cells))
    assert obs.mean("protein") < 15
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist, overflow = observed_histogram(obs, (edges,))
    check_observed_predictive(obs, hist, overflow, em, "default")
    assert binned_means(hist[None], np.array([overflow]), (edges,))[0, 0] < 15
    hi = load_observed(write(tmp_path / "hi.h5", protein=np.full(1000, 400)))
    hist, overflow = observed_histogram(hi, (edges,))
    with pytest.raises(DataFileError, match=r"mean protein count 400 .*outside the range of means \[.*gene_protein"):
        check_observed_predictive(hi, hist, overflow, em, "default")
