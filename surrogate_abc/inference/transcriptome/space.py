"""The parameter space of the batch method: the prior box on the sampling scale (log10 for log-uniform
parameters, as pyabc samples them) and the map back to the emulator's natural parameters."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ...emulators.base import EmulatorLike
from ..priors import check_prior_in_domain, prior_box, sampling_name
from .importance import Box


@dataclass(frozen=True)
class ParameterSpace:
    """Names (emulator order), prior kinds and the box on the sampling scale."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, emulator: EmulatorLike, overrides: Mapping[str, tuple[float, float]] | None = None) -> "ParameterSpace":
        """The emulator's prior (narrowed by --prior overrides), checked against its domain."""
        box = prior_box(emulator.protocol, overrides)
        names = tuple(emulator.param_names)
        check_prior_in_domain(box, emulator.domain, names, emulator.source)
        kinds = tuple(box[n][0] for n in names)
        lo = np.array([np.log10(box[n][1]) if k == "loguniform" else box[n][1] for n, k in zip(names, kinds)])
        hi = np.array([np.log10(box[n][2]) if k == "loguniform" else box[n][2] for n, k in zip(names, kinds)])
        return cls(names, kinds, lo, hi)

    @property
    def box(self) -> Box:
        return Box(self.low, self.high)

    @property
    def log10(self) -> np.ndarray:
        return np.array([k == "loguniform" for k in self.kinds])

    @property
    def sampling_names(self) -> tuple[str, ...]:
        return tuple(sampling_name(n, k) for n, k in zip(self.names, self.kinds))

    def natural(self, z: np.ndarray) -> np.ndarray:
        """(n, d) natural-scale parameters of sampling-scale points z, clipped into the prior's box (a log10
        round trip can leave it by one ulp)."""
        z = np.clip(np.asarray(z, float), self.low, self.high)
        return np.where(self.log10, 10.0 ** z, z)
