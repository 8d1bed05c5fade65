"""inference/workers.py: torch's threads for a block, an in-process chain on one thread, and pool workers that
end with their parent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from surrogate_abc.config import load_protocol
from surrogate_abc.emulators.exact import ExactEmulator
from surrogate_abc.inference.run import InferenceSettings, run_chains
from surrogate_abc.inference.workers import torch_threads

from conftest import write_protocol


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_torch_threads_sets_and_restores(two_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2  # restored on the way out of an error too
    with torch_threads(None):
        assert torch.get_num_threads() == 2


def test_an_in_process_chain_evaluates_on_one_thread(tmp_path, two_threads):
    """The single sampler in this process: every emulator call of the chain sees one torch thread (as a forked
    chain does), and the caller's count is back afterwards."""
    em = ExactEmulator(load_protocol(write_protocol(tmp_path)))
    seen: list[int] = []
    for name in ("pmf", "category_probs"):
        inner = getattr(em, name)

        def recording(*args, _inner=inner, **kw):
            seen.append(torch.get_num_threads())
            return _inner(*args, **kw)

        setattr(em, name, recording)
    cells = np.random.default_rng(1).poisson(10.0, 200)
    hist = np.histogram(cells, bins=em.edges[0])[0]
    settings = InferenceSettings(population=100, generations=2, seed=1)
    run_chains([em], hist, 200 - hist.sum(), settings, tmp_path / "abc.db", log=lambda s: None)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2


PARENT = """
import os, sys, time
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from surrogate_abc.inference.workers import die_with_parent
with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=die_with_parent,
                         initargs=(os.getpid(),)) as pool:
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Whether process pid runs (a zombie left for a parent that does not reap it counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_pool_worker_ends_when_its_parent_is_killed():
    """calibrate's and the gene pools' workers outlived a parent killed with SIGKILL (and kept computing)."""
    root = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)})
    worker = None
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the pool's worker outlived its killed parent"
    finally:
        parent.kill()
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_whose_parent_already_ended_ends_at_once():
    """The parent gone before the request took hold (its pid no longer the worker's parent): SIGTERM, as the
    death signal would have sent."""
    root = Path(__file__).resolve().parent.parent
    code = "from surrogate_abc.inference.workers import die_with_parent\ndie_with_parent(1)\nprint('went on')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == -signal.SIGTERM and "went on" not in r.stdout
