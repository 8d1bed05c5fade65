"""Bin edges: where a bin's mass sits (one convention for observed and emulated histograms)."""
from __future__ import annotations

import numpy as np


def bin_centres(edges: np.ndarray, integer: bool) -> np.ndarray:
    """Mean value of each bin assuming mass spread evenly: over the integers it holds (count data,
    (ceil(a) + ceil(b) - 1) / 2 for [a, b)), or over the interval (continuous data)."""
    e = np.asarray(edges, float)
    if integer:
        return 0.5 * (np.ceil(e[:-1]) + np.ceil(e[1:]) - 1.0)
    return 0.5 * (e[:-1] + e[1:])
