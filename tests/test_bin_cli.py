"""The `bin` and `show` stages on small hand-written simulation files (layout of data/schema.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

from surrogate_abc import __version__, parse_protocol
from surrogate_abc.data.binned import bin_file
from surrogate_abc.data.schema import BINNED_FORMAT, FORMAT_VERSION, SIMULATION_FORMAT, file_sha256, open_ours
from surrogate_abc.data.summary import show_binned
from surrogate_abc.errors import DataFileError, UserError
from surrogate_abc.networks import GaussianMixtureNetwork

PROTEIN_TOML = """
name = "small_protein"
network = "gene"
samples = 500
[parameters.k0]
prior = "loguniform"
low = 0.01
high = 10.0
[parameters.d1]
prior = "uniform"
low = 0.1
high = 1.0
[fixed]
d0 = 1.0
k1 = 1.0
v0 = 1.0
[derived]
v1 = "20 * d1"
[histogram.protein]
edges = { start = 0, stop = 60, width = 3 }
cap = 80
"""

JOINT_TOML = """
name = "small_joint"
network = "gene"
samples = 400
[parameters.k0]
prior = "loguniform"
low = 0.1
high = 10.0
[parameters.d1]
prior = "uniform"
low = 0.1
high = 1.0
[fixed]
d0 = 1.0
k1 = 1.0
v0 = 10.0
[derived]
v1 = "2 * d1"
[histogram.mrna]
edges = [ { start = 0, stop = 10, width = 1 }, { start = 10, stop = 30, width = 4 } ]
cap = 35
[histogram.protein]
edges = { start = 0, stop = 40, width = 5 }
cap = 50
"""

TOY_TOML = (Path(__file__).resolve().parent.parent / "configs" / "gaussian_mixture.toml").read_text().replace(
    "edges = { start = -15.0, stop = 15.0, width = 0.3 }", "edges = { start = -6.0, stop = 6.0, width = 0.3 }")


def _write(path: Path, toml: str, engine: str, kind: str, theta, grid, overflow, tail=None, raw=None,
           complete: bool = True, done=None, samples: int = 1, edges=None) -> Path:
    """Write a simulation file in the layout of surrogate_abc.data.schema (the fixture writer)."""
    proto = parse_protocol(toml)
    n = len(theta)
    with h5py.File(path, "w") as f:
        attrs = dict(format=SIMULATION_FORMAT, format_version=FORMAT_VERSION, package_version=__version__,
                     protocol=proto.name, network=proto.network.name, engine=engine, seed=0, samples=samples, n=n,
                     species=list(proto.species), param_names=list(proto.param_names),
                     rate_names=list(proto.rate_names), config_toml=toml, complete=complete, command="test")
        for k, v in attrs.items():
            f.attrs[k] = v
        f["theta"] = theta
        f["rates"] = proto.rates(theta)
        f["initial"] = np.zeros((n, len(proto.network.species)), np.int64)
        f["seeds"] = np.arange(n, dtype=np.uint64)
        f["done"] = np.ones(n, bool) if done is None else done
        f["wall_time"] = np.zeros(n)
        f["grid"] = grid
        f["grid"].attrs["kind"] = kind
        f["overflow"] = np.asarray(overflow, float)
        f["tail_mass"] = np.zeros(n) if tail is None else tail
        if raw is not None:
            f["raw"] = raw
        for sp, e in (edges or {}).items():
            f[f"edges/{sp}"] = e
    return path


def _theta(toml: str, n: int) -> np.ndarray:
    return parse_protocol(toml).sample(n, seed=1)


def make_ssa(path: Path, n: int = 7, samples: int = 500) -> tuple[Path, np.ndarray]:
    """SSA-like counts: negative-binomial samples per set, some beyond the cap. Returns (path, raw samples)."""
    theta = _theta(PROTEIN_TOML, n)
    rng = np.random.default_rng(3)
    raw = np.stack([rng.negative_binomial(2, 2 / (2 + m), size=samples) for m in np.linspace(5, 70, n)])
    cap = 80
    grid = np.stack([np.bincount(r[r < cap], minlength=cap) for r in raw]).astype(np.int64)
    return _write(path, PROTEIN_TOML, "ssa", "counts", theta, grid, (raw >= cap).sum(1), samples=samples), raw


def make_fsp(path: Path, n: int = 5, tail: float = 0.0) -> tuple[Path, np.ndarray]:
    """FSP-like exact PMFs (negative binomial) on 0..cap-1 with the rest as overflow. Returns (path, full pmf)."""
    theta = _theta(PROTEIN_TOML, n)
    k = np.arange(200)
    pmf = np.stack([stats.nbinom.pmf(k, 3, 3 / (3 + m)) for m in np.linspace(4, 60, n)])
    grid = pmf[:, :80] * (1 - tail)
    over = stats.nbinom.sf(79, 3, 3 / (3 + np.linspace(4, 60, n))) * (1 - tail)
    return _write(path, PROTEIN_TOML, "fsp", "pmf", theta, grid, over, tail=np.full(n, tail)), pmf


def make_joint(path: Path, n: int = 4, samples: int = 400) -> tuple[Path, np.ndarray]:
    """SSA-like joint (mrna, protein) counts on a 35 x 50 support. Returns (path, raw (n, samples, 2))."""
    theta = _theta(JOINT_TOML, n)
    rng = np.random.default_rng(4)
    m = rng.poisson(12, size=(n, samples))
    p = rng.poisson(3 * m + 1)
    raw = np.stack([m, p], axis=-1)
    inside = (m < 35) & (p < 50)
    grid = np.zeros((n, 35, 50), np.int64)
    for i in range(n):
        np.add.at(grid[i], (m[i][inside[i]], p[i][inside[i]]), 1)
    return _write(path, JOINT_TOML, "ssa", "counts", theta, grid, (~inside).sum(1), samples=samples), raw


def make_toy(path: Path, n: int = 6) -> Path:
    """Exact toy data: Gaussian-mixture bin masses on the protocol's edges."""
    proto = parse_protocol(TOY_TOML)
    theta = proto.sample(n, seed=2)
    edges = proto.axes[0].edges
    probs, outside = GaussianMixtureNetwork(3).bin_probabilities(proto.rates(theta), edges)
    return _write(path, TOY_TOML, "exact", "binned_pmf", theta, probs, outside, edges={"x": edges})


