"""Capture efficiency as a rate: for networks whose observed molecules are Poisson given the unobserved species
(networks/poisson_capture.py), binomial capture c of every observed species is the same network with its birth
rate v scaled to c v. `RateCapture` wraps an emulator of such a network (of one or several species, e.g. the
joint nascent x mature RNA of `telegraph_splicing`) and gives the observed counts' law exactly, by evaluating the
wrapped emulator at c v.

The wrapped emulator knows v on its training box [low, high]; c v must stay in it, so the true v's prior starts at
low / c (with a prior on c, at low / c_low): the printed prior says so. `scale` multiplies c as in
capture.CapturedEmulator (per-cell size factors), min(scale c, 1).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..config.protocol import Prior
from ..errors import UserError
from ..networks.poisson_capture import capture_rate
from .base import EmulatorBase
from .capture import CAPTURE, check_capture, efficiency


class RateCapture(EmulatorBase):
    """The observed-count law of `inner` under binomial capture, as `inner` at the scaled birth rate."""

    def __init__(self, inner: Any, capture: float | None = None, prior: tuple[float, float] | None = None,
                 scale: float = 1.0):
        check_capture(capture, prior)
        if capture is None and prior is None:
            raise UserError("a RateCapture needs a capture efficiency or a prior for it")
        rate = capture_rate(inner.protocol)
        if rate is None:
            raise UserError(f"emulator {inner.source}: capture efficiency is exact only for one observed species or "
                            "for networks whose observed molecules are made at one rate and then only move on "
                            "alone (e.g. telegraph_splicing)")
        if CAPTURE in inner.param_names:
            raise UserError(f"emulator {inner.source} already has a parameter named {CAPTURE!r}")
        self.inner, self.capture, self.prior, self.scale, self.rate = inner, capture, prior, float(scale), rate
        self._col = inner.param_names.index(rate)
        c_low = min((capture if capture is not None else prior[0]) * self.scale, 1.0)  # type: ignore[index]
        priors = []
        for p in inner.protocol.priors:
            if rate in p.names:
                low = p.low / c_low
                if low >= p.high:
                    raise UserError(f"capture {c_low:g}: the emulator covers {rate} in [{p.low:g}, {p.high:g}], so "
                                    f"no true {rate} is left once scaled by the capture; raise --capture")
                p = dataclasses.replace(p, low=low)
            priors.append(p)
        if prior is not None:
            priors.append(Prior("uniform", (CAPTURE,), float(prior[0]), float(prior[1])))
        self.protocol = dataclasses.replace(inner.protocol, priors=tuple(priors))
        what = f"~ U({prior[0]:g}, {prior[1]:g})" if prior is not None else f"{capture:g}"
        self.source = f"{inner.source} with capture {what} (as {rate} x capture)" + \
            (f" x {scale:.4g}" if scale != 1.0 else "")
        self.metadata = dict(inner.metadata)

    @property
    def sha256(self) -> str | None:
        return getattr(self.inner, "sha256", None)

    def _inner_theta(self, arr: np.ndarray) -> np.ndarray:
        d = len(self.inner.param_names)
        theta = np.array(arr[:, :d], dtype=np.float64)
        theta[:, self._col] *= efficiency(arr, d, self.capture, self.scale)
        return theta

    def category_probs(self, theta: Any, categories: Any, allow_extrapolation: bool = False) -> np.ndarray:
        arr = self.check_domain(theta, allow_extrapolation)
        return self.inner.category_probs(self._inner_theta(arr), categories, allow_extrapolation)

    def _flat_probs(self, arr: np.ndarray) -> np.ndarray:
        probs, over = self.inner.pmf(self._inner_theta(arr))
        return np.concatenate([np.asarray(probs).reshape(len(arr), -1), np.asarray(over)[:, None]], axis=1)
