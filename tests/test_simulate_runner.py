"""The simulate runner: file layout (schema), resume after a kill, and user errors (exit 2, one line)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

from surrogate_abc import __version__, load_protocol, parse_protocol
from surrogate_abc.data.schema import FORMAT_VERSION, SIMULATION_FORMAT, partial_path
from surrogate_abc.simulate import count_grid, run_simulation, set_seeds

from conftest import (
    BIRTH_DEATH_TOML,
    KILL_N,
    assert_same_results,
    cli_env,
    kill_args,
    kill_when_part_done,
    popen_cli,
    run_cli,
)

SCHEMA_ATTRS = {"format", "format_version", "package_version", "protocol", "network", "engine", "seed", "samples", "n",
                "species", "param_names", "rate_names", "config_toml", "network_toml", "complete", "command"}
COMMON = {"theta", "rates", "initial", "seeds", "done", "wall_time", "grid", "overflow", "tail_mass"}


def _names(f: h5py.File) -> set[str]:
    out: list[str] = []
    f.visit(out.append)
    return set(out)


def _check_common(f: h5py.File, proto, n: int, seed: int) -> None:
    assert set(f.attrs) == SCHEMA_ATTRS
    assert f.attrs["format"] == SIMULATION_FORMAT and f.attrs["format_version"] == FORMAT_VERSION
    assert f.attrs["package_version"] == __version__ and bool(f.attrs["complete"]) is True
    assert f.attrs["n"] == n and f.attrs["seed"] == seed and f.attrs["config_toml"] == proto.toml_text
    assert list(f.attrs["param_names"]) == list(proto.param_names)
    assert list(f.attrs["rate_names"]) == list(proto.rate_names)
    assert list(f.attrs["species"]) == list(proto.species)
    theta = proto.sample(n, seed)
    assert f["theta"].dtype == np.float64 and np.array_equal(f["theta"][...], theta)
    assert np.array_equal(f["rates"][...], proto.rates(theta)) and f["rates"].dtype == np.float64
    assert np.array_equal(f["initial"][...], proto.initial_state(theta)) and f["initial"].dtype == np.int64
    assert list(f["theta"].attrs["names"]) == list(proto.param_names)
    assert list(f["rates"].attrs["names"]) == list(proto.rate_names)
    assert list(f["initial"].attrs["names"]) == list(proto.network.species)
    assert f["seeds"].dtype == np.uint64 and np.array_equal(f["seeds"][...], set_seeds(seed, range(n)))
    assert f["done"].dtype == bool and f["done"][...].all()
    assert f["wall_time"].shape == (n,) and np.all(f["wall_time"][...] > 0)
    assert f["grid"].chunks[0] == 1 and f["grid"].compression == "gzip"
    for k in ("overflow", "tail_mass", "wall_time"):
        assert f[k].dtype == np.float64 and f[k].shape == (n,)


def test_schema_ssa_keep_raw(tmp_path: Path) -> None:
    proto = parse_protocol(BIRTH_DEATH_TOML.replace("stop = 20", "stop = 7"), source="bd.toml")  # cap 7: overflow > 0
    out = tmp_path / "s.h5"
    summary = run_simulation(proto, n=3, out=out, samples=500, seed=5, keep_raw=True, chunk_size=2, command="x",
                             progress=False)
    assert "ssa" in summary and str(out) in summary
    assert out.exists() and not partial_path(out).exists()
    with h5py.File(out, "r") as f:
        _check_common(f, proto, 3, 5)
        assert _names(f) == COMMON | {"raw"}
        assert f.attrs["engine"] == "ssa" and f.attrs["samples"] == 500 and f.attrs["command"] == "x"
        g = f["grid"][...]
        assert g.dtype == np.int64 and g.shape == (3, 7) and f["grid"].attrs["kind"] == "counts"
        assert np.array_equal(g.sum(axis=1) + f["overflow"][...], np.full(3, 500))
        assert f["overflow"][...].sum() > 0
        raw = f["raw"][...]
        assert raw.dtype == np.int32 and raw.shape == (3, 500, 1)
        for i in range(3):
            grid, over = count_grid(raw[i], [7])
            assert np.array_equal(grid, g[i]) and over == f["overflow"][i]
        assert np.all(f["tail_mass"][...] == 0)


def test_schema_fsp_matches_poisson(tmp_path: Path, bd_config: Path) -> None:
    proto = load_protocol(bd_config)
    out = tmp_path / "f.h5"
    run_simulation(proto, n=4, out=out, seed=2, engine="fsp", progress=False)
    with h5py.File(out, "r") as f:
        _check_common(f, proto, 4, 2)
        assert _names(f) == COMMON | {"truncation"}
        assert f["grid"].attrs["kind"] == "pmf" and f["grid"].dtype == np.float64 and f["grid"].shape == (4, 20)
        assert f["truncation"].dtype == np.int64 and f["truncation"].shape == (4, 1)
        assert np.all(f["truncation"][...] >= 20)
        lam = f["rates"][:, 0] / f["rates"][:, 1]
        ref = stats.poisson.pmf(np.arange(20)[None, :], lam[:, None])
        np.testing.assert_allclose(f["grid"][...], ref, atol=1e-7)
        np.testing.assert_allclose(f["overflow"][...], stats.poisson.sf(19, lam), atol=1e-7)


def test_fsp_truncation_columns_are_the_networks_species(tmp_path: Path) -> None:
    """gene_joint_mrna observes mRNA alone, so FSP solves the (gene, mRNA) sub-chain: the file's truncation keeps one
    column per reduced species (gene_on, mrna, protein) with mRNA's box in mRNA's column and 0 for protein."""
    proto = load_protocol("gene_joint_mrna")
    out = tmp_path / "m.h5"
    run_simulation(proto, n=2, out=out, seed=3, engine="fsp", progress=False)
    with h5py.File(out, "r") as f:
        t = f["truncation"][...]
    assert t.shape == (2, 3)
    assert np.all(t[:, 0] == 2) and np.all(t[:, 1] >= 10) and np.all(t[:, 2] == 0)


def test_schema_exact_gaussian_mixture(tmp_path: Path) -> None:
    proto = load_protocol("gaussian_mixture")
    out = tmp_path / "g.h5"
    run_simulation(proto, n=5, out=out, seed=3, progress=False)
    with h5py.File(out, "r") as f:
        _check_common(f, proto, 5, 3)
        assert _names(f) == COMMON | {"edges", "edges/x"}
        assert f.attrs["engine"] == "exact" and f["grid"].attrs["kind"] == "binned_pmf"
        edges = proto.axes[0].edges
        assert np.array_equal(f["edges/x"][...], edges)
        probs, outside = proto.network.bin_probabilities(f["rates"][...], edges)
        np.testing.assert_allclose(f["grid"][...], probs, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(f["overflow"][...], outside, atol=1e-12)
        np.testing.assert_allclose(f["grid"][...].sum(1) + f["overflow"][...], 1.0, atol=1e-9)


def _computed_now(stdout: str) -> int:
    m = re.search(r"\((\d+) computed now, (\d+) already done\)", stdout)
    assert m, stdout
    return int(m.group(1))


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path, bd_config: Path, bd_reference: Path) -> None:
    out = tmp_path / "k.h5"
    part = partial_path(out)
    proc = popen_cli(kill_args(bd_config, out), cwd=tmp_path)
    kill_when_part_done(proc, part, KILL_N)
    assert part.exists() and not out.exists()
    with h5py.File(part, "r") as f:  # never a partial file that looks complete
        assert not bool(f.attrs["complete"])
        done_before = f["done"][...].copy()
        wall_before = f["wall_time"][...].copy()
        grid_before = f["grid"][...].copy()
    assert 0 < done_before.sum() < KILL_N
    r = run_cli(kill_args(bd_config, out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _computed_now(r.stdout) == KILL_N - int(done_before.sum())  # only the missing sets
    assert out.exists() and not part.exists()
    with h5py.File(out, "r") as f:
        assert bool(f.attrs["complete"]) and f["done"][...].all()
        # sets committed before the kill were kept as they were, not recomputed
        np.testing.assert_array_equal(f["wall_time"][...][done_before], wall_before[done_before])
        np.testing.assert_array_equal(f["grid"][...][done_before], grid_before[done_before])
    assert_same_results(out, bd_reference)
    again = run_cli(kill_args(bd_config, out), cwd=tmp_path)
    assert again.returncode == 0 and "already complete" in again.stdout


def test_hook_stop_resume_and_mismatch(tmp_path: Path, bd_config: Path) -> None:
    args = ["simulate", str(bd_config), "--n", "6", "--engine", "fsp", "--chunk-size", "2", "--quiet"]
    out, ref = tmp_path / "h.h5", tmp_path / "ref.h5"
    # the fault is injected from here: the CLI runs with SimulationFile.commit patched to die after 2 commits
    stop = ("import os, sys; from surrogate_abc.simulate import runner; from surrogate_abc.cli import main; "
            "orig = runner.SimulationFile.commit; calls = []\n"
            "def commit(self, results):\n    orig(self, results); calls.append(1)\n"
            "    if len(calls) >= 2: os._exit(9)\n"
            "runner.SimulationFile.commit = commit; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", stop, *args, "--out", str(out)], cwd=tmp_path, env=cli_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 9 and not out.exists()
    with h5py.File(partial_path(out), "r") as f:
        assert int(f["done"][...].sum()) == 4 and not bool(f.attrs["complete"])
    for extra in (["--seed", "1"], ["--n", "7"], ["--samples", "10"]):
        bad = run_cli([*args, "--out", str(out), *extra], cwd=tmp_path)
        _assert_user_error(bad, "delete")
    assert partial_path(out).exists()
    r = run_cli([*args, "--out", str(out)], cwd=tmp_path)
    assert r.returncode == 0 and _computed_now(r.stdout) == 2
    assert run_cli([*args, "--out", str(ref)], cwd=tmp_path).returncode == 0
    assert_same_results(out, ref)
    bad = run_cli([*args, "--out", str(out), "--seed", "4"], cwd=tmp_path)  # complete file, other settings
    _assert_user_error(bad, "delete")


def _assert_user_error(r, needle: str = "") -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("surrogate-abc: error:"), r.stderr
    assert "Traceback" not in r.stderr and needle in lines[0]


BAD_CONFIGS = {
    "malformed": "name = 'x\nnetwork = [",
    "unknown_derived": BIRTH_DEATH_TOML.replace("[fixed]\nb = 1.0", "[derived]\nb = 'a * zz'"),
    "low_ge_high": BIRTH_DEATH_TOML.replace("low = 4.0", "low = 7.0"),
}


@pytest.mark.parametrize("case", ["missing_config", "malformed", "unknown_derived", "low_ge_high", "n0", "n_neg",
                                  "proc_path", "no_dir", "engine_bd", "engine_gauss", "seed_neg"])
def test_bad_input_exits_2_without_output(tmp_path: Path, bd_config: Path, case: str) -> None:
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    out = outdir / "x.h5"
    cfg = str(bd_config)
    extra: list[str] = ["--engine", "fsp"]
    if case == "missing_config":
        cfg = str(tmp_path / "nope.toml")
    elif case in BAD_CONFIGS:
        cfg = str(tmp_path / f"{case}.toml")
        Path(cfg).write_text(BAD_CONFIGS[case])
    elif case == "proc_path":
        out = Path("/proc/nope/x.h5")
    elif case == "no_dir":
        out = outdir / "missing" / "x.h5"
    elif case == "engine_bd":  # birth-death has a closed form; the gene model's protein has none
        cfg, extra = "seed_protein", ["--engine", "exact"]
    elif case == "engine_gauss":
        cfg, extra = "gaussian_mixture", ["--engine", "ssa"]
    elif case == "seed_neg":
        extra += ["--seed", "-1"]
    n = {"n0": "0", "n_neg": "-3"}.get(case, "3")
    r = run_cli(["simulate", cfg, "--n", n, "--out", str(out), *extra], cwd=tmp_path)
    _assert_user_error(r)
    assert list(outdir.iterdir()) == [] and not out.exists()
    if case.startswith("engine"):
        assert "engine" in r.stderr and ("ssa" in r.stderr or "exact" in r.stderr)
