"""The Emulator object (pmf, domain checks, sampling, uncertainty) and its safetensors save/load."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from surrogate_abc import parse_protocol
from surrogate_abc.emulators import emulator as emulator_mod
from surrogate_abc.emulators.conditional import ConditionalMDN
from surrogate_abc.emulators.distributions import Binning, get_family
from surrogate_abc.emulators.emulator import Emulator
from surrogate_abc.emulators.ensemble import LSTMEnsemble, MDNEnsemble
from surrogate_abc.emulators.io import (
    EMULATOR_FORMAT_VERSION,
    META_KEY,
    load_emulator,
    read_emulator_metadata,
    save_emulator,
)
from surrogate_abc.emulators.lstm import LSTMArray
from surrogate_abc.emulators.mdn import MDN
from surrogate_abc.errors import DataFileError, UserError

from conftest import GENE_JOINT_TOML

torch.set_num_threads(1)

BD_TOML = """
name = "bd_test"
network = "birth_death"
samples = 10
[parameters.a]
prior = "loguniform"
low = 1.0
high = 50.0
[parameters.b]
prior = "uniform"
low = 0.5
high = 2.0
[histogram.x]
edges = [{ start = 0, stop = 10, width = 1 }, { start = 10, stop = 40, width = 5 }]
"""



def _scaling(protocol):
    theta = protocol.sample(200, seed=1)
    tr = protocol.transforms()
    z = np.where(np.array([t == "log10" for t in tr]), np.log10(theta), theta)
    return z.mean(0), z.std(0), tr


def make_emulator(kind: str = "mdn", toml: str = BD_TOML, seed: int = 0) -> Emulator:
    protocol = parse_protocol(toml, source="test.toml")
    binning = Binning.from_protocol(protocol)
    d = len(protocol.param_names)
    torch.manual_seed(seed)
    if kind == "mdn":
        fam = "gamma_poisson" if binning.ndim == 1 else "bivariate_dm_gamma_poisson"
        model = MDN(d, get_family(fam), 2, binning, hidden=(8, 8))
    elif kind == "mdn_conditional":
        model = ConditionalMDN(d, get_family("gamma_poisson"), 2, binning, hidden=(8, 8), head=(8, 8))
    elif kind == "mdn_ensemble":
        model = MDNEnsemble([MDN(d, get_family("gamma_poisson"), 2, binning, hidden=(8,)) for _ in range(3)])
    elif kind == "lstm":
        model = LSTMArray(d, binning.n_categories, embed=(8,), bin_features=4, hidden=5, cell="peephole", ar_order=1)
    else:  # lstm_ensemble
        model = LSTMEnsemble([LSTMArray(d, binning.n_categories, embed=(8,), bin_features=4, hidden=5)
                              for _ in range(2)], binning.n_categories)
    mean, std, tr = _scaling(protocol)
    meta = {"training": {"epochs": 3, "lr": 1e-3}, "history": {"loss": [1.5, 1.2, 1.1]},
            "validation": {"hellinger": 0.05}, "data_sha256": "ab" * 32}
    return Emulator(model, protocol, mean, std, tr, meta)


def theta_in(em: Emulator, n: int = 7, seed: int = 2) -> np.ndarray:
    return em.protocol.sample(n, seed=seed)


# --------------------------------------------------------------------------- Emulator
def test_pmf_numpy_and_torch_in_out():
    em = make_emulator()
    th = theta_in(em)
    probs, over = em.pmf(th)
    assert probs.shape == (7, 16) and over.shape == (7,)
    assert probs.dtype == np.float64 and over.dtype == np.float64
    assert np.all(probs >= 0) and np.all(over >= 0)
    np.testing.assert_allclose(probs.sum(1) + over, 1.0, rtol=0, atol=1e-14)
    tp, to = em.pmf(torch.as_tensor(th))
    assert isinstance(tp, torch.Tensor) and tp.device == em.device and tp.shape == (7, 16)
    np.testing.assert_array_equal(tp.numpy(), probs)
    np.testing.assert_array_equal(to.numpy(), over)
    # a single row given as a 1-D vector is one parameter set
    p1, o1 = em.pmf(th[0])
    assert p1.shape == (1, 16)
    np.testing.assert_allclose(p1, probs[:1], rtol=1e-5)  # float32 kernels may differ with the batch size
    # the network sees (transform(theta) - mean) / std; on the CPU a Gamma-Poisson MDN's pmf is its categories'
    # masses (walked in float64, the overflow from the tails), within float32 rounding of its forward pass
    with torch.no_grad():
        x = torch.as_tensor((np.column_stack([np.log10(th[:, 0]), th[:, 1]]) - em.scaling_mean) / em.scaling_std,
                            dtype=torch.float32)
        ref = em.model.category_probs(x, torch.arange(em.n_categories)).numpy()
        fwd = em.model(x).double().numpy()
    assert em.model.exact_overflow
    np.testing.assert_allclose(probs, ref[:, :-1] / ref.sum(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(probs, fwd[:, :-1], rtol=2e-5, atol=1e-7)


def test_pmf_is_chunked_without_changing_results(monkeypatch):
    em = make_emulator()
    th = theta_in(em, n=23)
    full = em.pmf(th)[0]
    calls = []
    orig = em.model.category_probs  # what pmf runs for a Gamma-Poisson MDN on the CPU
    monkeypatch.setattr(em.model, "category_probs", lambda x, c: calls.append(len(x)) or orig(x, c))
    monkeypatch.setattr(emulator_mod, "CHUNK_ROWS", 10)
    chunked = em.pmf(th)[0]
    assert calls == [10, 10, 3]
    np.testing.assert_allclose(chunked, full, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["mdn", "mdn_conditional"])
def test_pmf_2d_joint_shapes(kind):
    em = make_emulator(kind, toml=GENE_JOINT_TOML)
    probs, over = em.pmf(theta_in(em, 4))
    assert probs.shape == (4, 4, 3) and over.shape == (4,)
    np.testing.assert_allclose(probs.sum((1, 2)) + over, 1.0, atol=1e-14)
    counts, oc = em.sample_counts(theta_in(em, 4), 500, np.random.default_rng(0))
    assert counts.shape == (4, 4, 3) and np.all(counts.sum((1, 2)) + oc == 500)


def test_domain_error_and_extrapolation_warning():
    em = make_emulator()
    np.testing.assert_array_equal(em.domain, [[1.0, 50.0], [0.5, 2.0]])
    bad = np.array([[10.0, 1.0], [60.5, 1.0]])
    with pytest.raises(UserError, match=r"parameter a = 60\.5 .*outside the emulator's training domain \[1, 50\]"
                                        r".*allow_extrapolation=True"):
        em.pmf(bad)
    with pytest.warns(UserWarning, match="parameter a = 60.5"):
        probs, over = em.pmf(bad, allow_extrapolation=True)
    np.testing.assert_allclose(probs.sum(1) + over, 1.0, atol=1e-14)
    with pytest.raises(UserError, match="expects \\(n, 2\\) with columns a, b"):
        em.pmf(np.ones((3, 3)))
    with pytest.raises(UserError, match="not finite"):
        em.pmf(np.array([[np.nan, 1.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        em.pmf(em.domain.T)  # the box's corners are inside


def test_sample_counts_totals_and_frequencies():
    em = make_emulator()
    th = theta_in(em, 3)
    counts, oc = em.sample_counts(th, 1000, np.random.default_rng(5))
    assert counts.dtype == np.int64 and counts.shape == (3, 16)
    np.testing.assert_array_equal(counts.sum(1) + oc, 1000)
    again, _ = em.sample_counts(th, 1000, np.random.default_rng(5))
    np.testing.assert_array_equal(again, counts)
    big, big_o = em.sample_counts(th[:1], 400_000, np.random.default_rng(6))
    p, o = em.pmf(th[:1])
    np.testing.assert_allclose(big[0] / 400_000, p[0], atol=5e-3)


def test_uncertainty_single_model_zero_and_ensemble_positive():
    single = make_emulator()
    np.testing.assert_array_equal(single.uncertainty(theta_in(single, 5)), np.zeros(5))
    for kind in ("mdn_ensemble", "lstm_ensemble"):
        em = make_emulator(kind)
        u = em.uncertainty(theta_in(em, 5))
        assert u.shape == (5,) and np.all((u > 0) & (u <= 1))


# --------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("kind", ["mdn", "mdn_ensemble", "lstm", "lstm_ensemble"])
def test_round_trip_is_bit_exact(tmp_path, kind):
    em = make_emulator(kind)
    path = save_emulator(em, tmp_path / "em.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["em.safetensors"]  # no temporary file left behind
    back = load_emulator(path)
    sd0, sd1 = em.model.state_dict(), back.model.state_dict()
    assert sd0.keys() == sd1.keys()
    for k in sd0:
        assert sd0[k].dtype == sd1[k].dtype and torch.equal(sd0[k], sd1[k]), k
    th = theta_in(em)
    for a, b in zip(em.pmf(th), back.pmf(th)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.scaling_mean, em.scaling_mean)
    np.testing.assert_array_equal(back.scaling_std, em.scaling_std)
    assert back.transforms == em.transforms and back.param_names == em.param_names
    assert back.metadata == em.metadata
    for a, b in zip(back.edges, em.edges):
        np.testing.assert_array_equal(a, b)
    meta = read_emulator_metadata(path)
    assert meta["format_version"] == EMULATOR_FORMAT_VERSION and meta["architecture"] == em.model.architecture()
    assert meta["data_sha256"] == "ab" * 32 and meta["history"]["loss"] == [1.5, 1.2, 1.1]


@pytest.mark.parametrize("kind", ["mdn", "mdn_conditional"])
def test_round_trip_joint(tmp_path, kind):
    em = make_emulator(kind, toml=GENE_JOINT_TOML)
    back = load_emulator(save_emulator(em, tmp_path / "j.safetensors"), device="cpu")
    th = theta_in(em, 3)
    np.testing.assert_array_equal(em.pmf(th)[0], back.pmf(th)[0])


def _rewrite(src, dst, meta_fn=None, tensor_fn=None):
    with safe_open(str(src), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta_fn:
        meta = json.loads(header[META_KEY])
        meta_fn(meta)
        header[META_KEY] = json.dumps(meta)
    if tensor_fn:
        tensors = tensor_fn(tensors)
    save_file(tensors, str(dst), metadata=header)
    return dst


def _one_line_error(path, match):
    with pytest.raises(DataFileError, match=match) as ei:
        load_emulator(path)
    assert "\n" not in str(ei.value) and str(path) in str(ei.value)


@pytest.fixture
def saved(tmp_path):
    return save_emulator(make_emulator(), tmp_path / "em.safetensors")


def test_rejects_flipped_header_bytes(saved, tmp_path):
    raw = bytearray(saved.read_bytes())
    for pos in (8, 20, 60):  # inside the JSON header (it starts after the 8-byte length)
        bad = bytearray(raw)
        bad[pos] ^= 0xFF
        p = tmp_path / f"flip{pos}.safetensors"
        p.write_bytes(bytes(bad))
        _one_line_error(p, "not a surrogate-abc emulator file")


def test_rejects_newer_format_version(saved, tmp_path):
    p = _rewrite(saved, tmp_path / "v2.safetensors", meta_fn=lambda m: m.update(format_version=2))
    _one_line_error(p, "format_version 2 is newer .*format_version 1")


def test_rejects_truncated_file(saved, tmp_path):
    raw = saved.read_bytes()
    for keep in (4, 200, len(raw) - 10):
        p = tmp_path / f"trunc{keep}.safetensors"
        p.write_bytes(raw[:keep])
        _one_line_error(p, "not a surrogate-abc emulator file")


def test_rejects_foreign_safetensors_and_text(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign), metadata={"format": "pt"})
    _one_line_error(foreign, "without the 'surrogate_abc' metadata key")
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(other), metadata={META_KEY: json.dumps({"format": "something/else"})})
    _one_line_error(other, "format is 'something/else'")
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, this is a text file\n" * 20)
    _one_line_error(text, "not a surrogate-abc emulator file")
    with pytest.raises(DataFileError, match="not found"):
        load_emulator(tmp_path / "missing.safetensors")


def test_rejects_changed_weights_and_mismatched_tensors(saved, tmp_path):
    raw = bytearray(saved.read_bytes())
    raw[-3] ^= 0x01  # a bit of the last tensor's data
    p = tmp_path / "bitrot.safetensors"
    p.write_bytes(bytes(raw))
    _one_line_error(p, "checksum")

    from surrogate_abc.emulators.io import weights_sha256

    def shrink(t):
        t = dict(t)
        k = sorted(t)[0]
        t[k] = t[k][..., :1].contiguous()
        return t

    def fix_sha(tensor_fn):
        def meta_fn(m):
            with safe_open(str(saved), framework="pt") as f:
                m["weights_sha256"] = weights_sha256(tensor_fn({k: f.get_tensor(k) for k in f.keys()}))
        return meta_fn

    p = _rewrite(saved, tmp_path / "shape.safetensors", meta_fn=fix_sha(shrink), tensor_fn=shrink)
    _one_line_error(p, "has shape .* the architecture needs")

    def rename(t):
        t = dict(t)
        k = sorted(t)[0]
        t["extra." + k] = t.pop(k)
        return t

    p = _rewrite(saved, tmp_path / "names.safetensors", meta_fn=fix_sha(rename), tensor_fn=rename)
    _one_line_error(p, "tensors do not match the architecture")
