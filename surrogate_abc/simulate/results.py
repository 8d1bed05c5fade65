"""What a simulation run is a function of, and one parameter set's result."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RunSettings:
    """What a simulation file is a function of (besides the protocol)."""

    n: int
    samples: int
    seed: int
    engine: str
    keep_raw: bool


@dataclass
class SetResult:
    """One parameter set's output, as committed to the file."""

    index: int
    grid: np.ndarray
    overflow: float
    wall_time: float
    tail_mass: float = 0.0
    truncation: tuple[int, ...] | None = None
    raw: np.ndarray | None = None
