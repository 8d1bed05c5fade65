"""The shipped splicing emulator (resources/telegraph_splicing.safetensors) against the exact FSP joint law of
nascent and mature RNA.

Fast (a few seconds): 12 prior draws whose exact bin probabilities come from the FSP (ExactEmulator). The held-out
figures are benchmarks/splicing.py's (300 sets, seed 901; README). The bounds leave a wide margin above them, so
this catches a wrong or damaged file, not a small change in accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import surrogate_abc
from surrogate_abc import load_protocol
from surrogate_abc.emulators.exact import ExactEmulator
from surrogate_abc.emulators.io import load_emulator
from surrogate_abc.emulators.resolve import resolve_emulator
from surrogate_abc.metrics import kl_divergence

FILE = Path(surrogate_abc.__file__).parent / "resources" / "telegraph_splicing.safetensors"
SEED = 4242  # not the training seed (1) nor the benchmark's (901)


@pytest.fixture(scope="module")
def emulator():
    torch.set_num_threads(1)
    return load_emulator(FILE, device="cpu")


def test_domain_bins_and_default(emulator):
    proto = load_protocol("telegraph_splicing")
    assert emulator.protocol.name == "telegraph_splicing"
    assert emulator.param_names == proto.param_names == ("k0", "k1", "v0", "beta")
    np.testing.assert_array_equal(emulator.domain, proto.bounds())
    assert emulator.species == ("nascent", "mature")
    for e, a in zip(emulator.edges, proto.axes):
        np.testing.assert_array_equal(e, a.edges)
    default, _ = resolve_emulator(None, ("nascent", "mature"))  # --layers without --emulator
    assert Path(default.source).name == FILE.name


def test_accuracy_against_exact_fsp(emulator):
    proto = emulator.protocol
    theta = proto.sample(12, SEED)
    probs, over = emulator.pmf(theta)
    pred = np.concatenate([probs.reshape(len(theta), -1), over[:, None]], axis=1)
    ex_probs, ex_over = ExactEmulator(proto).pmf(theta)
    truth = np.concatenate([ex_probs.reshape(len(theta), -1), ex_over[:, None]], axis=1)
    np.testing.assert_allclose(pred.sum(axis=1), 1.0, atol=1e-9)
    assert (pred >= 0).all()
    kld = np.array([kl_divergence(t, p) for t, p in zip(truth, pred)])
    assert kld.mean() < 3e-3, kld
    assert kld.max() < 3e-2, kld


@pytest.mark.parametrize("q", [(0.4, 1.0), (1.0, 0.3), (0.2, 0.7)])
def test_conditional_mdn_thins_its_own_integer_law(emulator, q):
    """`thinned` equals the model's joint law on the integers (first factor's integer pmf times its bin's
    conditional law of the second species), thinned by binomial kernels per species and binned."""
    from scipy import stats

    from surrogate_abc.emulators.distributions import mixture_pmf_grid
    from surrogate_abc.emulators.exact import bin_integer_pmf

    model = emulator.model
    theta = np.array([[0.5, 2.0, 30.0, 4.0], [3.0, 0.7, 0.5, 1.5]])
    x = torch.as_tensor(emulator.features(theta), dtype=torch.float32)
    n_a, n_b = model.binning.support
    with torch.no_grad():
        log_wa, pa, log_wb, pb = model.factors(x)
        p_a = mixture_pmf_grid(model.family, log_wa, pa, (n_a,)).double().numpy()          # (n, n_a)
        p_b = mixture_pmf_grid(model.family, log_wb, pb, (n_b,)).double().numpy()          # (n, A, n_b)
        got = model.thinned(x, torch.tensor([q] * len(theta), dtype=torch.float32)).double().numpy()
    bin_a = np.searchsorted(emulator.edges[0], np.arange(n_a), side="right") - 1  # each integer's bin
    kernels = [stats.binom.pmf(np.arange(s)[None, :], np.arange(s)[:, None], c) for s, c in ((n_a, q[0]), (n_b, q[1]))]
    for i in range(len(theta)):
        joint = p_a[i][:, None] * p_b[i][bin_a]                                    # (n_a, n_b) integers
        seen = kernels[0].T @ joint @ kernels[1]
        ref, _ = bin_integer_pmf(seen, tuple(np.asarray(e, float) for e in emulator.edges))
        np.testing.assert_allclose(got[i, :-1], ref.ravel(), atol=2e-6)
