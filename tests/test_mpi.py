"""MPI: a 2-rank run (and a killed-and-resumed 2-rank run) equals a 1-rank run; errors do not hang."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from surrogate_abc.data.schema import partial_path
from surrogate_abc.simulate.mpi import SerialComm, get_comm, launched_under_mpi

from conftest import KILL_N, assert_same_results, cli_env, kill_args, kill_when_part_done, popen_cli

MPIEXEC = Path(sys.executable).parent / "mpiexec"
needs_mpiexec = pytest.mark.skipif(not MPIEXEC.exists(), reason=f"mpiexec not found next to the interpreter ({MPIEXEC})")
PREFIX = [str(MPIEXEC), "-n", "2"]


def _mpi_run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*PREFIX, sys.executable, "-m", "surrogate_abc", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_launch_detection_without_mpi() -> None:
    assert not launched_under_mpi({})
    assert not launched_under_mpi({"PMI_SIZE": "1", "PMI_RANK": "0"})
    assert launched_under_mpi({"PMI_SIZE": "2", "PMI_RANK": "1"})
    assert launched_under_mpi({"OMPI_COMM_WORLD_SIZE": "4"})
    comm = get_comm({})
    assert isinstance(comm, SerialComm) and comm.rank == 0 and comm.size == 1
    assert comm.gather(3) == [3] and comm.bcast("x") == "x"


@pytest.mark.mpi
@needs_mpiexec
def test_two_ranks_equal_one_rank(tmp_path: Path, bd_config: Path, bd_reference: Path) -> None:
    out = tmp_path / "m.h5"
    r = _mpi_run(kill_args(bd_config, out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ranks" in r.stdout and r.stdout.count("computed now") == 1  # one summary, from rank 0
    assert_same_results(out, bd_reference)


@pytest.mark.mpi
@needs_mpiexec
def test_two_ranks_killed_then_resumed(tmp_path: Path, bd_config: Path, bd_reference: Path) -> None:
    out = tmp_path / "mk.h5"
    proc = popen_cli(kill_args(bd_config, out), cwd=tmp_path, prefix=PREFIX)
    kill_when_part_done(proc, partial_path(out), KILL_N)
    with h5py.File(partial_path(out), "r") as f:
        done = int(f["done"][...].sum())
        assert 0 < done < KILL_N and not bool(f.attrs["complete"])
    r = _mpi_run(kill_args(bd_config, out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"({KILL_N - done} computed now" in r.stdout
    assert_same_results(out, bd_reference)


@pytest.mark.mpi
@needs_mpiexec
def test_user_error_under_mpi_does_not_hang(tmp_path: Path, bd_config: Path) -> None:
    r = _mpi_run(["simulate", str(bd_config), "--n", "3", "--out", str(tmp_path / "no" / "x.h5")], cwd=tmp_path,
                 timeout=60)
    assert r.returncode != 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr
