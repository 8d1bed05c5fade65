"""Emulator: the user-facing object wrapping a trained network with its protocol and input scaling.

    em = load_emulator("protein.safetensors")
    probs, overflow = em.pmf(theta)            # theta (n, d) numpy -> numpy float64; torch -> torch
    counts, over = em.sample_counts(theta, n_cells=1000, rng=np.random.default_rng(0))

pmf is batched (one forward pass per chunk of 65536 rows), runs under torch.no_grad() in the network's dtype
(float32; float64 for a reference copy made with model.double()) on the emulator's device and is returned in
float64, renormalised so each row (bins + overflow) sums to 1.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from ..config import Protocol
from ..data.scaling import TRANSFORMS, features
from ..errors import UserError
from .base import EmulatorBase

CHUNK_ROWS = 65536       # at most this many rows per forward pass
CHUNK_ELEMENTS = 1 << 21  # ... and about this many elements per intermediate tensor (cache-friendly, bounded memory)
DEVICE_CHUNK_ROWS, DEVICE_CHUNK_ELEMENTS = 1 << 20, 1 << 27  # on an accelerator: large passes, few launches


def _non_negative(y: np.ndarray) -> np.ndarray:
    """y with NaN and negative entries set to 0, in place (y is the caller's own array: _probs made it): one pass
    of fmax (which takes the number where the other is NaN), and infinities made finite only where the sum shows
    one."""
    np.fmax(y, 0.0, out=y)
    if not np.isfinite(y.sum()):
        np.nan_to_num(y, copy=False)
    return y


class Emulator(EmulatorBase):
    """A trained network plus everything needed to evaluate it on raw parameters."""

    def __init__(self, model: nn.Module, protocol: Protocol, scaling_mean: ArrayLike,
                 scaling_std: ArrayLike, transforms: Sequence[str], metadata: Mapping[str, Any] | None = None,
                 source: str = ""):
        self.model = model.eval()
        self.protocol = protocol
        self.source = source
        self.scaling_mean = np.asarray(scaling_mean, dtype=np.float64).reshape(-1)
        self.scaling_std = np.asarray(scaling_std, dtype=np.float64).reshape(-1)
        self.transforms = tuple(str(t) for t in transforms)
        self.metadata = dict(metadata or {})
        d = len(protocol.param_names)
        if not (len(self.scaling_mean) == len(self.scaling_std) == len(self.transforms) == d):
            raise ValueError(f"scaling mean/std/transforms need {d} entries (one per parameter), got "
                             f"{len(self.scaling_mean)}, {len(self.scaling_std)}, {len(self.transforms)}")
        bad = [t for t in self.transforms if t not in TRANSFORMS]
        if bad:
            raise ValueError(f"unknown transform {bad[0]!r}; use one of {', '.join(TRANSFORMS)}")
        if np.any(~np.isfinite(self.scaling_std)) or np.any(self.scaling_std <= 0):
            raise ValueError(f"scaling std must be finite and > 0, got {self.scaling_std}")

    @property
    def device(self) -> torch.device:
        p = next(iter(self.model.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> "Emulator":
        """Move the network to `device`; returns self."""
        self.model.to(device)
        return self

    def _torch_out(self, values: np.ndarray, theta: Any) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values)).to(self.device)

    # ------------------------------------------------------------------ evaluation
    def features(self, theta: np.ndarray) -> np.ndarray:
        """Scaled network inputs (n, d) float64: (transform(theta) - mean) / std."""
        return features(theta, self.scaling_mean, self.scaling_std, self.transforms)

    def _flat_probs(self, arr: np.ndarray) -> np.ndarray:
        """The pmf (bins, then the overflow). On the CPU, networks whose category_probs computes each category
        exactly (`exact_overflow`: Gamma-Poisson mixtures, each bin's mass walked in float64 and the overflow
        from the components' tails) give every category that way, faster than their forward pass's integer grid
        and without its float32 floors (1 - sum for the overflow, ~1e-38 on small masses); others (and every
        network on an accelerator) run forward()."""
        if self.device.type == "cpu" and getattr(self.model, "exact_overflow", False):
            cats = np.arange(self.n_categories)
            return self._probs(arr, "category_probs", torch.as_tensor(cats), normalise=True,
                               rows=self._category_rows(cats))
        return self._probs(arr)

    @property
    def can_thin(self) -> bool:
        """Whether `thinned_flat_probs` applies (mixtures of count components; see the model's `thinned`)."""
        return hasattr(self.model, "thinned") and bool(getattr(self.model, "thins", True))

    def thinned_flat_probs(self, arr: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """(n, C) probabilities of the counts after binomial thinning (each molecule detected with probability
        beta (n,), or (n, species) for a joint model), exact for mixtures of count components (their thinned
        components stay in the family)."""
        if not self.can_thin:
            raise UserError(f"emulator {self.source or self.protocol.name}: capture efficiency is applied exactly to "
                            f"mixtures of count components (MDN emulators); a {type(self.model).__name__} cannot; "
                            "drop --capture/--capture-prior or use an MDN emulator")
        b = np.asarray(beta, np.float64).reshape(len(arr), -1)  # one column, or one per species (a joint model)
        return self._probs(arr, "thinned", row_args=(b[:, 0] if b.shape[1] == 1 else b,))

    def _probs(self, arr: np.ndarray, fn: str = "forward", *args: Any, row_args: tuple[np.ndarray, ...] = (),
               rows: int | None = None, normalise: bool | None = None) -> np.ndarray:
        """Run the network in chunks (of `rows`, default chunk_rows()); float64 (n, C) probabilities renormalised to
        sum to 1 (or the output of the model's method `fn`, called as fn(x, *row_args chunked as x, *args),
        renormalised when `normalise`; by default forward and thinned are)."""
        x_all = self.features(arr)
        dev = self.device
        dtype = next(iter(self.model.parameters()), torch.empty(0)).dtype  # float32; float64 after model.double()
        rows = rows or self.chunk_rows()
        outs = []
        with torch.no_grad():
            for s in range(0, max(len(x_all), 1), rows):
                x = torch.as_tensor(x_all[s:s + rows], dtype=dtype, device=dev)
                extra = [torch.as_tensor(a[s:s + rows], dtype=dtype, device=dev) for a in row_args]
                y = self.model(x) if fn == "forward" else getattr(self.model, fn)(x, *extra, *args)
                outs.append(y.to(torch.float64).cpu().numpy())
        y = np.concatenate(outs, axis=0) if outs else np.zeros((0, self.n_categories))
        if not (fn in ("forward", "thinned") if normalise is None else normalise):
            return y
        if y.shape[1] != self.n_categories:
            raise ValueError(f"network returned {y.shape[1]} categories, the protocol's bins give {self.n_categories}")
        y = _non_negative(y)
        total = y.sum(axis=1, keepdims=True)
        bad = total[:, 0] <= 0
        if bad.any():  # degenerate output: put all mass on overflow rather than divide by zero
            y[bad] = 0.0
            y[bad, -1] = 1.0
            total[bad] = 1.0
        y /= total
        return y

    def chunk_rows(self) -> int:
        """Rows per forward pass: CHUNK_ROWS, fewer when one row needs much work (model.work_per_row())."""
        per_row = getattr(self.model, "work_per_row", lambda: self.n_categories)()
        return self._rows_for(int(per_row))

    def _rows_for(self, per_row: int) -> int:
        """Rows per pass for a given work per row: cache-sized on the CPU, large on an accelerator."""
        cpu = self.device.type == "cpu"
        rows, elements = (CHUNK_ROWS, CHUNK_ELEMENTS) if cpu else (DEVICE_CHUNK_ROWS, DEVICE_CHUNK_ELEMENTS)
        return int(min(rows, max(1, elements // max(per_row, 1))))

    def _category_rows(self, cats: np.ndarray) -> int | None:
        """Rows per pass of the model's category_probs on `cats` (its category_work), or None: chunk_rows()."""
        per_row = getattr(self.model, "category_work", lambda _c: None)(cats)
        return self._rows_for(int(per_row)) if per_row else None

    def _full_pass(self, cats: np.ndarray, method: str) -> bool:
        """Whether the categories need the full pass: the network has no `method`, or the overflow is asked and
        the network cannot compute it on its own (`exact_overflow`)."""
        over = bool(np.any(cats == self.n_categories - 1))
        return not hasattr(self.model, method) or (over and not getattr(self.model, "exact_overflow", False))

    def category_probs(self, theta: Any, categories: Any, allow_extrapolation: bool = False) -> np.ndarray:
        """Probabilities (n, k) of the flat categories (histogram bins in C order, then the overflow) at theta:
        the rows of pmf flattened, at those columns. Networks that can (the conditional MDN) compute only what
        those categories need, much faster for a likelihood of observed data; others run the full pass.
        Unlike pmf the rows are not renormalised (differences are float rounding, ~1e-7)."""
        arr = self.check_domain(theta, allow_extrapolation)
        cats = self._categories(categories)
        if self._full_pass(cats, "category_probs"):
            return self._probs(arr)[:, cats]
        y = self._probs(arr, "category_probs", torch.as_tensor(cats, device=self.device),
                        rows=self._category_rows(cats))
        return _non_negative(y)

    def thinned_category_probs(self, arr: np.ndarray, beta: np.ndarray, categories: Any) -> np.ndarray:
        """category_probs of the counts after binomial thinning (detection probability beta (n,)) at parameter
        sets arr (n, d), already checked against the domain; only what the categories need, where the network can."""
        cats = self._categories(categories)
        if self._full_pass(cats, "thinned_category_probs"):
            return self.thinned_flat_probs(arr, beta)[:, cats]
        b = np.asarray(beta, np.float64).reshape(len(arr), -1)  # one column, or one per species (a joint model)
        y = self._probs(arr, "thinned_category_probs", torch.as_tensor(cats, device=self.device),
                        row_args=(b[:, 0] if b.shape[1] == 1 else b,), rows=self._category_rows(cats))
        return _non_negative(y)

    def _spread(self, arr: np.ndarray) -> np.ndarray:
        """Mean Hellinger distance between ensemble members and the combined prediction; zeros for one model."""
        if hasattr(self.model, "uncertainty"):
            return self._probs(arr, fn="uncertainty")
        return np.zeros(len(arr))

    def __repr__(self) -> str:
        arch = getattr(self.model, "architecture", lambda: {"type": type(self.model).__name__})()
        return (f"Emulator({arch.get('type')}, protocol={self.protocol.name}, params={','.join(self.param_names)}, "
                f"bins={self.bins}, device={self.device})")
