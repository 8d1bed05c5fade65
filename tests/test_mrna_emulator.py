"""The shipped default mRNA emulator (resources/telegraph_mrna.safetensors) against the exact Beta-Poisson law.

Fast (a few seconds): 20 prior draws whose exact bin probabilities come from the closed form
(ExactEmulator). Measured on these draws: mean H^2 3.1e-6, max 1.2e-5, mean KLD 1.2e-5 (held-out figures of
benchmarks/mrna_emulator.py, 1000 sets, seed 901: mean H^2 3.6e-6, max 1.5e-4). The bounds leave a wide
margin above them (and stay under the 2e-4 target), so this catches a wrong or damaged file, not a small
change in accuracy.
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
from surrogate_abc.metrics import kl_divergence, squared_hellinger

FILE = Path(surrogate_abc.__file__).parent / "resources" / "telegraph_mrna.safetensors"
SEED = 12345  # not a training seed (1, 2) nor the benchmark's (901)


@pytest.fixture(scope="module")
def emulator():
    torch.set_num_threads(1)
    return load_emulator(FILE, device="cpu")


def _rows(em, theta: np.ndarray) -> np.ndarray:
    probs, over = em.pmf(theta)
    return np.concatenate([probs.reshape(len(theta), -1), over[:, None]], axis=1)


def test_domain_and_bins_are_the_protocol_prior(emulator):
    proto = load_protocol("telegraph_mrna")
    assert emulator.protocol.name == "telegraph_mrna"
    assert emulator.param_names == proto.param_names == ("k0", "k1", "v0")
    np.testing.assert_array_equal(emulator.domain, proto.bounds())
    np.testing.assert_array_equal(emulator.domain, [[0.01, 10.0], [0.1, 100.0], [1.0, 1000.0]])
    np.testing.assert_array_equal(emulator.edges[0], proto.axes[0].edges)
    assert emulator.species == ("mrna",)


def test_accuracy_against_exact_beta_poisson(emulator):
    proto = emulator.protocol
    theta = proto.sample(20, SEED)
    pred = _rows(emulator, theta)
    truth = _rows(ExactEmulator(proto), theta)
    np.testing.assert_allclose(pred.sum(axis=1), 1.0, atol=1e-9)
    assert (pred >= 0).all()
    h2 = squared_hellinger(truth, pred)
    kld = np.array([kl_divergence(t, p) for t, p in zip(truth, pred)])
    assert h2.mean() < 5e-5, h2
    assert h2.max() < 1e-3, h2
    assert kld.mean() < 2e-4, kld
