"""Training loop, checkpoints/resume, NaN handling, seeds, configs and the `train` command."""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from surrogate_abc import training as T
from surrogate_abc.cli import main
from surrogate_abc.config import CONFIG_DIR, load_protocol
from surrogate_abc.errors import ConfigError, DataFileError, UserError
from surrogate_abc.losses import LOSSES


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: small batches gain nothing from two, and oversubscribed cores lose a lot."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ----------------------------------------------------------------------------- fixtures
def write_binned_toy(path: Path, n: int, seed: int = 0) -> Path:
    """A binned file in the schema layout with exact toy targets (Gaussian mixture bin masses)."""
    from surrogate_abc.data.schema import BINNED_FORMAT, FORMAT_VERSION

    proto = load_protocol("gaussian_mixture")
    theta = proto.sample(n, seed)
    (axis,) = proto.axes
    probs, outside = proto.network.bin_probabilities(proto.rates(theta), axis.edges)
    transforms = proto.transforms()
    feat = np.stack([np.log10(theta[:, j]) if t == "log10" else theta[:, j] for j, t in enumerate(transforms)], 1)
    with h5py.File(path, "w") as f:
        f.attrs.update(format=BINNED_FORMAT, format_version=FORMAT_VERSION, package_version="0.1.0",
                       protocol=proto.name, network="gaussian_mixture", engine="exact", species=["x"],
                       param_names=list(proto.param_names), config_toml=proto.toml_text, samples=1,
                       source_file="none", source_sha256="0")
        f["theta"] = theta
        f["hist"] = probs
        f["overflow"] = outside
        f["tail_mass"] = np.zeros(n)
        f["edges/x"] = axis.edges
        f["scaling/mean"] = feat.mean(0)
        f["scaling/std"] = feat.std(0)
        f["scaling/mean"].attrs["transforms"] = list(transforms)
        f["scaling/std"].attrs["transforms"] = list(transforms)
        f["scaling"].attrs["transforms"] = list(transforms)
    return path


@pytest.fixture(scope="module")
def toy_small(tmp_path_factory) -> Path:
    return write_binned_toy(tmp_path_factory.mktemp("toy") / "toy_small.h5", 600, seed=1)


class StandIn(nn.Module):
    """softmax(Linear(x)): a tiny differentiable stand-in for an emulator network."""

    def __init__(self, d: int, C: int, nan_after: int | None = None):
        super().__init__()
        self.lin = nn.Linear(d, C)
        self.nan_after, self.calls = nan_after, 0

    def forward(self, x):
        out = torch.softmax(self.lin(x), dim=-1)
        if self.training:
            self.calls += 1
            if self.nan_after is not None and self.calls > self.nan_after:
                out = out * float("nan")
        return out

    def architecture(self) -> dict:
        return {"type": "standin", "d": self.lin.in_features, "C": self.lin.out_features}


def hellinger(p, q):
    return 2.0 * ((p.clamp_min(1e-12).sqrt() - q.clamp_min(1e-12).sqrt()) ** 2).sum(-1).mean()


def settings(**kw) -> T.TrainSettings:
    base = dict(batch_size=64, epochs=3, patience=50, seed=3, lr=1e-2)
    base.update(kw)
    return T.TrainSettings(**base)


