"""What every worker process of inference shares (per-gene ABC-SMC, calibration datasets, forked chains):
one core each, an end when its parent ends, and its warnings brought back to the parent as note lines (the
parent prints each text once)."""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def one_core(environment: bool = False) -> None:
    """Limit this process to one core: torch's threads (when torch is loaded, or importable) and, with
    `environment`, the thread counts that OpenMP, MKL, OpenBLAS and numba read when they start."""
    if environment:
        for k in THREAD_VARIABLES:
            os.environ[k] = "1"
    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:  # pragma: no cover - torch is a dependency
            return
    sys.modules["torch"].set_num_threads(1)


def die_with_parent(parent: int) -> None:
    """End this worker (SIGTERM) when its parent process `parent` ends, however it ends: a pool's workers
    otherwise outlive a parent killed by SIGKILL or the out-of-memory killer and go on with datasets whose results
    nobody collects. Linux (prctl PR_SET_PDEATHSIG, which fires when the thread that started the worker ends: the
    pools here start theirs from the caller's thread); elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return
    if os.getppid() != parent:  # the parent ended before the request took hold: the signal it would have sent
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to n for the block, restored after (None: leave them). A neural emulator's
    float32 kernels round the elements at the seams of their per-thread chunks differently (vectorised vs scalar
    code), so the same thread count is what makes a worker's numbers those of the single-machine run."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_notes(fn: Callable[..., T], *args: Any, category: type[Warning] = Warning) -> tuple[T, list[str]]:
    """(fn(*args), the texts of the warnings of `category` it raised, each once, in order)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args)
    return out, list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, category)))
