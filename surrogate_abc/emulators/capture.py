"""Capture efficiency: observed counts as a binomial thinning of the true counts.

When each molecule of a cell is detected independently with probability beta (smFISH sees nearly all,
beta = 1; scRNA-seq sees a few tens of percent), the observed count of a cell with n molecules is
Binomial(n, beta). `CapturedEmulator` wraps an emulator of the true counts and gives the distribution of the
observed ones, exactly: the wrapped emulator thins its own distribution (`thinned_flat_probs`: a negative
binomial component stays negative binomial with mean beta * mu, a Poisson one Poisson(beta lam), a closed
form scales its rate, an FSP pmf is thinned by the binomial kernel), never by simulating molecules.

beta is either fixed (`capture=0.3`) or a parameter with a uniform prior (`prior=(low, high)`), which
becomes the emulator's last parameter, named `capture`. `scale` multiplies it: the efficiency of cells whose
size factor is `scale` (per-cell capture, inference/transcriptome/efficiency.py), min(scale * beta, 1).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..config.protocol import Prior
from ..errors import UserError
from .base import EmulatorBase

CAPTURE = "capture"


def check_capture(capture: float | Sequence[float] | None, prior: tuple[float, float] | None) -> None:
    """UserError for a capture efficiency (or one per species) or prior outside (0, 1], or both given."""
    if capture is not None and prior is not None:
        raise UserError("--capture and --capture-prior exclude each other: fix beta, or give it a prior")
    for c in np.atleast_1d(np.asarray(capture if capture is not None else [], float)):
        if not 0.0 < c <= 1.0:
            raise UserError(f"--capture {c:g}: the detection probability must lie in (0, 1]")
    if prior is not None:
        lo, hi = prior
        if not 0.0 < lo < hi <= 1.0:
            raise UserError(f"--capture-prior {lo:g}:{hi:g}: needs 0 < LOW < HIGH <= 1")


@runtime_checkable
class CaptureWrapper(Protocol):
    """An emulator of observed counts under capture, around the emulator of the true ones (`inner`):
    CapturedEmulator (one species, its pmf thinned) or rate_capture.RateCapture (the birth rate scaled)."""

    inner: Any
    capture: float | None  # the fixed efficiency (the larger of one per species); None: inferred (`capture`)
    n_categories: int

    def at_scale(self, scale: float) -> Any:
        """The same capture for cells of size factor `scale`."""
        ...

    def flat_probs_at(self, theta: np.ndarray, eff: np.ndarray) -> np.ndarray:
        """(n, C) flat probabilities at true parameter sets theta (n, d) with detection probabilities eff (n,)."""
        ...


def efficiency(arr: np.ndarray, d: int, capture: float | None, scale: float) -> np.ndarray:
    """(n,) detection probability at parameter sets arr (n, d or d + 1): the fixed capture, else the last column
    (the inferred `capture`), times scale, at most 1."""
    beta = np.full(len(arr), float(capture)) if capture is not None else arr[:, d]
    return np.minimum(beta * scale, 1.0)


class CapturedEmulator(EmulatorBase):
    """The observed-count distribution of `inner` under binomial capture (see the module docstring)."""

    def __init__(self, inner: Any, capture: float | Sequence[float] | None = None,
                 prior: tuple[float, float] | None = None, scale: float = 1.0):
        check_capture(capture, prior)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        if capture is None and prior is None:
            raise UserError("a CapturedEmulator needs a capture efficiency or a prior for it")
        given = np.ravel(np.asarray(capture if capture is not None else [], float))
        if len(given) > 1:
            raise UserError(f"--capture {','.join(f'{c:g}' for c in given)}: one efficiency per layer "
                            "applies to two layers (--layers NASCENT,MATURE); give one --capture for one species")
        if len(inner.species) != 1:
            raise UserError(f"emulator {inner.source}: capture efficiency applies to one observed species (mRNA "
                            f"counts); this emulator models {'+'.join(inner.species)}")
        if CAPTURE in inner.param_names:
            raise UserError(f"emulator {inner.source} already has a parameter named {CAPTURE!r}")
        if not hasattr(inner, "thinned_flat_probs"):
            raise UserError(f"emulator {inner.source}: cannot apply capture efficiency exactly")
        self.inner, self.prior, self.scale = inner, prior, float(scale)
        self.capture = None if capture is None else float(np.asarray(capture))
        protocol = inner.protocol
        if prior is not None:
            extra = Prior("uniform", (CAPTURE,), float(prior[0]), float(prior[1]))
            protocol = dataclasses.replace(protocol, priors=tuple(protocol.priors) + (extra,))
        self.protocol = protocol
        what = f"~ U({prior[0]:g}, {prior[1]:g})" if prior is not None else f"{capture:g}"
        self.source = f"{inner.source} with capture {what}" + (f" x {scale:.4g}" if scale != 1.0 else "")
        self.metadata = dict(inner.metadata)

    @property
    def sha256(self) -> str | None:
        return getattr(self.inner, "sha256", None)

    def category_probs(self, theta: Any, categories: Any, allow_extrapolation: bool = False) -> np.ndarray:
        """Probabilities (n, k) of the flat categories: where the inner emulator can (an MDN), only what those
        categories need of the thinned mixture; otherwise the full thinned pmf."""
        fn = getattr(self.inner, "thinned_category_probs", None)
        if fn is None:
            return super().category_probs(theta, categories, allow_extrapolation)
        arr = self.check_domain(theta, allow_extrapolation)
        d = len(self.inner.param_names)
        return fn(arr[:, :d], self._beta(arr), categories)

    def at_scale(self, scale: float) -> CapturedEmulator:
        """The same capture for cells of size factor `scale` (per-cell capture's efficiency nodes)."""
        return CapturedEmulator(self.inner, capture=self.capture, prior=self.prior, scale=scale)

    def flat_probs_at(self, theta: np.ndarray, eff: np.ndarray) -> np.ndarray:
        """(n, C) flat probabilities at true parameter sets theta (n, d) with detection probabilities eff (n,)."""
        return self.inner.thinned_flat_probs(theta, eff)

    def _beta(self, arr: np.ndarray) -> np.ndarray:
        return efficiency(arr, len(self.inner.param_names), self.capture, self.scale)

    def _flat_probs(self, arr: np.ndarray) -> np.ndarray:
        return self.inner.thinned_flat_probs(arr[:, :len(self.inner.param_names)], self._beta(arr))
