"""Capture efficiency as a rate: for networks whose observed molecules are Poisson given the unobserved species
(networks/poisson_capture.py), binomial capture c of every observed species is the same network with its birth
rate v scaled to c v. `RateCapture` wraps an emulator of such a network (of one or several species, e.g. the
joint nascent x mature RNA of `telegraph_splicing`) and gives the observed counts' law exactly.

* One efficiency c: the wrapped emulator at c v. Where c v falls below the emulator's training range [low, high]
  (small v, or a cell seen little), the law at c v is the law at `low` thinned by c v / low on every axis (the
  same identity read backwards), and the wrapped emulator thins its own law (`thinned_flat_probs`: for the
  conditional MDN a binomial kernel on its first factor's integers and thinned components of its second).
* One efficiency per species (c_1, c_2: `--capture 0.3,0.2` with --layers): the law at c_max v (or at low), each
  species j then thinned by c_j v over that rate.

So the true v keeps the emulator's prior. An emulator that cannot thin (`can_thin` false) is only rate-scaled:
the true v's prior then starts at low / c (with a prior on c, at low / c_low), and one efficiency per species is
refused. `scale` multiplies c as in capture.CapturedEmulator (per-cell size factors), min(scale c, 1).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from ..config.protocol import Prior
from ..errors import UserError
from ..networks.poisson_capture import capture_rate
from .base import EmulatorBase
from .capture import CAPTURE, check_capture, efficiency

EXACT = 1.0 - 1e-12  # a thinning factor at least this is 1 (no kernel)


class RateCapture(EmulatorBase):
    """The observed-count law of `inner` under binomial capture, as `inner` at the scaled birth rate (see the
    module docstring). `capture`: one efficiency, or one per observed species."""

    def __init__(self, inner: Any, capture: float | Sequence[float] | None = None,
                 prior: tuple[float, float] | None = None, scale: float = 1.0):
        values = None if capture is None else tuple(float(c) for c in np.atleast_1d(np.asarray(capture, float)))
        for c in values or ():
            check_capture(c, prior)
        if values is None and prior is None:
            raise UserError("a RateCapture needs a capture efficiency or a prior for it")
        if prior is not None:
            check_capture(None, prior)
        species = tuple(inner.species)
        if values is not None and len(values) not in (1, len(species)):
            raise UserError(f"--capture {','.join(f'{c:g}' for c in values)}: give one efficiency, or one per "
                            f"observed species ({', '.join(species)})")
        rate = capture_rate(inner.protocol)
        if rate is None:
            raise UserError(f"emulator {inner.source}: capture efficiency is exact only for one observed species or "
                            "for networks whose observed molecules are made at one rate and then only move on "
                            "alone (e.g. telegraph_splicing)")
        if CAPTURE in inner.param_names:
            raise UserError(f"emulator {inner.source} already has a parameter named {CAPTURE!r}")
        self.inner, self.prior, self.scale, self.rate = inner, prior, float(scale), rate
        self.given = capture  # as the caller gave it (one value or one per species)
        self.capture = None if values is None else max(values)
        rel = np.ones(1) if values is None else np.array(values) / max(values)
        self.relative = np.broadcast_to(rel, (len(species),)).copy()  # each species' efficiency over the largest
        self._col = inner.param_names.index(rate)
        self._low = next(p.low for p in inner.protocol.priors if rate in p.names)
        self.thins = bool(getattr(inner, "can_thin", False))
        if not self.thins and np.any(self.relative < EXACT):
            raise UserError(f"emulator {inner.source}: one efficiency per species needs an emulator that thins its "
                            "own law (a conditional MDN); give one --capture")
        self.protocol = dataclasses.replace(inner.protocol, priors=self._priors())
        what = f"~ U({prior[0]:g}, {prior[1]:g})" if prior is not None else ",".join(f"{c:g}" for c in values or ())
        self.source = f"{inner.source} with capture {what} (as {rate} x capture)" + \
            (f" x {scale:.4g}" if scale != 1.0 else "")
        self.metadata = dict(inner.metadata)

    def _priors(self) -> tuple[Prior, ...]:
        priors = []
        for p in self.inner.protocol.priors:
            if self.rate in p.names and not self.thins:  # c v must reach the emulator's range: the true v starts higher
                c_low = min((self.capture if self.capture is not None else self.prior[0]) * self.scale, 1.0)  # type: ignore[index]
                if p.low / c_low >= p.high:
                    raise UserError(f"capture {c_low:g}: the emulator covers {self.rate} in [{p.low:g}, {p.high:g}], "
                                    f"so no true {self.rate} is left once scaled by the capture; raise --capture")
                p = dataclasses.replace(p, low=p.low / c_low)
            priors.append(p)
        if self.prior is not None:
            priors.append(Prior("uniform", (CAPTURE,), float(self.prior[0]), float(self.prior[1])))
        return tuple(priors)

    @property
    def sha256(self) -> str | None:
        return getattr(self.inner, "sha256", None)

    def at_scale(self, scale: float) -> RateCapture:
        """The same capture for cells of size factor `scale` (per-cell capture's efficiency nodes)."""
        return RateCapture(self.inner, self.given, self.prior, scale)

    def wrapping(self, inner: Any) -> RateCapture:
        """The same capture around another emulator of the network (the exact check's FSP one)."""
        return RateCapture(inner, self.given, self.prior, self.scale)

    def plan(self, theta: np.ndarray, eff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inner parameter sets (n, d), thinning factor of each axis (n, species)) of the observed law at the
        true parameter sets `theta` (n, d) when a molecule is detected with probability eff (n,) (x relative)."""
        inner = np.array(theta, dtype=np.float64)
        seen = inner[:, self._col] * eff
        at = np.maximum(seen, self._low) if self.thins else seen
        inner[:, self._col] = at
        return inner, (seen / at)[:, None] * self.relative[None, :]

    def flat_probs_at(self, theta: np.ndarray, eff: np.ndarray) -> np.ndarray:
        """(n, C) flat probabilities at true parameter sets theta (n, d) with efficiencies eff (n,)."""
        inner, q = self.plan(theta, eff)
        need = np.any(q < EXACT, axis=1)
        out = np.empty((len(inner), self.n_categories))
        if (~need).any():
            probs, over = self.inner.pmf(inner[~need])
            out[~need] = np.concatenate([np.asarray(probs).reshape(len(probs), -1), np.asarray(over)[:, None]], 1)
        if need.any():
            out[need] = self.inner.thinned_flat_probs(inner[need], q[need])
        return out

    def _eff(self, arr: np.ndarray) -> np.ndarray:
        return efficiency(arr, len(self.inner.param_names), self.capture, self.scale)

    def category_probs(self, theta: Any, categories: Any, allow_extrapolation: bool = False) -> np.ndarray:
        arr = self.check_domain(theta, allow_extrapolation)
        cats = self._categories(categories)
        d = len(self.inner.param_names)
        inner, q = self.plan(arr[:, :d], self._eff(arr))
        thin = np.any(q < EXACT, axis=1)
        out = np.empty((len(arr), len(cats)))
        if (~thin).any():
            out[~thin] = self.inner.category_probs(inner[~thin], cats, allow_extrapolation)
        if thin.any():
            fn = getattr(self.inner, "thinned_category_probs", None)
            out[thin] = (fn(inner[thin], q[thin], cats) if fn is not None else
                         self.inner.thinned_flat_probs(inner[thin], q[thin])[:, cats])
        return out

    def _flat_probs(self, arr: np.ndarray) -> np.ndarray:
        return self.flat_probs_at(arr[:, :len(self.inner.param_names)], self._eff(arr))

