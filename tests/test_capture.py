"""Capture efficiency: the emulated distribution of binomially thinned counts, exact for mixture emulators (their
negative-binomial components stay negative binomial) and for the exact models, checked against thinned samples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogate_abc.emulators.capture import CapturedEmulator
from surrogate_abc.emulators.exact import ExactEmulator, thin_integer_pmf
from surrogate_abc.emulators.io import load_emulator
from surrogate_abc.emulators.resolve import RESOURCES
from surrogate_abc.errors import UserError
from surrogate_abc.metrics import total_variation


@pytest.fixture(scope="module")
def protein_emulator():
    return load_emulator(RESOURCES / "gene_protein.safetensors")


def _mixture(em, theta: np.ndarray):
    with torch.no_grad():
        log_w, params = em.model.mixture(torch.as_tensor(em.features(theta), dtype=torch.float32))
    return log_w.double().exp().numpy(), params.double().numpy()


def test_thinned_mdn_equals_the_binomial_kernel_on_its_integer_pmf(protein_emulator):
    from surrogate_abc.emulators.distributions import mixture_pmf_grid

    em = protein_emulator
    theta = em.protocol.sample(3, 4)
    beta = np.array([0.2, 0.5, 0.9])
    got = CapturedEmulator(em, prior=(0.1, 1.0))._flat_probs(np.column_stack([theta, beta]))
    with torch.no_grad():
        log_w, params = em.model.mixture(torch.as_tensor(em.features(theta), dtype=torch.float32))
        grid = mixture_pmf_grid(em.model.family, log_w.double(), params.double(), (4000,)).numpy()
    thinned = thin_integer_pmf(grid, beta, size=int(em.edges[0][-1]))
    from surrogate_abc.emulators.exact import bin_integer_pmf

    for i in range(3):
        bins, over = bin_integer_pmf(thinned[i], em.edges)
        assert np.abs(got[i, :-1] - bins).max() < 2e-5
        assert got[i, -1] == pytest.approx(over, abs=2e-5)


def test_thinned_mdn_matches_thinned_samples(protein_emulator):
    em = protein_emulator
    theta = em.protocol.sample(1, 7)
    beta = 0.3
    got = CapturedEmulator(em, capture=beta).pmf(theta)
    w, params = _mixture(em, theta)
    rng = np.random.default_rng(0)
    n = 200_000
    comp = rng.choice(len(w[0]), size=n, p=w[0] / w[0].sum())
    mu, r = params[0, comp, 0], params[0, comp, 1]
    true = rng.poisson(rng.gamma(r, mu / r))  # negative binomial draws of the untinned mixture
    seen = rng.binomial(true, beta)
    edges = em.edges[0]
    hist, _ = np.histogram(seen, bins=edges)
    emp = np.append(hist, n - hist.sum()) / n
    emu = np.append(got[0][0], got[1][0])
    untinned = np.append(*em.pmf(theta)[0], em.pmf(theta)[1])
    tv = total_variation(emp, emu)
    assert tv < 0.006  # sampling error of 2e5 draws over ~100 occupied bins
    assert total_variation(emp, untinned) > 10 * tv


def test_capture_prior_adds_a_parameter_and_fixed_capture_does_not(protein_emulator):
    em = protein_emulator
    free = CapturedEmulator(em, prior=(0.2, 0.8))
    assert free.param_names == (*em.param_names, "capture")
    assert np.allclose(free.domain[-1], [0.2, 0.8])
    theta = em.protocol.sample(2, 1)
    fixed = CapturedEmulator(em, capture=0.5)
    assert fixed.param_names == em.param_names
    a = free.pmf(np.column_stack([theta, [0.5, 0.5]]))[0]
    assert np.allclose(a, fixed.pmf(theta)[0])
    with pytest.raises(UserError, match="outside"):
        free.pmf(np.column_stack([theta, [0.9, 0.5]]))


@pytest.mark.parametrize("kwargs, match", [({"capture": 0.0}, r"\(0, 1\]"), ({"capture": 1.2}, r"\(0, 1\]"),
                                           ({"prior": (0.5, 0.2)}, "LOW < HIGH"),
                                           ({"capture": 0.5, "prior": (0.1, 0.9)}, "exclude")])
def test_bad_capture_is_refused(protein_emulator, kwargs, match):
    with pytest.raises(UserError, match=match):
        CapturedEmulator(protein_emulator, **kwargs)


def test_capture_on_the_exact_telegraph_model_scales_the_transcription_rate():
    from surrogate_abc.config import load_protocol

    ex = ExactEmulator(load_protocol("telegraph_mrna"))
    theta = np.array([[0.5, 2.0, 80.0]])
    thinned = CapturedEmulator(ex, capture=0.25).pmf(theta)[0]
    scaled = ex.pmf(np.array([[0.5, 2.0, 20.0]]))[0]
    assert np.abs(thinned - scaled).max() < 1e-10


def test_infer_with_fixed_capture_recovers_the_true_rate(tmp_path):
    """Poisson(a) counts seen with beta = 0.5 are Poisson(a / 2): the posterior of a sits at twice the mean."""
    from surrogate_abc.api import infer_genes

    from conftest import write_protocol, write_table

    rng = np.random.default_rng(2)
    true_a = 12.0
    table = write_table(tmp_path / "c.csv", {"g": rng.binomial(rng.poisson(true_a, 500), 0.5)})
    df = infer_genes(table, emulator=f"exact:{write_protocol(tmp_path)}", out=tmp_path / "o", capture=0.5,
                     population=200, generations=5, jobs=1)
    assert df.loc[0, "a_q05"] < true_a < df.loc[0, "a_q95"]
    assert df.loc[0, "a_median"] == pytest.approx(2 * df.loc[0, "mean"], rel=0.05)