def _read(path: Path) -> dict:
    with open_ours(path, BINNED_FORMAT, required=("theta", "hist", "overflow", "tail_mass")) as f:
        out = {k: f[k][()] for k in ("theta", "hist", "overflow", "tail_mass", "scaling/mean", "scaling/std")}
        out["edges"] = {k: f["edges"][k][()] for k in f["edges"]}
        out["attrs"] = dict(f.attrs)
        out["transforms"] = list(f["scaling"].attrs["transforms"])
    return out


def _rows_sum_to_one(b: dict) -> None:
    tot = b["hist"].reshape(len(b["hist"]), -1).sum(1) + b["overflow"]
    np.testing.assert_allclose(tot, 1.0, rtol=0, atol=1e-12)
    assert (b["hist"] >= 0).all() and (b["overflow"] >= 0).all()


# ----------------------------------------------------------------------------------- success paths
def test_ssa_counts_equal_numpy_histogram_of_raw_samples(tmp_path):
    src, raw = make_ssa(tmp_path / "ssa.h5")
    summary = bin_file(src, tmp_path / "b.h5", block_rows=3)  # 3 blocks: 3 + 3 + 1 sets
    b = _read(tmp_path / "b.h5")
    edges = np.arange(0, 61, 3.0)
    np.testing.assert_array_equal(b["edges"]["protein"], edges)
    ref = np.stack([np.histogram(r[r < 60], edges)[0] for r in raw]) / raw.shape[1]
    np.testing.assert_allclose(b["hist"], ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(b["overflow"], (raw >= 60).mean(1), rtol=0, atol=1e-15)
    _rows_sum_to_one(b)
    a = b["attrs"]
    assert a["format"] == BINNED_FORMAT and a["engine"] == "ssa" and a["protocol"] == "small_protein"
    assert a["source_sha256"] == file_sha256(src) and a["samples"] == 500
    assert list(a["species"]) == ["protein"] and list(a["param_names"]) == ["k0", "d1"]
    # scaling: log10 for the loguniform k0, identity for the uniform d1
    assert b["transforms"] == ["log10", "identity"]
    feats = np.column_stack([np.log10(b["theta"][:, 0]), b["theta"][:, 1]])
    np.testing.assert_allclose(b["scaling/mean"], feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(b["scaling/std"], feats.std(0), rtol=1e-12)
    assert "7 sets" in summary and "20 protein" in summary and str(tmp_path / "b.h5") in summary
    assert not list(tmp_path.glob(".*tmp*"))


def test_fsp_pmf_summed_into_bins_and_tail_copied(tmp_path):
    src, pmf = make_fsp(tmp_path / "fsp.h5", tail=1e-7)
    bin_file(src, tmp_path / "b.h5")
    b = _read(tmp_path / "b.h5")
    k = np.arange(60)  # numpy's last bin is closed: leave k = 60 out
    ref = np.stack([np.histogram(k, np.arange(0, 61, 3.0), weights=p[:60])[0] for p in pmf])
    np.testing.assert_allclose(b["hist"], ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b["overflow"], 1 - ref.sum(1), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(b["tail_mass"], 1e-7)
    _rows_sum_to_one(b)


def test_edges_override_nonuniform_start(tmp_path):
    src, raw = make_ssa(tmp_path / "ssa.h5")
    bin_file(src, tmp_path / "b.h5", edges="5:80:2.5")
    b = _read(tmp_path / "b.h5")
    edges = 5 + 2.5 * np.arange(31)
    np.testing.assert_allclose(b["edges"]["protein"], edges)
    ref = np.stack([np.histogram(r[r < 80], edges)[0] for r in raw]) / raw.shape[1]
    np.testing.assert_allclose(b["hist"], ref, atol=1e-15)
    np.testing.assert_allclose(b["overflow"], ((raw < 5) | (raw >= 80)).mean(1), atol=1e-15)
    _rows_sum_to_one(b)


def test_joint_counts_equal_histogram2d(tmp_path):
    src, raw = make_joint(tmp_path / "joint.h5")
    bin_file(src, tmp_path / "b.h5", block_rows=3)
    b = _read(tmp_path / "b.h5")
    em = np.concatenate([np.arange(0, 10.0), 10 + 4 * np.arange(6.0)])
    ep = np.arange(0, 41, 5.0)
    assert b["hist"].shape == (4, len(em) - 1, len(ep) - 1)
    for i in range(4):
        m, p = raw[i, :, 0], raw[i, :, 1]
        keep = (m < em[-1]) & (p < ep[-1])
        ref = np.histogram2d(m[keep], p[keep], [em, ep])[0] / raw.shape[1]
        np.testing.assert_allclose(b["hist"][i], ref, atol=1e-15)
        np.testing.assert_allclose(b["overflow"][i], 1 - keep.mean(), atol=1e-14)
    _rows_sum_to_one(b)
    bin_file(src, tmp_path / "b2.h5", edges="0:35:5,0:50:10")
    assert _read(tmp_path / "b2.h5")["hist"].shape == (4, 7, 5)


def test_toy_is_copied_and_same_edges_accepted(tmp_path):
    src = make_toy(tmp_path / "toy.h5")
    bin_file(src, tmp_path / "b.h5", edges="-6:6:0.3")
    b = _read(tmp_path / "b.h5")
    with h5py.File(src) as f:
        np.testing.assert_array_equal(b["hist"], f["grid"][()])
        np.testing.assert_array_equal(b["overflow"], f["overflow"][()])
        np.testing.assert_array_equal(b["edges"]["x"], f["edges/x"][()])
    _rows_sum_to_one(b)
    assert b["transforms"] == ["identity"] * 9
    with pytest.raises(UserError, match="pre-binned"):
        bin_file(src, tmp_path / "c.h5", edges="-6:6:0.5")
    assert not (tmp_path / "c.h5").exists()


def test_inconsistent_counts_fail_loudly(tmp_path):
    src, _ = make_ssa(tmp_path / "ssa.h5")
    with h5py.File(src, "r+") as f:
        f["overflow"][2] += 1  # grid + overflow no longer equals samples for set 2
    with pytest.raises(DataFileError, match="set 2"):
        bin_file(src, tmp_path / "b.h5")
    assert not (tmp_path / "b.h5").exists() and not list(tmp_path.glob(".*tmp*"))


def test_show_table_and_png(tmp_path):
    src, _ = make_ssa(tmp_path / "ssa.h5")
    bin_file(src, tmp_path / "b.h5")
    text = show_binned(tmp_path / "b.h5", None, 3)
    for word in ("small_protein", "ssa", "sets          7", "protein: 20 bins on [0, 60)", "k0", "d1",
                 "mean count", "overflow", str(tmp_path / "b.png")):
        assert word in text, word
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    src2, _ = make_joint(tmp_path / "joint.h5")
    bin_file(src2, tmp_path / "j.h5")
    text = show_binned(tmp_path / "j.h5", tmp_path / "j_plot.png", 2)
    assert "mrna" in text and (tmp_path / "j_plot.png").stat().st_size > 1000


# ----------------------------------------------------------------------------------- CLI errors
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "surrogate_abc", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _assert_user_error(res: subprocess.CompletedProcess, *words: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("surrogate-abc: error:")
    for w in words:
        assert w in lines[0], (w, lines[0])


def _bad_inputs(tmp: Path) -> list[tuple[list[str], tuple[str, ...]]]:
    good, _ = make_ssa(tmp / "good.h5", n=60)
    (tmp / "text.h5").write_text("not an HDF5 file\n")
    with h5py.File(tmp / "foreign.h5", "w") as f:
        f["x"] = np.zeros(3)
    data = good.read_bytes()
    (tmp / "trunc.h5").write_bytes(data[: len(data) // 2])
    shutil.copy(good, tmp / "inc.h5")
    with h5py.File(tmp / "inc.h5", "r+") as f:
        f.attrs["complete"] = False
    shutil.copy(good, tmp / "notdone.h5")
    with h5py.File(tmp / "notdone.h5", "r+") as f:
        f["done"][5] = False
    shutil.copy(good, tmp / "run.h5.partial")  # simulate still running: only the .partial exists
    with h5py.File(tmp / "run.h5.partial", "r+") as f:
        f.attrs["complete"] = False
    out = ["--out", "o.h5"]
    return [
        (["text.h5", *out], ("text.h5", "not a readable HDF5 file")),
        (["foreign.h5", *out], ("foreign.h5", "format")),
        (["trunc.h5", *out], ("trunc.h5",)),
        (["inc.h5", *out], ("inc.h5", "incomplete", "rerun")),
        (["notdone.h5", *out], ("notdone.h5", "59 of 60", "rerun")),
        (["run.h5", *out], ("run.h5.partial", "rerun")),
        (["run.h5.partial", *out], ("incomplete",)),
        (["good.h5", *out, "--edges", "0:60"], ("--edges", "start:stop:width")),
        (["good.h5", *out, "--edges", "0:60:7"], ("--edges", "multiple")),
        (["good.h5", *out, "--edges", "0:60:0"], ("--edges", "width > 0")),
        (["good.h5", *out, "--edges", "0:30:3,0:30:3"], ("--edges", "one per species")),
        (["good.h5", *out, "--edges", "a:b:c"], ("--edges",)),
        (["good.h5", *out, "--edges", "0:90:3"], ("--edges", "cap 80")),
        (["good.h5", "--out", "missing_dir/o.h5"], ("missing_dir", "does not exist")),
        (["good.h5", "--out", "ro/o.h5"], ("ro", "cannot write")),
    ]


def test_cli_errors_exit_2_one_line_no_output(tmp_path):
    cases = _bad_inputs(tmp_path)
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    try:
        if os.access(tmp_path / "ro", os.W_OK):  # running as root: permissions do not bind; /proc still refuses
            cases = [c for c in cases if "ro/o.h5" not in c[0]]
            cases.append((["good.h5", "--out", "/proc/o.h5"], ("/proc", "cannot write")))
        for args, words in cases:
            res = _cli("bin", *args, cwd=tmp_path)
            _assert_user_error(res, *words)
            assert not (tmp_path / "o.h5").exists(), args
            assert not list(tmp_path.glob(".*tmp*")), args
    finally:
        os.chmod(tmp_path / "ro", 0o700)


def test_cli_bin_and_show_succeed(tmp_path):
    make_fsp(tmp_path / "fsp.h5")
    res = _cli("bin", "fsp.h5", "--out", "b.h5", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "5 sets" in res.stdout and "b.h5" in res.stdout
    res = _cli("show", "b.h5", "--examples", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "b.png" in res.stdout and (tmp_path / "b.png").exists()
    _assert_user_error(_cli("show", "fsp.h5", cwd=tmp_path), "fsp.h5", "format")


@pytest.mark.mpi
def test_bin_under_mpiexec_rank0_writes_once(tmp_path):
    mpiexec = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if mpiexec is None:
        pytest.skip("mpiexec not installed (pip install mpich)")
    make_fsp(tmp_path / "fsp.h5")
    bin_file(tmp_path / "fsp.h5", tmp_path / "serial.h5")
    res = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "surrogate_abc", "bin", "fsp.h5", "--out", "m.h5"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("binned 5 sets") == 1  # only rank 0 reports
    np.testing.assert_array_equal(_read(tmp_path / "m.h5")["hist"], _read(tmp_path / "serial.h5")["hist"])


def test_histogram_means_use_integer_centres():
    from surrogate_abc.data.summary import histogram_means

    edges = [np.array([0.0, 3.0, 6.0, 7.5])]  # integers {0,1,2}, {3,4,5}, {6,7}
    hist = np.array([[1.0, 0, 0], [0, 0.5, 0.5], [0, 0, 0]])
    np.testing.assert_allclose(histogram_means(hist, edges), [[1.0], [0.5 * 4 + 0.5 * 6.5], [np.nan]])
    np.testing.assert_allclose(histogram_means(hist[:1], edges, integer=False), [[1.5]])
    joint = np.zeros((1, 3, 3))
    joint[0, 0, 2] = 1.0
    np.testing.assert_allclose(histogram_means(joint, edges * 2), [[1.0, 6.5]])
