"""The binning of mixture-density emulators: component families' masses summed into histogram bins.

`mixture_probs` turns (log_weights, params) of a family (`families.py`) into the bin masses of the mixture,
plus an overflow column; `Binning` describes the bins (edges per axis, the integer support of count data).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..errors import UserError
from .families import (  # noqa: F401
    FAMILIES,
    PARAM_MAX,
    PARAM_MIN,
    BivariateDMGammaPoissonFamily,
    GammaPoissonFamily,
    GaussianFamily,
    PoissonLogNormalFamily,
    get_family,
    lambertw_exp,
    log1mexp,
    log_rising_rel,
    log_rising_rel_grid,
    nb_log_pmf,
    positive,
)


# ----------------------------------------------------------------------------------------- binning
def _bin_index(edges: np.ndarray, n_support: int) -> np.ndarray:
    """Bin of each integer 0..n_support-1 (edges[i] <= k < edges[i+1]); len(edges) - 1 means outside."""
    k = np.arange(n_support, dtype=float)
    idx = np.searchsorted(edges, k, side="right") - 1
    nb = len(edges) - 1
    return np.where((idx < 0) | (idx >= nb), nb, idx).astype(np.int64)


class Binning:
    """Histogram geometry of one protocol: real edges per axis, and for count data the integer support
    0..cap-1 (cap = ceil(last edge)) with the integer -> bin index maps (index B = not in any bin)."""

    def __init__(self, edges: Sequence, counts: bool = True, species: Sequence[str] | None = None,
                 device: torch.device | str | None = None):
        edges = [np.asarray(e, dtype=np.float64) for e in edges]
        if not 1 <= len(edges) <= 2:
            raise UserError(f"a binning needs 1 or 2 axes, got {len(edges)}")
        for e in edges:
            if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0):
                raise UserError("bin edges must be strictly increasing 1-D arrays with >= 2 values")
            if counts and e[0] < 0:
                raise UserError(f"count bin edges must start at >= 0, got {e[0]}")
        self.edges_np = tuple(edges)
        self.counts = bool(counts)
        self.species = tuple(species) if species is not None else tuple(f"axis{i}" for i in range(len(edges)))
        self.shape = tuple(len(e) - 1 for e in edges)
        self.support = tuple(int(math.ceil(e[-1])) for e in edges) if counts else ()
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.edges = tuple(torch.as_tensor(e, device=device) for e in edges)
        self.index = (tuple(torch.as_tensor(_bin_index(e, s), device=device) for e, s in zip(edges, self.support))
                      if counts else ())

    @classmethod
    def from_protocol(cls, protocol, device: torch.device | str | None = None) -> "Binning":
        """From a Protocol's axes (count axes have a cap; the toy Gaussian axes do not)."""
        counts = all(a.cap is not None for a in protocol.axes)
        return cls([a.edges for a in protocol.axes], counts=counts, species=[a.species for a in protocol.axes],
                   device=device)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def n_bins(self) -> int:
        """Number of bins (product over axes)."""
        return int(np.prod(self.shape))

    @property
    def n_categories(self) -> int:
        """Columns of mixture_probs: bins + overflow."""
        return self.n_bins + 1

    @property
    def device(self) -> torch.device:
        return self.edges[0].device

    def to(self, device: torch.device | str) -> "Binning":
        """A copy with its tensors on `device`."""
        return Binning(self.edges_np, self.counts, self.species, device=device)

    def __repr__(self) -> str:
        return f"Binning(shape={self.shape}, counts={self.counts}, support={self.support}, device={self.device})"


def _check(family, binning: Binning) -> None:
    if family.event_dim != binning.ndim:
        raise UserError(f"component family {family.name} is {family.event_dim}-D but the histogram has "
                        f"{binning.ndim} axes ({', '.join(binning.species)}); choose a "
                        f"{'bivariate' if binning.ndim == 2 else 'univariate'} family")
    if getattr(family, "discrete", True) and not binning.counts:
        raise UserError(f"component family {family.name} models counts but the histogram axes are real-valued; "
                        "use the gaussian family")


def _sum_into(values: torch.Tensor, index: torch.Tensor, n_bins: int, dim: int) -> torch.Tensor:
    """Sum `values` along `dim` into n_bins + 1 slots by `index` (the last slot collects 'outside')."""
    shape = list(values.shape)
    shape[dim] = n_bins + 1
    out = values.new_zeros(shape)
    return out.index_add(dim, index, values)


def sum_into_bins(pmf: torch.Tensor, index: torch.Tensor, n_bins: int) -> torch.Tensor:
    """(n, n_bins) bin masses of 1-D pmfs (n, S) on the integers 0..S-1 (index: their bins; n_bins = outside)."""
    return _sum_into(pmf, index, n_bins, dim=1)[:, :-1]


