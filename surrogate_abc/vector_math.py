"""float64 exp and log of numpy arrays in place, by torch's vectorised CPU kernels where torch is already loaded
(on AVX2 machines numpy's float64 exp and log run a scalar loop: torch's log is ~1.6x and its exp 2-3x faster,
both within a few ulps), else by numpy's. Nothing here imports torch."""
from __future__ import annotations

import sys

import numpy as np


def _torch_view(a: np.ndarray):
    """A torch tensor sharing a's memory, or None (torch not loaded, an empty or 0-d array, or a layout torch
    cannot view)."""
    torch = sys.modules.get("torch")
    if torch is None or not a.ndim or not a.size or a.dtype != np.float64 or not a.flags.writeable:
        return None
    return torch.from_numpy(a)


def _in_place(a: np.ndarray, name: str) -> np.ndarray:
    """a <- name(a) in place, by torch's tensor method name_ on a view of a, or numpy's ufunc name; returns a."""
    t = _torch_view(a)
    if t is None:
        return getattr(np, name)(a, out=a)
    getattr(t, name + "_")()
    return a


def log_(a: np.ndarray) -> np.ndarray:
    """a <- log(a), in place (a float64 array); returns a."""
    return _in_place(a, "log")


def exp_(a: np.ndarray) -> np.ndarray:
    """a <- exp(a), in place (a float64 array); returns a."""
    return _in_place(a, "exp")