def tensors(path: Path):
    data = T.load_training_data(path)
    tr, va = T.split_indices(len(data.x), 0.2, 3)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    return x[tr], y[tr], x[va], y[va], data


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- data
def test_training_data_targets_and_features(toy_small):
    data = T.load_training_data(toy_small)
    assert data.x.dtype == np.float32 and data.y.dtype == np.float32
    assert data.y.shape == (600, 100 + 1)
    np.testing.assert_allclose(data.y.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(data.x.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x.std(0), 1.0, atol=1e-4)
    x = T.features(np.array([[1.0, 100.0]]), np.array([0.0, 1.0]), np.array([2.0, 0.5]), ("identity", "log10"))
    np.testing.assert_allclose(x, [[0.5, 2.0]])


def test_split_and_kfold_partition():
    tr, va = T.split_indices(101, 0.2, seed=5)
    assert len(va) == 20 and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 101
    tr2, va2 = T.split_indices(101, 0.2, seed=5)
    assert np.array_equal(va, va2)
    folds = T.kfold_indices(50, 5, seed=0)
    allval = np.sort(np.concatenate([v for _, v in folds]))
    assert np.array_equal(allval, np.arange(50))
    assert all(len(np.intersect1d(t, v)) == 0 for t, v in folds)


def test_not_binned_file_is_data_file_error(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(DataFileError, match="format"):
        T.load_training_data(p)
    with pytest.raises(DataFileError, match="not found"):
        T.load_training_data(tmp_path / "missing.h5")


# ----------------------------------------------------------------------------- the loop
def test_fit_reduces_loss_and_records_history(toy_small):
    xtr, ytr, xva, yva, _ = tensors(toy_small)
    torch.manual_seed(0)
    m = StandIn(xtr.shape[1], ytr.shape[1])
    with torch.no_grad():
        before = float(hellinger(m(xva), yva))
    h = T.fit(m, xtr, ytr, xva, yva, loss_fn=hellinger, settings=settings(epochs=5))
    assert [r["epoch"] for r in h["epochs"]] == [1, 2, 3, 4, 5]
    assert h["stopped"]["reason"] == "max_epochs"
    m.eval()
    with torch.no_grad():
        after = float(hellinger(m(xva), yva))
    assert after == pytest.approx(h["best_val_loss"], rel=1e-5)
    assert after < 0.7 * before, (before, after)


def test_early_stopping(toy_small):
    xtr, ytr, xva, yva, _ = tensors(toy_small)
    torch.manual_seed(0)
    m = StandIn(xtr.shape[1], ytr.shape[1])
    h = T.fit(m, xtr, ytr, xva, yva, loss_fn=hellinger, settings=settings(epochs=200, patience=2, lr=3.0))
    assert h["stopped"]["reason"] == "early_stopping"
    assert h["stopped"]["epoch"] == h["best_epoch"] + 2 < 200


def test_nan_loss_stops_and_restores_best(toy_small):
    xtr, ytr, xva, yva, _ = tensors(toy_small)
    per_epoch = math.ceil(len(xtr) / 64)
    torch.manual_seed(0)
    m = StandIn(xtr.shape[1], ytr.shape[1], nan_after=per_epoch + 3)  # NaN during epoch 2
    with pytest.warns(RuntimeWarning, match="epoch 2: the train hellinger loss is nan"):
        h = T.fit(m, xtr, ytr, xva, yva, loss_fn=hellinger, settings=settings(epochs=5), loss_name="hellinger")
    assert h["stopped"] == {"reason": "non_finite", "epoch": 2, "loss": "train", "loss_name": "hellinger",
                            "value": "nan", "restored_epoch": 1}
    assert len(h["epochs"]) == 1
    m.eval()
    out = m(xva)
    assert torch.isfinite(out).all()
    assert float(hellinger(out.detach(), yva)) == pytest.approx(h["epochs"][0]["val_loss"], rel=1e-6)


def test_checkpoint_resume_equals_uninterrupted(toy_small, tmp_path):
    xtr, ytr, xva, yva, _ = tensors(toy_small)

    def run(epochs, ckpt):
        torch.manual_seed(0)
        m = StandIn(xtr.shape[1], ytr.shape[1])
        h = T.fit(m, xtr, ytr, xva, yva, loss_fn=hellinger, settings=settings(epochs=epochs, optimizer="adam"),
                  checkpoint=ckpt, fingerprint="fp")
        return m, h

    ck = tmp_path / "a.ckpt.safetensors"
    run(3, ck)
    m_resumed, h_resumed = run(6, ck)
    m_full, h_full = run(6, tmp_path / "b.ckpt.safetensors")
    assert h_resumed["resumed_from_epoch"] == 3
    assert [r["epoch"] for r in h_resumed["epochs"]] == [1, 2, 3, 4, 5, 6]
    assert states_equal(m_resumed, m_full)
    assert [r["val_loss"] for r in h_resumed["epochs"]] == [r["val_loss"] for r in h_full["epochs"]]
    # a different fingerprint (config or data) starts over, with a warning
    torch.manual_seed(0)
    m = StandIn(xtr.shape[1], ytr.shape[1])
    with pytest.warns(UserWarning, match="different config or data"):
        h = T.fit(m, xtr, ytr, xva, yva, loss_fn=hellinger, settings=settings(epochs=1), checkpoint=ck,
                  fingerprint="other")
    assert h["resumed_from_epoch"] == 0


def test_optimizer_state_roundtrip_without_pickle():
    m = nn.Linear(3, 2)
    for opt in (torch.optim.Adam(m.parameters(), lr=0.1), torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)):
        m(torch.ones(4, 3)).sum().backward()
        opt.step()
        t, meta = T.flatten_optimizer_state(opt.state_dict())
        import json

        back = T.unflatten_optimizer_state(t, json.loads(json.dumps(meta)))
        ref = opt.state_dict()
        assert back["param_groups"] == ref["param_groups"]
        for pid, st in ref["state"].items():
            for k, v in st.items():
                assert torch.equal(back["state"][pid][k], v) if isinstance(v, torch.Tensor) else back["state"][pid][k] == v


# ----------------------------------------------------------------------------- device
def test_device_resolution():
    assert T.resolve_device("cpu").type == "cpu"
    assert T.resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            T.resolve_device("cuda")
    with pytest.raises(UserError):
        T.resolve_device("tpu")


# ----------------------------------------------------------------------------- configs
TRAIN_CONFIGS = sorted(CONFIG_DIR.glob("train_*.toml"))

SMALL_MDN = """
name = "small_mdn"
protocol = "gaussian_mixture"
[model]
type = "{type}"
family = "gaussian"
components = {components}
hidden = {hidden}
activation = "elu"
[training]
loss = "hellinger"
optimizer = "adam"
lr = {lr}
batch_size = {batch}
epochs = {epochs}
patience = 20
seed = {seed}
{extra}
"""


def small_config(type="mdn", components=2, hidden="[16, 16]", lr=3e-3, batch=64, epochs=3, seed=0, extra=""):
    return T.parse_train_config(SMALL_MDN.format(type=type, components=components, hidden=hidden, lr=lr,
                                                 batch=batch, epochs=epochs, seed=seed, extra=extra), "small.toml")


def test_shipped_train_configs_parse():
    names = {p.stem for p in TRAIN_CONFIGS}
    assert {"train_mdn_gaussian", "train_lstm_gaussian", "train_mdn_protein", "train_lstm_protein",
            "train_mdn_joint"} <= names
    for p in TRAIN_CONFIGS:
        c = T.load_train_config(p)
        assert c.training.loss in LOSSES and c.training.optimizer == "adam"  # hellinger, or mdd_kld to fine-tune
        load_protocol(c.protocol)  # the protocol it names exists


def test_conditional_mdn_config_builds_and_bad_family_is_a_config_error():
    c = T.load_train_config(CONFIG_DIR / "train_default_joint.toml")
    proto = load_protocol(c.protocol)
    net = T.build_network(c.model, proto, len(proto.param_names), 0, c.source)
    assert net.architecture()["type"] == "mdn_conditional" and net.binning.ndim == 2
    bad = c.model.__class__("mdn_conditional", "bivariate_dm_gamma_poisson", 2)
    with pytest.raises(ConfigError, match="univariate count family"):
        T.build_network(bad, proto, len(proto.param_names), 0, "bad.toml")


@pytest.mark.parametrize("bad, field", [
    ("[model]\ntype='mdn'\nfamily='gaussian'\n[training]\nloss='nope'\n", "training.loss"),
    ("[model]\ntype='cnn'\n[training]\n", "model.type"),
    ("[model]\ntype='mdn'\n[training]\n", "model.family"),
    ("[model]\ntype='mdn'\nfamily='gaussian'\n[training]\nlr=-1\n", "training.lr"),
    ("[model]\ntype='mdn'\nfamily='gaussian'\n[training]\nbatch_size=1.5\n", "training.batch_size"),
    ("[model]\ntype='mdn'\nfamily='gaussian'\n[training]\nvalidation=1.2\n", "training.validation"),
    ("[model]\ntype='mdn_ensemble'\nfamily='gaussian'\n[training]\nmembers=1\n", "training.members"),
    ("[model]\ntype='mdn'\nfamily='gaussian'\n[training]\nepoch=3\n", "training.epoch"),
    ("[training]\n", "model"),
    ("[model\n", "malformed TOML"),
])
def test_config_errors_name_file_and_field(bad, field):
    with pytest.raises(ConfigError) as e:
        T.parse_train_config(bad, "bad.toml")
    msg = str(e.value)
    assert msg.startswith("bad.toml: ") and field in msg and "\n" not in msg


def test_every_activation_of_the_networks_is_a_valid_config():
    """Config validation and the networks share one activation table (emulators.layers.ACTIVATIONS)."""
    from surrogate_abc.emulators.layers import ACTIVATIONS

    assert "leaky_relu" in ACTIVATIONS
    for act in ACTIVATIONS:
        assert T.parse_train_config(SMALL_MDN.format(type="mdn", components=2, hidden="[8]", lr=1e-3, batch=64,
                                                     epochs=1, seed=0, extra="").replace('"elu"', f'"{act}"'),
                                    "a.toml").model.activation == act
    with pytest.raises(ConfigError, match=r"model\.activation.*leaky_relu"):
        T.parse_train_config(SMALL_MDN.format(type="mdn", components=2, hidden="[8]", lr=1e-3, batch=64, epochs=1,
                                              seed=0, extra="").replace('"elu"', '"swish"'), "a.toml")


def test_leaky_relu_config_trains_one_epoch(toy_small):
    text = SMALL_MDN.format(type="mdn", components=2, hidden="[8]", lr=1e-3, batch=64, epochs=1, seed=0, extra="")
    cfg = T.parse_train_config(text.replace('activation = "elu"', 'activation = "leaky_relu"'), "leaky.toml")
    emu, hist = T.train(cfg, toy_small, None, device="cpu", progress=False)
    assert cfg.model.activation == "leaky_relu" and emu.model.architecture()["activation"] == "leaky_relu"
    assert isinstance(emu.model.trunk[1], nn.LeakyReLU)
    assert len(hist["epochs"]) == 1 and math.isfinite(hist["validation_metrics"]["H2"])


def test_lstm_configs_accept_both_spellings(toy_small):
    """[model] type "lstm" (the config spelling) and "lstm_array" (the file spelling) build the same network."""
    text = """
protocol = "gaussian_mixture"
[model]
type = "{t}"
hidden = [8]
[model.lstm]
bin_features = 4
hidden = 5
[training]
epochs = 1
"""
    proto = load_protocol("gaussian_mixture")
    nets = []
    for t in ("lstm", "lstm_array"):
        cfg = T.parse_train_config(text.format(t=t), f"{t}.toml")
        torch.manual_seed(0)
        nets.append(T.build_network(cfg.model, proto, 2, 101, cfg.source))
    assert nets[0].architecture() == nets[1].architecture() and states_equal(nets[0], nets[1])


# ----------------------------------------------------------------------------- train() end to end
@pytest.fixture(scope="module")
def toy_4000(tmp_path_factory) -> Path:
    return write_binned_toy(tmp_path_factory.mktemp("toy4k") / "toy4000.h5", 4000, seed=0)


def test_mdn_learns_gaussian_toy(toy_4000, tmp_path):
    """CI-sized run: 4000 exact toy histograms, 6 epochs; validation H2 must drop below 0.05."""
    from surrogate_abc.emulators.io import load_emulator

    cfg = small_config(components=6, hidden="[128, 128, 128]", lr=3e-3, batch=128, epochs=6)
    t0 = time.perf_counter()
    emu, hist = T.train(cfg, toy_4000, tmp_path / "toy.safetensors", device="cpu", progress=False)
    h2 = hist["validation_metrics"]["H2"]
    print(f"\nMDN toy: validation H2 = {h2:.4f} after {len(hist['epochs'])} epochs, {time.perf_counter() - t0:.1f} s")
    assert h2 < 0.05
    assert set(hist["validation_metrics"]) >= {"H2", "MSE", "KLD", "L1max", "L1"}
    assert {"train_loss", "val_loss", "val_H2"} <= set(hist["epochs"][0])
    loaded = load_emulator(tmp_path / "toy.safetensors")
    assert loaded.metadata["data_sha256"] == hist["data_sha256"]
    assert loaded.metadata["validation_metrics"]["H2"] == pytest.approx(h2)
    theta = load_protocol("gaussian_mixture").sample(5, 42)
    np.testing.assert_allclose(loaded.pmf(theta)[0], emu.pmf(theta)[0], rtol=0, atol=1e-12)
    assert (tmp_path / "toy.safetensors.ckpt.safetensors").exists()


def _weights(emu) -> dict:
    return {k: v.detach().clone() for k, v in emu.model.state_dict().items()}


def test_train_resume_and_seeds(toy_small, tmp_path):
    a = tmp_path / "a.safetensors"
    T.train(small_config(epochs=3), toy_small, a, device="cpu", progress=False)
    emu_r, h_r = T.train(small_config(epochs=6), toy_small, a, device="cpu", progress=False)
    assert h_r["resumed_from_epoch"] == 3
    assert h_r["epochs"][3]["epoch"] == 4 and len(h_r["epochs"]) == 6
    emu_full, h_full = T.train(small_config(epochs=6), toy_small, tmp_path / "b.safetensors", device="cpu",
                               progress=False)
    assert h_full["resumed_from_epoch"] == 0
    wr, wf = _weights(emu_r), _weights(emu_full)
    assert all(torch.equal(wr[k], wf[k]) for k in wf)
    # same seed, no checkpoint: identical; another seed: different
    e1, _ = T.train(small_config(epochs=2), toy_small, None, device="cpu", progress=False)
    e2, _ = T.train(small_config(epochs=2), toy_small, None, device="cpu", progress=False)
    e3, _ = T.train(small_config(epochs=2, seed=1), toy_small, None, device="cpu", progress=False)
    w1, w2, w3 = _weights(e1), _weights(e2), _weights(e3)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)
    # a changed config (other lr) does not resume from a's checkpoint
    with pytest.warns(UserWarning, match="different config"):
        _, h = T.train(small_config(epochs=4, lr=1e-3), toy_small, a, device="cpu", progress=False)
    assert h["resumed_from_epoch"] == 0