def mixture_probs(family, log_weights: torch.Tensor, params: torch.Tensor, binning: Binning) -> torch.Tensor:
    """Bin masses of the mixture (n, C = prod(bins) + 1), last column the overflow mass; rows sum to 1.

    log_weights (n, K) (log-normalised here, so logits are fine too); params (n, K, raw_size) are
    constrained parameters (family.constrain output). Count families: the mixture pmf on 0..cap-1 is
    summed into bins with index_add and overflow = max(1 - sum of bins, 0). Gaussian: bin masses by
    stable CDF differences and the overflow (below the first and beyond the last edge) computed directly."""
    _check(family, binning)
    log_w = torch.log_softmax(log_weights, dim=-1)
    n = log_w.shape[0]
    if not family.discrete:
        log_bins, log_out = family.log_bin_mass(params, binning.edges[0])
        bins = torch.exp(torch.logsumexp(log_w[..., None] + log_bins, dim=-2))
        over = torch.exp(torch.logsumexp(log_w + log_out, dim=-1))
        return torch.cat([bins, over[:, None]], dim=1)
    chunk = max(1, chunk_elements(log_w.device) // (log_w.shape[1] * int(np.prod(binning.support))))
    bins = torch.cat([_count_bins(family, log_w[i:i + chunk], params[i:i + chunk], binning)
                      for i in range(0, n, chunk)]) if n else params.new_zeros((0, binning.n_bins))
    over = (1.0 - bins.sum(dim=1)).clamp(min=0.0)
    return torch.cat([bins, over[:, None]], dim=1)


def thinned_mixture_probs(family, log_weights: torch.Tensor, params: torch.Tensor, beta: torch.Tensor,
                          binning: Binning) -> torch.Tensor:
    """mixture_probs of the counts after binomial thinning (each molecule detected with probability beta (n,)):
    exact, since each count family's thinned component is a component of the same family (`family.thin`)."""
    return mixture_probs(family, log_weights, thinned_params(family, params, beta), binning)


def thinned_params(family, params: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The components' parameters after binomial thinning with detection probability beta (n,) (`family.thin`)."""
    if not hasattr(family, "thin"):
        raise UserError(f"component family {family.name} has no exact binomial thinning; capture efficiency needs "
                        "count components (gamma_poisson, poisson_lognormal)")
    return family.thin(params, beta.to(params.dtype))


_CHUNK_ELEMENTS = 1 << 17  # rows of mixture_probs are processed in chunks of ~128k grid values (cache-sized)
_DEVICE_CHUNK_ELEMENTS = 1 << 26  # on an accelerator: ~64M values (256 MB in float32), few large kernels


def chunk_elements(device: torch.device) -> int:
    """Grid values per chunk of mixture_probs: cache-sized on the CPU; on an accelerator large, since each chunk
    is a handful of kernel launches (a CPU-sized chunk of ~10 rows made the CUDA pmf launch-bound)."""
    return _CHUNK_ELEMENTS if device.type == "cpu" else _DEVICE_CHUNK_ELEMENTS


def log_tiny(dtype: torch.dtype) -> float:
    """1 + log of the smallest normal number of a float dtype (-86.3 for float32, -707.4 for float64): exp of
    anything above it is a normal number (exp at the exact log(tiny) can round to a subnormal)."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


def mixture_pmf_grid(family, log_w: torch.Tensor, params: torch.Tensor, support: Sequence[int]) -> torch.Tensor:
    """pmf of a count-family mixture on its integer grid: log_w (..., K), params (..., K, R) -> (..., *support).

    sum_k w_k p_k(x) directly: every term is <= 1, so exp cannot overflow (cheaper than logsumexp). Terms are
    clamped at `log_tiny` first: exp of a far-tail value (-400, say) takes the CPU's subnormal slow path, ~10x
    slower, for a contribution below 1e-38 (float32) anyway; so the result is >= ~1e-38, never 0."""
    if hasattr(family, "log_pmf_grid"):
        logp = family.log_pmf_grid(params, *support)
    else:
        logp = family.log_pmf(params, *[torch.arange(s, device=params.device) for s in support])
    z = (logp + log_w.reshape(log_w.shape + (1,) * len(support))).clamp_(min=log_tiny(logp.dtype))
    return torch.exp(z).sum(dim=-(len(support) + 1))


def _count_bins(family, log_w: torch.Tensor, params: torch.Tensor, binning: Binning) -> torch.Tensor:
    """Bin masses (n, prod(bins)) of a count-family mixture: pmf on the integer grid, summed into bins."""
    n = log_w.shape[0]
    pmf = mixture_pmf_grid(family, log_w, params, binning.support)
    if family.event_dim == 1:
        return _sum_into(pmf, binning.index[0], binning.shape[0], dim=1)[:, :-1]
    bins = _sum_into(pmf, binning.index[1], binning.shape[1], dim=2)[:, :, :-1]
    bins = _sum_into(bins, binning.index[0], binning.shape[0], dim=1)[:, :-1, :]
    return bins.reshape(n, -1)
