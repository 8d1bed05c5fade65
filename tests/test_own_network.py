"""The pipeline on a network the package has never seen: a [network] in a temporary file, through
`simulate --engine fsp`, `bin`, a short `train` and `infer` on data drawn from known rates, with the
emulator file alone (the network file deleted) on the inference side."""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from surrogate_abc import load_protocol
from surrogate_abc.simulate.fsp import solve_stationary

from conftest import run_cli

# Promoter off -> low -> high -> off (a cycle: three states, two of them transcribing at different rates).
NETWORK = """
[network]
name = "promoter_cycle"
species = ["g_off", "g_low", "g_high", "mrna"]

[[network.reactions]]
name = "to_low"
reactants = { g_off = 1 }
products = { g_low = 1 }
rate = "k_on"

[[network.reactions]]
name = "to_high"
reactants = { g_low = 1 }
products = { g_high = 1 }
rate = "k_up"

[[network.reactions]]
name = "to_off"
reactants = { g_high = 1 }
products = { g_off = 1 }
rate = "k_off"

[[network.reactions]]
name = "transcribe"
products = { mrna = 1 }
propensity = "v * (g_low + 4 * g_high)"

[[network.reactions]]
name = "decay"
reactants = { mrna = 1 }
rate = "d"
"""

PROTOCOL = """
name = "cycle_mrna"
network = { file = "cycle_network.toml" }
samples = 10000

[parameters.k_on]
prior = "loguniform"
low = 0.2
high = 5.0

[parameters.v]
prior = "uniform"
low = 2.0
high = 10.0

[fixed]
k_up = 1.0
k_off = 1.0
d = 1.0

[initial]
g_off = 1

[histogram.mrna]
edges = { start = 0, stop = 120, width = 2 }
"""

TRAIN = """
name = "cycle_mdn"
protocol = "cycle_mrna"

[model]
type = "mdn"
family = "gamma_poisson"
components = 3
hidden = [32, 32]
activation = "elu"

[training]
loss = "hellinger"
optimizer = "adam"
lr = 3e-3
batch_size = 32
epochs = 150
validation = 0.2
patience = 40
seed = 0
"""

TRUTH = {"k_on": 1.0, "v": 6.0}


def _ok(r):
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.slow
def test_unseen_network_through_the_whole_pipeline(tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "cycle_network.toml").write_text(NETWORK)
    (work / "cycle.toml").write_text(PROTOCOL)
    (work / "train.toml").write_text(TRAIN)
    proto = load_protocol(work / "cycle.toml")
    assert proto.network.reduced_species == ("g_low", "g_high", "mrna")  # g_off eliminated: found, not declared

    _ok(run_cli(["simulate", "cycle.toml", "--engine", "fsp", "--n", "300", "--seed", "1", "--out", "sim.h5",
                 "--quiet"], cwd=work, timeout=600))
    with h5py.File(work / "sim.h5") as f:
        assert f["tail_mass"][...].max() < 1e-6 and "promoter_cycle" in f.attrs["network_toml"]
    _ok(run_cli(["bin", "sim.h5", "--out", "binned.h5"], cwd=work))
    _ok(run_cli(["train", "train.toml", "--data", "binned.h5", "--out", "cycle.safetensors", "--quiet"], cwd=work,
                timeout=600))

    # data from the exact stationary law at known rates, read on a machine without the network file
    theta = np.array([[TRUTH[k] for k in proto.param_names]])
    rates = dict(zip(proto.rate_names, proto.rates(theta)[0]))
    res = solve_stationary(proto.network, rates, proto.species, [400], proto.fsp)
    cells = np.random.default_rng(3).choice(400, size=800, p=res.pmf / res.pmf.sum())
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(work / "cycle.safetensors", other)
    with h5py.File(other / "observed.h5", "w") as f:
        f["mrna"] = cells
        for k, v in TRUTH.items():
            f.attrs[f"true_{k}"] = v
    r = _ok(run_cli(["infer", "observed.h5", "--emulator", "cycle.safetensors", "--population", "300",
                     "--generations", "6", "--out", "post"], cwd=other, timeout=600))
    assert "k_on" in r.stdout and "v" in r.stdout

    import arviz as az

    idata = az.from_netcdf(other / "post" / "posterior.nc")
    post = idata.posterior
    assert set(post.data_vars) >= {"k_on", "v"}
    for k, v in TRUTH.items():  # a short training run (seconds): medians within 10% of the known rates
        med = float(np.median(post[k].values))
        assert abs(med - v) < 0.1 * v, (k, med, v)
    assert "promoter_cycle" in idata.posterior.attrs["network_toml"]
