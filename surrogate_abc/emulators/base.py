"""The emulator contract, and the behaviour every emulator shares.

`EmulatorLike` states what the inference machinery relies on (as sbi and zuko state their interfaces): a
protocol (its parameters, observed species and bin edges), a `source` naming it, `metadata`, and the
distribution of binned counts at parameter sets. `EmulatorBase` holds the parts that do not depend on how
the distribution is computed: input checks against the training domain, sampling cells, the flat category
view and numpy/torch conversion. A subclass implements `_flat_probs(theta) -> (n, C)` (bins in C order, then
the overflow mass).
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from ..config import Protocol as ProtocolConfig
from ..errors import UserError


@runtime_checkable
class EmulatorLike(Protocol):
    """What `infer`, the checks and the benchmarks use of an emulator (neural or exact)."""

    protocol: ProtocolConfig
    source: str

    @property
    def metadata(self) -> Mapping[str, Any]: ...

    @property
    def param_names(self) -> tuple[str, ...]: ...

    @property
    def species(self) -> tuple[str, ...]: ...

    @property
    def edges(self) -> tuple[np.ndarray, ...]: ...

    @property
    def domain(self) -> np.ndarray: ...

    def pmf(self, theta: Any, allow_extrapolation: bool = False) -> tuple[Any, Any]: ...

    def category_probs(self, theta: Any, categories: Any, allow_extrapolation: bool = False) -> np.ndarray: ...

    def sample_counts(self, theta: Any, n_cells: int, rng: np.random.Generator,
                      allow_extrapolation: bool = False) -> tuple[np.ndarray, np.ndarray]: ...

    def uncertainty(self, theta: Any, allow_extrapolation: bool = False) -> Any: ...

    def check_domain(self, theta: Any, allow_extrapolation: bool = False) -> np.ndarray: ...


class EmulatorBase:
    """Shared behaviour; subclasses set `protocol`, `source`, `metadata` and implement `_flat_probs`."""

    protocol: ProtocolConfig
    source: str = ""
    metadata: dict[str, Any]

    # ------------------------------------------------------------------ descriptive
    @property
    def param_names(self) -> tuple[str, ...]:
        return self.protocol.param_names

    @property
    def species(self) -> tuple[str, ...]:
        return self.protocol.species

    @property
    def edges(self) -> tuple[np.ndarray, ...]:
        """Bin edges per observed species, in axis order."""
        return tuple(np.asarray(a.edges, dtype=np.float64) for a in self.protocol.axes)

    @property
    def domain(self) -> np.ndarray:
        """(d, 2) box of the training prior's support."""
        return self.protocol.bounds()

    @property
    def bins(self) -> tuple[int, ...]:
        return tuple(a.bins for a in self.protocol.axes)

    @property
    def n_categories(self) -> int:
        """Histogram bins plus the overflow."""
        return int(np.prod(self.bins)) + 1

    # ------------------------------------------------------------------ checks
    def check_domain(self, theta: Any, allow_extrapolation: bool = False) -> np.ndarray:
        """theta as a float64 (n, d) array; UserError for a wrong shape, non-finite values or (unless
        allow_extrapolation, which warns instead) a row outside the training domain."""
        arr = np.asarray(theta, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        d = len(self.param_names)
        if arr.ndim != 2 or arr.shape[1] != d:
            raise UserError(f"theta has shape {tuple(np.shape(theta))} but the emulator expects (n, {d}) with columns "
                            f"{', '.join(self.param_names)}")
        if not np.all(np.isfinite(arr)):
            i, j = np.argwhere(~np.isfinite(arr))[0]
            raise UserError(f"parameter {self.param_names[j]} = {arr[i, j]} (row {i}) is not finite")
        box = self.domain
        out = (arr < box[:, 0]) | (arr > box[:, 1])
        if out.any():
            i, j = np.argwhere(out)[0]
            msg = (f"emulator {self.source or self.protocol.name}: parameter {self.param_names[j]} = {arr[i, j]:.6g} "
                   f"(row {i}) is outside the emulator's training domain [{box[j, 0]:.6g}, {box[j, 1]:.6g}] "
                   f"({int(out.any(axis=1).sum())} of {len(arr)} rows outside)")
            if not allow_extrapolation:
                raise UserError(msg + "; restrict the prior to the domain, or pass allow_extrapolation=True to "
                                "evaluate anyway")
            log10 = np.array([t == "log10" for t in self.protocol.transforms()])
            if np.any(arr[:, log10] <= 0):
                raise UserError(msg + f"; {self.param_names[j]} must be > 0 (log10 input transform)")
            warnings.warn(msg + "; extrapolating", stacklevel=3)
        return arr

    # ------------------------------------------------------------------ distributions
    def _flat_probs(self, arr: np.ndarray) -> np.ndarray:
        """(n, C) float64 probabilities (bins in C order, then the overflow): non-negative, rows summing to 1."""
        raise NotImplementedError

    @staticmethod
    def _as_numpy(theta: Any) -> tuple[Any, bool]:
        if type(theta).__module__.startswith("torch"):
            return theta.detach().cpu().numpy(), True
        return theta, False

    def pmf(self, theta: Any, allow_extrapolation: bool = False) -> tuple[Any, Any]:
        """(probs (n, B) | (n, B1, B2), overflow (n,)): numpy float64 in/out, or torch in -> torch out."""
        arr, is_torch = self._as_numpy(theta)
        y = self._flat_probs(self.check_domain(arr, allow_extrapolation))
        probs, over = y[:, :-1].reshape((len(y),) + self.bins), y[:, -1].copy()
        if is_torch:
            return self._torch_out(probs, theta), self._torch_out(over, theta)
        return probs, over

    def _torch_out(self, values: np.ndarray, theta: Any) -> Any:
        """A result for a torch caller: theta's dtype and device (neural emulators: float64 on their device)."""
        import torch  # only for torch callers

        return torch.as_tensor(values, dtype=theta.dtype, device=theta.device)

    def category_probs(self, theta: Any, categories: Any, allow_extrapolation: bool = False) -> np.ndarray:
        """Probabilities (n, k) of the flat categories (bins in C order, then the overflow) at theta."""
        arr = self.check_domain(theta, allow_extrapolation)
        cats = self._categories(categories)
        return self._flat_probs(arr)[:, cats]

    def _categories(self, categories: Any) -> np.ndarray:
        cats = np.asarray(categories, dtype=np.int64).reshape(-1)
        if cats.size and (cats.min() < 0 or cats.max() >= self.n_categories):
            raise UserError(f"categories must lie in [0, {self.n_categories}), got {cats.min()}..{cats.max()}")
        return cats

    def sample_counts(self, theta: Any, n_cells: int, rng: np.random.Generator,
                      allow_extrapolation: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Histogram counts of n_cells cells per row: (counts (n, B...) int64, overflow_counts (n,) int64)."""
        if int(n_cells) != n_cells or n_cells < 0:
            raise UserError(f"n_cells must be a non-negative integer, got {n_cells!r}")
        arr, _ = self._as_numpy(theta)
        y = self._flat_probs(self.check_domain(arr, allow_extrapolation))
        counts = rng.multinomial(int(n_cells), y).astype(np.int64)
        return counts[:, :-1].reshape((len(y),) + self.bins), counts[:, -1].copy()

    def uncertainty(self, theta: Any, allow_extrapolation: bool = False) -> Any:
        """(n,) spread of an ensemble's members; zeros for a single model or an exact one."""
        arr, is_torch = self._as_numpy(theta)
        u = self._spread(self.check_domain(arr, allow_extrapolation))
        return self._torch_out(u, theta) if is_torch else u

    def _spread(self, arr: np.ndarray) -> np.ndarray:
        return np.zeros(len(arr))
