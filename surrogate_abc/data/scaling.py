"""The emulator input features: per column a transform ('log10' for log-uniform priors, else 'identity'),
then (value - mean) / std with the scaling stored in every binned and emulator file. One formula, used by
`bin` (to compute the scaling), training and the emulator."""
from __future__ import annotations

from typing import Sequence

import numpy as np

TRANSFORMS = ("identity", "log10")


def transform(theta: np.ndarray, transforms: Sequence[str]) -> np.ndarray:
    """theta (n, d) with each column transformed (log10 or identity); ValueError for an unknown transform."""
    theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    out = theta.copy()
    for j, tr in enumerate(transforms):
        if tr == "log10":
            out[:, j] = np.log10(theta[:, j])
        elif tr != "identity":
            raise ValueError(f"unknown feature transform {tr!r} (expected one of {', '.join(TRANSFORMS)})")
    return out


def features(theta: np.ndarray, mean: np.ndarray, std: np.ndarray, transforms: Sequence[str]) -> np.ndarray:
    """Emulator input features (n, d) float64: (transform(theta) - mean) / std."""
    return (transform(theta, transforms) - mean) / std
