"""vector_math: float64 exp and log in place, torch's kernels where torch is loaded, agreeing with numpy's."""
from __future__ import annotations

import numpy as np
import torch  # noqa: F401  (loaded: the torch path runs)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from surrogate_abc.vector_math import exp_, log_


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(0, 300), elements=st.floats(-745.0, 709.0)))
def test_exp_in_place_agrees_with_numpy(a):
    want = np.exp(a)
    got = exp_(a)
    assert got is a
    np.testing.assert_allclose(got, want, rtol=4e-16 * 4, atol=1e-300)  # subnormal results: absolute


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(0, 300), elements=st.floats(1e-300, 1e300)))
def test_log_in_place_agrees_with_numpy(a):
    want = np.log(a)
    got = log_(a)
    assert got is a
    np.testing.assert_allclose(got, want, rtol=4e-16 * 4, atol=1e-300)


def test_views_and_other_layouts_fall_back_or_work():
    """A strided view (torch views it too) and float32 (numpy's path)."""
    a = np.linspace(-3, 3, 20)
    view = a[::2]
    exp_(view)
    np.testing.assert_allclose(a[::2], np.exp(np.linspace(-3, 3, 20)[::2]), rtol=1e-15)
    f = np.linspace(1, 2, 5, dtype=np.float32)
    np.testing.assert_allclose(log_(f), np.log(np.linspace(1, 2, 5, dtype=np.float32)), rtol=1e-7)
