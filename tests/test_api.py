"""The Python API: the same pipeline as the command line, from the top-level package."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import surrogate_abc as sa
from surrogate_abc.data.binned import bin_file

from conftest import BIRTH_DEATH_TOML

TRAIN = """
name = "api_mdn"
protocol = "bd"
[model]
type = "mdn"
family = "gamma_poisson"
components = 2
hidden = [16]
activation = "elu"
[training]
loss = "hellinger"
lr = 1e-2
batch_size = 16
epochs = 5
validation = 0.2
patience = 5
seed = 0
"""


def test_api_names_are_the_functions():
    import surrogate_abc.simulate.runner  # noqa: F401  (loading the stage's modules must not rebind the name)
    from surrogate_abc import api

    for name in ("simulate", "train", "infer", "infer_genes", "calibrate", "load_emulator", "attach_marginal"):
        assert getattr(sa, name) is getattr(api, name), name  # the API function, not a subpackage of that name
    assert "infer_genes" in sa.__all__ and "simulate" in sa.__all__
    assert sa.load_protocol("telegraph_mrna").name == "telegraph_mrna"


def test_top_level_api_runs_the_pipeline(tmp_path: Path):
    (tmp_path / "bd.toml").write_text(BIRTH_DEATH_TOML)
    (tmp_path / "train.toml").write_text(TRAIN)
    protocol = sa.load_protocol(tmp_path / "bd.toml")
    summary = sa.simulate(protocol, n=40, out=tmp_path / "sim.h5", engine="exact", seed=1)
    assert "exact" in summary and (tmp_path / "sim.h5").is_file()
    bin_file(tmp_path / "sim.h5", tmp_path / "binned.h5")
    emulator, history = sa.train(tmp_path / "train.toml", tmp_path / "binned.h5", tmp_path / "em.safetensors")
    assert len(history["epochs"]) >= 1 and emulator.param_names == ("a",)
    loaded = sa.load_emulator(tmp_path / "em.safetensors")
    assert isinstance(loaded, sa.emulators.base.EmulatorLike) and loaded.source.endswith("em.safetensors")
    probs, over = loaded.pmf(np.array([[5.0]]))
    np.testing.assert_allclose(probs.sum(1) + over, 1.0, atol=1e-6)
    exact = sa.load_emulator(f"exact:{tmp_path / 'bd.toml'}")
    assert isinstance(exact, sa.emulators.base.EmulatorLike)
    import h5py

    with h5py.File(tmp_path / "obs.h5", "w") as f:
        f["x"] = np.random.default_rng(0).poisson(5.0, 300)
    idata = sa.infer(tmp_path / "obs.h5", emulator=f"exact:{tmp_path / 'bd.toml'}", out=tmp_path / "post",
                     population=100, generations=3)
    assert abs(float(idata.posterior["a"].median()) - 5.0) < 0.6


def test_infer_without_out_writes_nothing_and_returns_the_posterior(tmp_path, monkeypatch):
    """sa.infer(out=None): the InferenceData in memory; no folder in the working directory, no temporary left."""
    import tempfile

    import h5py

    (tmp_path / "bd.toml").write_text(BIRTH_DEATH_TOML)
    with h5py.File(tmp_path / "obs.h5", "w") as f:
        f["x"] = np.random.default_rng(1).poisson(5.0, 300)
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    idata = sa.infer(tmp_path / "obs.h5", emulator=f"exact:{tmp_path / 'bd.toml'}", population=100, generations=3,
                     exact_check="none")
    assert list(work.iterdir()) == [] and list(temp.iterdir()) == []
    assert abs(float(idata.posterior["a"].median()) - 5.0) < 0.6
    assert "observed_data" in idata.groups() and idata.posterior.sizes["draw"] > 0
