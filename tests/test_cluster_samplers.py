"""The cluster samplers against real engines on this machine: a dask.distributed scheduler with two local worker
processes, and a redis-server with two abc-redis-worker processes. Each gives the posterior of the single-process
sampler within Monte Carlo error, survives losing a worker mid-run, and is shut down by the test."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from scipy import stats

from surrogate_abc.emulators.exact import exact_emulator
from surrogate_abc.inference.run import InferenceSettings, run_chains

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _data(tmp_path):
    from conftest import write_protocol

    em = exact_emulator(str(write_protocol(tmp_path)))
    counts = np.bincount(_CELLS, minlength=120)
    hist = np.concatenate([counts[:50], np.add.reduceat(counts[50:120], np.arange(0, 70, 5))])
    return em, hist, int(counts[120:].sum())


def _quantiles(chain) -> np.ndarray:
    idx = np.random.default_rng(0).choice(len(chain.weights), size=5000, p=chain.weights)
    return np.quantile(chain.params[idx, 0], [0.05, 0.5, 0.95])


def _populations(db: Path) -> int:
    try:
        with sqlite3.connect(db) as con:
            return int(con.execute("select count(*) from populations where t >= 0").fetchone()[0])
    except sqlite3.Error:
        return 0


def _when_running(db: Path, action, timeout: float = 120.0) -> threading.Thread:
    """Call action() once the run has stored its first generation (the run is then mid-way)."""
    def watch():
        end = time.monotonic() + timeout
        while time.monotonic() < end and _populations(db) < 2:
            time.sleep(0.05)
        action()

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    return th


# The exact posterior of the Poisson rate: the cells all lie in unit bins, the prior is log-uniform (density
# 1/a), so a | x ~ Gamma(sum x, rate n) (its truncation to the prior box is negligible).
_CELLS = np.random.default_rng(8).poisson(7.0, 300)
EXACT = stats.gamma(a=_CELLS.sum(), scale=1.0 / len(_CELLS)).ppf([0.05, 0.5, 0.95])


QS = np.array([0.05, 0.5, 0.95])
_POSTERIOR = stats.gamma(a=_CELLS.sum(), scale=1.0 / len(_CELLS))


def _mc_error(ess: float) -> np.ndarray:
    """Standard error of the 5%, 50% and 95% quantiles of a weighted sample of effective size ess from the exact
    posterior: sqrt(q (1 - q) / ess) / density at the quantile."""
    return np.sqrt(QS * (1 - QS) / max(float(ess), 1.0)) / _POSTERIOR.pdf(EXACT)


def _agree(reference: np.ndarray, other: np.ndarray, ess: Sequence[float], tol: float = 0.3) -> None:
    """Quantiles (5%, 50%, 95%) within Monte Carlo error: `tol` of the 90% interval width (weighted 5% and 95%
    quantiles of population-200 runs were seen up to 0.22 widths from the exact ones), or 3.5 standard errors of
    the final populations' ESS (`ess`: one per noisy side) where a run's last generation kept few particles."""
    width = reference[2] - reference[0]
    se = np.sqrt(sum(_mc_error(e) ** 2 for e in ess))
    allowed = np.maximum(tol * width, 3.5 * se)
    assert np.all(np.abs(other - reference) < allowed), (reference, other, ess)


@pytest.fixture(scope="module")
def single_reference(tmp_path_factory):
    """The single-process sampler's posterior quantiles, themselves checked against the exact posterior: each
    cluster sampler is compared with both."""
    tmp = tmp_path_factory.mktemp("single")
    em, hist, over = _data(tmp)
    s = InferenceSettings(population=200, generations=5, chains=1, seed=11)
    (chain,) = run_chains([em], hist, over, s, tmp / "abc.db", log=lambda _m: None)
    _agree(EXACT, _quantiles(chain), [chain.ess[-1]])
    return _quantiles(chain), float(chain.ess[-1])


def test_dask_sampler_with_two_worker_processes(tmp_path, single_reference):
    distributed = pytest.importorskip("distributed")
    em, hist, over = _data(tmp_path)
    db = tmp_path / "abc.db"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        assert len(pids) == 2
        killer = _when_running(db, lambda: os.kill(pids[0], signal.SIGKILL))  # dask reschedules its tasks
        s = InferenceSettings(population=200, generations=5, chains=1, seed=12, sampler="dask",
                              scheduler_address=cluster.scheduler_address)
        (chain,) = run_chains([em], hist, over, s, db, log=lambda _m: None)
        killer.join(5)
        assert not killer.is_alive()
        with pytest.raises(ProcessLookupError):
            os.kill(pids[0], 0)  # the first worker is gone: the run finished without it
    assert chain.epsilon[-1] == pytest.approx(1.0)
    _agree(EXACT, _quantiles(chain), [chain.ess[-1]])
    _agree(single_reference[0], _quantiles(chain), [single_reference[1], chain.ess[-1]], tol=0.3 * np.sqrt(2))


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return int(sk.getsockname()[1])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (Debian package "
                    "redis-server; `make test` installs it when run as root)")
def test_redis_sampler_with_two_workers(tmp_path, single_reference):
    pytest.importorskip("redis")
    em, hist, over = _data(tmp_path)
    db = tmp_path / "abc.db"
    port = _free_port()
    server = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        import redis

        r = redis.StrictRedis(port=port)
        for _ in range(100):
            try:
                if r.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.1)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        workers = [subprocess.Popen([str(BIN / "abc-redis-worker"), "--host=localhost", f"--port={port}",
                                     "--runtime=10m", "--processes=1"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        killer = _when_running(db, workers[0].terminate)  # SIGTERM: the worker leaves between two particles
        s = InferenceSettings(population=200, generations=5, chains=1, seed=13, sampler="redis", redis_port=port)
        (chain,) = run_chains([em], hist, over, s, db, log=lambda _m: None)
        killer.join(5)
        assert workers[0].wait(30) is not None and workers[1].poll() is None  # one left, the run went on
    finally:
        for p in [*workers, server]:
            if p.poll() is None:
                p.terminate()
        for p in [*workers, server]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    assert all(p.poll() is not None for p in [*workers, server])
    assert chain.epsilon[-1] == pytest.approx(1.0)
    _agree(EXACT, _quantiles(chain), [chain.ess[-1]])
    _agree(single_reference[0], _quantiles(chain), [single_reference[1], chain.ess[-1]], tol=0.3 * np.sqrt(2))
