"""numba binning kernels against numpy.histogram / histogram2d (half-open last bin, overflow)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from surrogate_abc.data.binning import bin_indices, bin_values, bin_values_2d, bin_weighted, rebin_grid, rebin_grid_2d

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def edges_st(draw, integer: bool = False):
    """Uniform (start + width * k, including round-off-prone widths like 0.3) or random increasing edges."""
    if draw(st.booleans()):
        start = draw(st.integers(-20, 20)) if integer else draw(st.sampled_from([-3.0, -1.5, 0.0, 0.1, 2.0]))
        width = draw(st.sampled_from([1, 2, 3, 5] if integer else [0.1, 0.3, 0.7, 1.0, 2.5]))
        nb = draw(st.integers(1, 40))
        return start + width * np.arange(nb + 1, dtype=float)
    pts = draw(st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=2, max_size=30, unique=True))
    e = np.sort(np.asarray(pts, dtype=float))
    return np.round(e) if integer and len(np.unique(np.round(e))) == len(e) else e


def _values(draw, edges, integer, shape):
    lo, hi = edges[0] - 5, edges[-1] + 5
    if integer:
        return draw(hnp.arrays(np.int64, shape, elements=st.integers(int(np.floor(lo)), int(np.ceil(hi)))))
    # Mix values exactly on edges with arbitrary ones.
    on_edge = st.sampled_from(list(edges))
    return draw(hnp.arrays(np.float64, shape, elements=st.one_of(on_edge, st.floats(lo, hi, allow_nan=False))))


def _np_counts(v, edges):
    """numpy.histogram on the half-open range: drop values == edges[-1] (numpy's closed last bin)."""
    v = np.asarray(v, float)
    return np.histogram(v[v < edges[-1]], edges)[0], int(np.sum((v < edges[0]) | (v >= edges[-1])))


@SETTINGS
@given(data=st.data(), integer=st.booleans())
def test_bin_values_matches_numpy(data, integer):
    edges = data.draw(edges_st(integer))
    v = _values(data.draw, edges, integer, data.draw(st.integers(0, 300)))
    counts, over = bin_values(v, edges)
    ref, ref_over = _np_counts(v, edges)
    np.testing.assert_array_equal(counts, ref)
    assert over == ref_over
    assert counts.sum() + over == len(v)


@SETTINGS
@given(data=st.data(), integer=st.booleans())
def test_bin_values_batched_rows(data, integer):
    edges = data.draw(edges_st(integer))
    v = _values(data.draw, edges, integer, (data.draw(st.integers(1, 6)), data.draw(st.integers(0, 40))))
    counts, over = bin_values(v, edges)
    assert counts.shape == (v.shape[0], len(edges) - 1) and over.shape == (v.shape[0],)
    for r in range(v.shape[0]):
        ref, ref_over = _np_counts(v[r], edges)
        np.testing.assert_array_equal(counts[r], ref)
        assert over[r] == ref_over


@SETTINGS
@given(data=st.data())
def test_bin_weighted_matches_numpy(data):
    edges = data.draw(edges_st())
    v = _values(data.draw, edges, False, data.draw(st.integers(1, 80)))
    w = data.draw(hnp.arrays(np.float64, (3, len(v)), elements=st.floats(0, 10, allow_nan=False)))
    sums, over = bin_weighted(v, w, edges)
    inside = (v >= edges[0]) & (v < edges[-1])
    for r in range(3):
        ref = np.histogram(v[v < edges[-1]], edges, weights=w[r][v < edges[-1]])[0]
        np.testing.assert_allclose(sums[r], ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(over[r], w[r][~inside].sum(), rtol=1e-12, atol=1e-12)
    s1, o1 = bin_weighted(v, w[0], edges)
    np.testing.assert_allclose(s1, sums[0])
    np.testing.assert_allclose(o1, over[0])


@SETTINGS
@given(data=st.data(), integer=st.booleans())
def test_bin_values_2d_matches_histogram2d(data, integer):
    ex, ey = data.draw(edges_st(integer)), data.draw(edges_st(integer))
    n = data.draw(st.integers(0, 200))
    x, y = _values(data.draw, ex, integer, n), _values(data.draw, ey, integer, n)
    counts, over = bin_values_2d(x, y, ex, ey)
    keep = (x < ex[-1]) & (y < ey[-1])
    ref = np.histogram2d(np.asarray(x[keep], float), np.asarray(y[keep], float), [ex, ey])[0]
    np.testing.assert_array_equal(counts, ref)
    inside = (x >= ex[0]) & (x < ex[-1]) & (y >= ey[0]) & (y < ey[-1])
    assert over == int((~inside).sum())
    batched, bover = bin_values_2d(np.stack([x, x]), np.stack([y, y]), ex, ey)
    np.testing.assert_array_equal(batched[1], counts)
    assert bover.tolist() == [over, over]


@SETTINGS
@given(data=st.data())
def test_rebin_grids_match_numpy(data):
    ex, ey = data.draw(edges_st(True)), data.draw(edges_st(True))
    km, kp = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 30))
    g = data.draw(hnp.arrays(np.int64, (2, km, kp), elements=st.integers(0, 1000)))
    hist, over = rebin_grid_2d(g, ex, ey)
    m, p = np.meshgrid(np.arange(km), np.arange(kp), indexing="ij")
    keep = (m < ex[-1]) & (p < ey[-1])
    for r in range(2):
        ref = np.histogram2d(m[keep], p[keep], [ex, ey], weights=g[r][keep])[0]
        np.testing.assert_array_equal(hist[r], ref)
        assert hist[r].sum() + over[r] == g[r].sum()
    h1, o1 = rebin_grid(g[:, :, 0], ex)
    k = np.arange(km)
    for r in range(2):
        np.testing.assert_array_equal(h1[r], np.histogram(k[k < ex[-1]], ex, weights=g[r, k < ex[-1], 0])[0])
        assert h1[r].sum() + o1[r] == g[r, :, 0].sum()


