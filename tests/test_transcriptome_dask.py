"""`surrogate-abc infer TABLE --scheduler` (inference/transcriptome/cluster.py): blocks of genes on dask.distributed
workers give the single-machine run's genes.csv and posterior.nc for the same seed, also when a worker is killed
mid-run; `--scheduler local:2` through the command line; bad values stop with one line and write nothing."""
from __future__ import annotations

import csv
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from surrogate_abc.errors import UserError
from surrogate_abc.inference.transcriptome import BatchSettings, TableRun, infer_transcriptome

from conftest import run_cli, write_protocol, write_table

pytest.importorskip("distributed")

FAST = BatchSettings(shared_sets=1024, ess_target=400, draws=400, ppc_draws=50, block_size=2)  # 8 blocks
QUIET = {"progress": False, "log": lambda _m: None}


@pytest.fixture(autouse=True)
def keep_environ():
    """A LocalCluster's nanny writes its workers' variables (OMP_NUM_THREADS=1, ...) into this process's environment."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


def rows_of(path: Path) -> list[dict[str, str]]:
    """genes.csv's rows without `seconds` (each block's measured time, the one column that may differ)."""
    with path.open() as fh:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]


def draws_of(out: Path) -> np.ndarray:
    import arviz as az

    idata = az.from_netcdf(str(out / "posterior.nc"))
    a = idata.posterior["a"].values.copy()
    idata.close()
    return a


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, TableRun, Path]:
    """16 Poisson genes x 300 cells and their single-machine run (exact likelihood, seed 5)."""
    tmp = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(11)
    table = write_table(tmp / "counts.csv", {f"g{i:02d}": rng.poisson(a, 300)
                                             for i, a in enumerate(rng.uniform(1.0, 30.0, 16))})
    run = TableRun(str(table), f"exact:{write_protocol(tmp)}", seed=5)
    csv_path, _ = infer_transcriptome(run, tmp / "single", FAST, **QUIET)
    return tmp, run, csv_path


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_worker_killed_mid_run_gives_the_single_machine_result(reference):
    from distributed import Client, LocalCluster

    import surrogate_abc as sa

    tmp, run, single = reference
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster, set_as_default=False) as client:
        killed: list[int] = []
        done: list[str] = []

        def log(msg: str) -> None:
            if " done " not in msg:
                return
            done.append(msg)
            if not killed:  # the first block is stored: kill the worker with the most blocks in hand
                busy = client.processing()
                pids = client.run(os.getpid)
                worker = max(busy, key=lambda w: len(busy[w]))
                assert busy[worker], "no block left running to lose"
                os.kill(pids[worker], signal.SIGKILL)
                killed.append(pids[worker])

        csv_path, _ = infer_transcriptome(run, tmp / "dask", FAST, progress=False, log=log,
                                          scheduler=cluster.scheduler_address)
        assert killed and killed[0] not in client.run(os.getpid).values()
        assert len(done) == 8  # every block, those of the killed worker run again
        assert rows_of(csv_path) == rows_of(single)
        np.testing.assert_array_equal(draws_of(tmp / "dask"), draws_of(single.parent))

        table = sa.infer_genes(run.path, run.emulator, tmp / "api", batch=FAST, seed=5, plots=False,
                               scheduler=cluster.scheduler_address)  # the Python API passes it through
        assert rows_of(tmp / "api" / "genes.csv") == rows_of(single) and len(table) == 16


def test_a_local_cluster_leaves_the_environment_as_it_was(reference):
    tmp, run, single = reference
    before = dict(os.environ)
    lines: list[str] = []
    csv_path, _ = infer_transcriptome(run, tmp / "local1", FAST, progress=False, log=lines.append,
                                      scheduler="local:1")
    assert dict(os.environ) == before  # the nanny's OMP_NUM_THREADS=1 and the like stay its workers'
    assert any(m.startswith("dask: a local cluster of 1 worker process(es)") for m in lines)
    assert rows_of(csv_path) == rows_of(single)


def test_local_cluster_through_the_command_line(reference):
    tmp, run, _ = reference
    flags = ["--emulator", str(run.emulator), "--seed", "5", "--ess", "400", "--draws", "400", "--block-size", "3",
             "--quiet", "--no-plots"]
    single, _ = infer_transcriptome(run, tmp / "single_cli", BatchSettings(ess_target=400, draws=400, block_size=3),
                                    **QUIET)  # what the flags mean, in this process
    r = run_cli(["infer", run.path, *flags, "--scheduler", "local:2", "--out", str(tmp / "cli")], cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "dask: a local cluster of 2 worker process(es)" in r.stdout
    assert rows_of(tmp / "cli" / "genes.csv") == rows_of(single)


@pytest.mark.parametrize("value, message", [
    ("localhost:8786", "give tcp://HOST:PORT"),
    ("local:0", "N >= 1"),
    ("local:two", "give tcp://HOST:PORT"),
    ("tcp://127.0.0.1", "give tcp://HOST:PORT"),
    ("tcp://127.0.0.1:99999", "not a TCP port"),
    ("tls://127.0.0.1:8786", "give tcp://HOST:PORT"),
])
def test_bad_scheduler_values_stop_before_anything_is_written(reference, value, message):
    tmp, run, _ = reference
    with pytest.raises(UserError, match=message) as err:
        infer_transcriptome(run, tmp / "bad", FAST, scheduler=value, **QUIET)
    assert str(err.value).startswith(f"--scheduler {value}:") and "\n" not in str(err.value)
    assert not (tmp / "bad").exists()


def test_unreachable_scheduler_and_wrong_method_on_the_command_line(reference):
    tmp, run, _ = reference
    args = ["infer", run.path, "--emulator", str(run.emulator), "--out", str(tmp / "unreachable")]
    r = run_cli([*args, "--scheduler", "tcp://127.0.0.1:1"], cwd=tmp,
                DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")  # nothing listens on port 1
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("surrogate-abc: error: --scheduler tcp://127.0.0.1:1: cannot "
                                                   "reach a dask scheduler"), r.stderr
    assert not (tmp / "unreachable").exists()
    r = run_cli([*args, "--method", "smc", "--scheduler", "local:2"], cwd=tmp)
    assert r.returncode == 2 and r.stderr.strip() == "surrogate-abc: error: --scheduler applies to --method batch"
    assert not (tmp / "unreachable").exists()


@pytest.mark.parametrize("problem", ["missing", "other model"])
def test_a_worker_without_the_clients_emulator_is_one_line(reference, monkeypatch, problem):
    """Workers resolve the emulator themselves: one that cannot, or gets other probabilities, stops the run with
    one line (threads in this process, so the worker's loading can be replaced)."""
    from distributed import LocalCluster

    from surrogate_abc.emulators.resolve import resolve_emulator
    from surrogate_abc.inference.transcriptome import cluster as cl

    tmp, run, _ = reference
    other = write_protocol(tmp, name="other", edges="[{ start = 0, stop = 60, width = 1 }]")

    def load(spec):
        if problem == "missing":
            raise UserError(f"--emulator {spec.emulator}: file not found")
        return resolve_emulator(f"exact:{other}")[0]

    monkeypatch.setattr(cl.ModelSpec, "load", load)
    monkeypatch.setattr(cl, "_LOADED", {})
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster:
        with pytest.raises(UserError, match="a worker cannot run this model") as err:
            infer_transcriptome(run, tmp / f"mismatch-{problem[:5]}", FAST, scheduler=cluster.scheduler_address,
                                **QUIET)
    assert ("file not found" if problem == "missing" else "other probabilities") in str(err.value)
    assert "\n" not in str(err.value)