def test_train_nan_with_stand_in(toy_small):
    n_train = len(T.split_indices(600, 0.2, 0)[0])
    factory = lambda d, C: StandIn(d, C, nan_after=math.ceil(n_train / 64) + 1)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="epoch 2"):
        emu, hist = T.train(small_config(epochs=4), toy_small, None, device="cpu", progress=False,
                            model_factory=factory)
    assert hist["stopped"]["reason"] == "non_finite" and hist["stopped"]["epoch"] == 2
    assert hist["stopped"]["loss_name"] == "hellinger"
    assert math.isfinite(hist["validation_metrics"]["H2"])
    assert "epoch 2" in T.format_summary(hist)


def test_kfold_and_ensemble(toy_small):
    cfg = small_config(epochs=1, extra="kfold = 3")
    _, hist = T.train(cfg, toy_small, None, device="cpu", progress=False,
                      model_factory=lambda d, C: StandIn(d, C))
    assert hist["mode"] == "kfold" and len(hist["folds"]) == 3 and len(hist["fold_metrics"]) == 3
    assert hist["chosen_fold"] == int(np.argmin([f["best_val_loss"] for f in hist["folds"]]))
    assert "H2" in hist["kfold_mean"]
    from surrogate_abc.emulators.ensemble import MDNEnsemble

    cfg = small_config(type="mdn_ensemble", epochs=1, extra="members = 2")
    emu, hist = T.train(cfg, toy_small, None, device="cpu", progress=False)
    assert isinstance(emu.model, MDNEnsemble) and len(hist["members"]) == 2
    assert emu.uncertainty(load_protocol("gaussian_mixture").sample(3, 5)).shape == (3,)


# ----------------------------------------------------------------------------- CLI
def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("surrogate-abc: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_train_errors(tmp_path, toy_small, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_MDN.format(type="mdn", components=2, hidden="[8]", lr=1e-3, batch=64, epochs=1, seed=0, extra=""))
    out = str(tmp_path / "e.safetensors")
    assert "file not found" in _cli_error(capsys, ["train", str(cfg), "--data", str(tmp_path / "no.h5"), "--out", out])
    junk = tmp_path / "junk.h5"
    with h5py.File(junk, "w") as f:
        f.attrs["format"] = "surrogate-abc/simulation"
    assert "format" in _cli_error(capsys, ["train", str(cfg), "--data", str(junk), "--out", out])
    assert "not found" in _cli_error(capsys, ["train", str(tmp_path / "none.toml"), "--data", str(toy_small), "--out", out])
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    assert "malformed" in _cli_error(capsys, ["train", str(bad), "--data", str(toy_small), "--out", out])
    bad.write_text(cfg.read_text().replace('"hellinger"', '"hellinga"'))
    assert "training.loss" in _cli_error(capsys, ["train", str(bad), "--data", str(toy_small), "--out", out])
    dev = "cuda" if not torch.cuda.is_available() else "tpu"
    assert dev in _cli_error(capsys, ["train", str(cfg), "--data", str(toy_small), "--out", out, "--device", dev])
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(cfg.read_text().replace('protocol = "gaussian_mixture"', 'protocol = "seed_protein"'))
    assert "seed_protein" in _cli_error(capsys, ["train", str(wrong), "--data", str(toy_small), "--out", out])
    assert not Path(out).exists()


def test_cli_train_runs(tmp_path, toy_small, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_MDN.format(type="mdn", components=2, hidden="[8]", lr=1e-3, batch=64, epochs=9, seed=0, extra=""))
    out = tmp_path / "e.safetensors"
    assert main(["train", str(cfg), "--data", str(toy_small), "--out", str(out), "--epochs", "1", "--quiet",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert out.exists() and "H2" in printed and "wrote" in printed


def test_learning_rate_decays_on_plateau_and_is_checkpointed():
    """With lr_decay < 1 the learning rate drops after lr_patience epochs without improvement."""

    import torch

    from surrogate_abc.training import TrainSettings, fit

    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = torch.softmax(torch.randn(64, 3), dim=1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Softmax(dim=1))
    # lr 0 makes every epoch identical: no improvement after epoch 1, so the lr decays every 2 epochs.
    s = dataclasses.replace(TrainSettings(), lr=0.0 + 1e-30, epochs=7, patience=100, lr_decay=0.5, lr_patience=2,
                            min_lr=1e-32, batch_size=64)
    hist = fit(model, x, y, x, y, loss_fn=lambda p, t: ((p - t) ** 2).sum(1).mean(), settings=s)
    lrs = [r["lr"] for r in hist["epochs"]]
    assert lrs[0] == pytest.approx(1e-30)
    assert lrs[2] == pytest.approx(0.5e-30) and lrs[4] == pytest.approx(0.25e-30) and lrs[6] == pytest.approx(0.125e-30)


def test_wall_time_budget_stops_and_keeps_best_weights():

    import torch

    from surrogate_abc.training import TrainSettings, fit

    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = torch.softmax(torch.randn(64, 3), dim=1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Softmax(dim=1))
    s = dataclasses.replace(TrainSettings(), epochs=1000, max_seconds=1e-9, batch_size=64)
    hist = fit(model, x, y, x, y, loss_fn=lambda p, t: ((p - t) ** 2).sum(1).mean(), settings=s)
    assert hist["stopped"] == {"reason": "time_limit", "epoch": 1}
    assert len(hist["epochs"]) == 1


def test_max_tail_mass_drops_inexact_sets(toy_small, tmp_path, capsys):
    """Sets whose FSP truncation missed more than max_tail_mass are left out of training, and counted."""
    import shutil

    p = tmp_path / "tail.h5"
    shutil.copy(toy_small, p)
    with h5py.File(p, "a") as f:
        tail = np.zeros(len(f["theta"]))
        tail[:37] = 0.2
        f["tail_mass"][...] = tail
    _, h = T.train(small_config(epochs=1, extra="max_tail_mass = 1e-3"), p, None, device="cpu", progress=False)
    assert h["n_dropped_tail_mass"] == 37 and h["n_sets"] == len(tail) - 37
    assert "dropped 37 of" in capsys.readouterr().err
    _, h = T.train(small_config(epochs=1), p, None, device="cpu", progress=False)
    assert h["n_dropped_tail_mass"] == 0 and h["n_sets"] == len(tail)
    with pytest.raises(ConfigError, match="max_tail_mass = 0.1 leaves 0"):
        with h5py.File(p, "a") as f:
            f["tail_mass"][...] = 0.5
        T.train(small_config(epochs=1, extra="max_tail_mass = 0.1"), p, None, device="cpu", progress=False)


# ----------------------------------------------------------------------------- several files, --init
def test_several_data_files_keep_each_files_split(toy_small, tmp_path):
    """Two files train as one, scaled like the first; the first file's validation rows stay those of a run on it
    alone, so a model warm-started from that run is never validated on its own training rows."""
    second = write_binned_toy(tmp_path / "second.h5", 300, seed=7)
    parts = [T.load_training_data(toy_small), T.load_training_data(second)]
    both = T.concat_training_data(parts)
    assert both.x.shape[0] == 900 and list(np.bincount(both.source)) == [600, 300]
    np.testing.assert_allclose(both.x[600:], T.features(parts[1].theta, parts[0].mean, parts[0].std,
                                                        parts[0].transforms), rtol=1e-6)
    assert both.sha256 not in (parts[0].sha256, parts[1].sha256)
    tr, va = T.split_by_source(both.source, 0.2, 0)
    alone_tr, alone_va = T.split_indices(600, 0.2, 0)
    assert np.array_equal(va[va < 600], alone_va) and np.array_equal(tr[tr < 600], alone_tr)
    assert len(va) == 120 + 60 and not set(tr) & set(va) and len(tr) + len(va) == 900
    _, h = T.train(small_config(epochs=1), [toy_small, second], None, device="cpu", progress=False)
    assert h["n_sets"] == 900 and h["n_validation"] == 180 and h["n_files"] == 2


def test_several_files_must_share_protocol_and_bins(toy_small, tmp_path):
    other = write_binned_toy(tmp_path / "other.h5", 50, seed=3)
    with h5py.File(other, "a") as f:
        f.attrs["config_toml"] = f.attrs["config_toml"].replace('name = "gaussian_mixture"', 'name = "renamed"')
    with pytest.raises(DataFileError, match=r"other\.h5: holds protocol 'renamed'.*same protocol"):
        T.train(small_config(epochs=1), [toy_small, other], None, device="cpu", progress=False)


def test_init_starts_from_an_emulators_weights(toy_small, tmp_path):
    """--init: epoch 0 of the new run is the old emulator (same validation loss, same scaling); a network of
    another shape is refused naming the file."""
    a = tmp_path / "a.safetensors"
    first, h1 = T.train(small_config(epochs=3), toy_small, a, device="cpu", progress=False)
    second = write_binned_toy(tmp_path / "second.h5", 200, seed=9)
    emu, h = T.train(small_config(epochs=1, lr=1e-12), [toy_small, second], None, device="cpu", progress=False,
                     init=a)
    assert h["init"]["file"] == "a.safetensors" and h["init"]["weights_sha256"] and h["init"]["epochs"] == 3
    np.testing.assert_allclose(emu.scaling_mean, first.scaling_mean)
    # the first file's validation rows are the same as in run a, and lr ~ 0 keeps the weights: same loss there
    theta = load_protocol("gaussian_mixture").sample(4, 11)
    np.testing.assert_allclose(emu.pmf(theta)[0], first.pmf(theta)[0], atol=1e-6)
    with pytest.raises(UserError, match=r"--init .*a\.safetensors: its network .* does not match"):
        T.train(small_config(epochs=1, hidden="[8, 8]"), toy_small, None, device="cpu", progress=False, init=a)


def test_init_widens_to_a_multiple_of_the_components(toy_small, tmp_path):
    """--init with a [model] of 2x the components: the run starts from the same mixture (each component copied,
    copies jittered apart); a count that is not a multiple is refused in one line naming the file."""
    a = tmp_path / "a.safetensors"
    first, _ = T.train(small_config(epochs=3), toy_small, a, device="cpu", progress=False)
    wide, h = T.train(small_config(epochs=1, lr=1e-12, components=4), toy_small, None, device="cpu",
                      progress=False, init=a)
    assert wide.model.architecture()["components"] == 4 and h["init"]["file"] == "a.safetensors"
    theta = load_protocol("gaussian_mixture").sample(50, 11)
    p0, p1 = first.pmf(theta)[0], wide.pmf(theta)[0]
    assert np.abs(p1 - p0).max() < 5e-3 and not np.allclose(p1, p0, atol=1e-9)  # jittered, nearly the same
    with pytest.raises(UserError, match=r"--init .*a\.safetensors: .*3 components are not a multiple") as e:
        T.train(small_config(epochs=1, components=3), toy_small, None, device="cpu", progress=False, init=a)
    assert "\n" not in str(e.value)