def test_roundoff_on_edges():
    """Values exactly on edges 0.3 * k go to bin k, although (0.3 * k - 0) / 0.3 can floor to k - 1."""
    edges = 0.3 * np.arange(101)
    v = 0.3 * np.arange(101)
    assert (np.floor(v / 0.3).astype(int) != np.arange(101)).any()  # the formula alone would be wrong
    np.testing.assert_array_equal(bin_indices(v, edges), np.r_[np.arange(100), -1])
    counts, over = bin_values(v, edges)
    assert (counts == 1).all() and over == 1
    shifted = -15.0 + 0.3 * np.arange(101)  # the toy protocol's edges
    np.testing.assert_array_equal(bin_indices(shifted, shifted), np.r_[np.arange(100), -1])
    below = np.nextafter(shifted[1:], -np.inf)
    np.testing.assert_array_equal(bin_indices(below, shifted), np.arange(100))


def test_nan_and_big_input():
    counts, over = bin_values(np.array([np.nan, 0.5, np.inf, -np.inf]), [0.0, 1.0])
    assert counts.tolist() == [1] and over == 3
    v = np.random.default_rng(0).integers(-5, 310, 300_000)  # several parallel segments
    counts, over = bin_values(v, np.arange(0, 301, 3.0))
    ref, ref_over = _np_counts(v, np.arange(0, 301, 3.0))
    np.testing.assert_array_equal(counts, ref)
    assert over == ref_over


def test_bad_edges_rejected():
    with pytest.raises(ValueError):
        bin_values([1, 2], [0.0, 2.0, 1.0])
    with pytest.raises(ValueError):
        bin_values([1, 2], [1.0])
    with pytest.raises(ValueError):
        bin_weighted([0, 1], np.ones((2, 3)), [0.0, 1.0])
