"""Shared fixtures and helpers: tiny birth-death protocols (a fixture, and a log-uniform Poisson one to write),
count tables, and running the CLI in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BIN_DIR = Path(sys.executable).resolve().parent

# Birth-death: Poisson(a/b) stationary law; a is free so each set differs; cap 20 (mean ~5).
BIRTH_DEATH_TOML = """
name = "bd"
network = "birth_death"
samples = 2000
[parameters.a]
prior = "uniform"
low = 4.0
high = 6.0
[fixed]
b = 1.0
[initial]
x = 5
[histogram.x]
edges = { start = 0, stop = 20, width = 1 }
"""


# Small gene model with three free rates (k0, k1, d1), for joint mRNA x protein emulators and their 1-D mRNA
# factor: GENE_TEST_PARAMS holds everything but the name and the protein histogram.
GENE_TEST_PARAMS = """
network = "gene"
[parameters.k0]
prior = "loguniform"
low = 0.1
high = 10.0
[parameters.k1]
prior = "loguniform"
low = 0.1
high = 10.0
[parameters.d1]
prior = "uniform"
low = 0.1
high = 1.0
[fixed]
d0 = 1.0
v0 = 10.0
v1 = 1.0
[histogram.mrna]
edges = { start = 0, stop = 12, width = 3 }
"""
GENE_JOINT_TOML = ('name = "joint_test"\n' + GENE_TEST_PARAMS
                   + '[histogram.protein]\nedges = { start = 0, stop = 15, width = 5 }\n')


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for CLI subprocesses: this interpreter's bin first on PATH, no inherited MPI variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "MPI_LOCALNRANKS", "HYDRA_"))}
    env["PATH"] = os.pathsep.join([str(BIN_DIR), env.get("PATH", "")])
    env.update(extra)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run `python -m surrogate_abc ARGS` and capture its output."""
    return subprocess.run([sys.executable, "-m", "surrogate_abc", *args], cwd=cwd, env=cli_env(**env),
                          capture_output=True, text=True, timeout=timeout)


# A Poisson (birth-death) model of one species named mrna, log-uniform prior: fast exact likelihoods.
POISSON_TOML = """
name = "{name}"
samples = 1000
[network]
species = ["mrna"]
[[network.reactions]]
name = "birth"
reactants = {{}}
products = {{ mrna = 1 }}
rate = "a"
[[network.reactions]]
name = "death"
reactants = {{ mrna = 1 }}
products = {{}}
rate = "b"
[parameters.a]
prior = "loguniform"
low = {low}
high = {high}
[fixed]
b = 1.0
[initial]
mrna = 3
[histogram.mrna]
edges = {edges}
"""


POISSON_EDGES = "[{ start = 0, stop = 50, width = 1 }, { start = 50, stop = 120, width = 5 }]"


def write_protocol(tmp_path: Path, name: str = "pois", high: float = 50.0, low: float = 0.5,
                   edges: str = POISSON_EDGES) -> Path:
    """POISSON_TOML as tmp_path/<name>.toml: prior a ~ log-uniform(low, high), histogram edges `edges` (TOML)."""
    p = tmp_path / f"{name}.toml"
    p.write_text(POISSON_TOML.format(name=name, high=high, low=low, edges=edges))
    return p


def write_table(path: Path, columns: dict[str, np.ndarray], sep: str = ",") -> Path:
    names = list(columns)
    with path.open("w") as fh:
        fh.write(sep.join(names) + "\n")
        for row in zip(*columns.values()):
            fh.write(sep.join(str(int(v)) for v in row) + "\n")
    return path


@pytest.fixture
def bd_config(tmp_path: Path) -> Path:
    """The birth-death protocol written to a file."""
    p = tmp_path / "bd.toml"
    p.write_text(BIRTH_DEATH_TOML)
    return p


# Settings of the kill-and-resume runs (tests/test_simulate_runner.py, tests/test_mpi.py): SSA sets slow
# enough (~0.1-0.3 s each) that a poller sees the file part-done, few enough that a run stays short.
KILL_N, KILL_SAMPLES, KILL_SEED = 10, 20000, 11


def kill_args(config: Path, out: Path) -> list[str]:
    """CLI arguments of the kill-and-resume runs."""
    return ["simulate", str(config), "--n", str(KILL_N), "--samples", str(KILL_SAMPLES), "--seed", str(KILL_SEED),
            "--out", str(out), "--chunk-size", "1", "--quiet"]


@pytest.fixture(scope="session")
def bd_reference(tmp_path_factory) -> Path:
    """An uninterrupted one-process SSA run with the kill-test settings (computed once per session)."""
    d = tmp_path_factory.mktemp("reference")
    cfg = d / "bd.toml"
    cfg.write_text(BIRTH_DEATH_TOML)
    out = d / "ref.h5"
    r = run_cli(kill_args(cfg, out), cwd=d)
    assert r.returncode == 0, r.stderr
    return out


def popen_cli(args: list[str], cwd: Path, prefix: list[str] | None = None) -> subprocess.Popen:
    """Start `[prefix...] python -m surrogate_abc ARGS` in its own process group (so it can be killed whole)."""
    return subprocess.Popen([*(prefix or []), sys.executable, "-m", "surrogate_abc", *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def done_count(partial: Path) -> int | None:
    """Sets marked done in a file another process is writing (read-only, no lock); None if unreadable now."""
    import h5py

    try:
        with h5py.File(partial, "r", locking=False) as f:
            return int(f["done"][...].sum())
    except Exception:
        return None


def descendants(pid: int) -> list[int]:
    """Ids of all processes below `pid` (Linux /proc). MPICH's hydra starts each rank in its own session,
    so killing mpiexec's process group does not reach the ranks."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL a process we started and everything it started (deepest first, the root last)."""
    import signal

    for p in reversed(descendants(pid)):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_when_part_done(proc: subprocess.Popen, partial: Path, n: int, timeout: float = 150) -> int:
    """SIGKILL proc and its descendants once `partial` shows 0 < done < n; returns the done count seen."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"run ended (rc {proc.returncode}) before it could be killed mid-way: {err[-500:]}")
        k = done_count(partial) if partial.exists() else None
        if k is not None and 0 < k < n:
            kill_tree(proc.pid)
            proc.wait(timeout=30)
            proc.communicate()
            return k
        time.sleep(0.02)
    kill_tree(proc.pid)
    proc.wait(timeout=30)
    raise AssertionError("timed out waiting for a part-done .partial file")


def assert_same_results(a: Path, b: Path) -> None:
    """Two simulation files hold the same datasets with equal content (wall_time excepted) and attrs (command excepted)."""
    import h5py

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        assert sorted(names_a) == sorted(names_b)
        for name in names_a:
            if isinstance(fa[name], h5py.Dataset) and name != "wall_time":
                assert np.array_equal(fa[name][...], fb[name][...]), name
        skip = {"command"}
        assert {k for k in fa.attrs if k not in skip} == {k for k in fb.attrs if k not in skip}
        for k in fa.attrs:
            if k not in skip:
                assert np.array_equal(np.asarray(fa.attrs[k]), np.asarray(fb.attrs[k])), k


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` when no CUDA device is present, saying so in the skip reason."""
    import pytest

    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="no CUDA device: GPU test skipped (run on a machine with a GPU)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
