"""inference/workers.py: torch's threads for a block, and an in-process chain on one thread."""
from __future__ import annotations

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
