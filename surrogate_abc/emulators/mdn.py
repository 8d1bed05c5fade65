"""Mixture density network: a dense trunk, a softmax head for the mixture weights and one linear head
for all components' parameters; forward(x) gives the bin masses of the mixture (plus overflow).

The component family (Gaussian, Gamma-Poisson, Poisson-log-normal, bivariate) and the binning come
from surrogate_abc.emulators.distributions; the MDN only produces (log_weights, params).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import distributions
from .bin_masses import nb_mixture_category_masses, nb_mixture_outside
from .layers import DEFAULT_HIDDEN, BinningOnDevice, dense_trunk, resolve_family


class MDN(nn.Module):
    """Mixture density network over a family of count (or real) distributions."""

    def __init__(self, d_in: int, family: Any, n_components: int, binning: Any,
                 hidden: Sequence[int] = DEFAULT_HIDDEN, activation: str = "elu",
                 loc_init: Sequence[float] | None = None):
        """`family`: an instance from distributions (or its name); `loc_init`: optional initial bias of
        the raw parameter head, one value per raw parameter (e.g. a typical location), for faster training."""
        super().__init__()
        self.family = resolve_family(family)
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if binning is None:
            raise ValueError("an MDN needs the histogram's Binning (distributions.Binning.from_protocol)")
        self.d_in, self.n_components = int(d_in), int(n_components)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        self.trunk, width = dense_trunk(self.d_in, self.hidden, activation)
        self.weight_head = nn.Linear(width, self.n_components)
        self.param_head = nn.Linear(width, self.n_components * self.family.raw_size)
        self._binning = BinningOnDevice(binning)
        if loc_init is not None:
            init = torch.as_tensor(list(loc_init), dtype=torch.float32)
            if init.numel() != self.family.raw_size:
                raise ValueError(f"loc_init needs {self.family.raw_size} values (one per raw parameter), got {init.numel()}")
            spread = torch.linspace(-0.25, 0.25, self.n_components).unsqueeze(1)  # components not identical
            with torch.no_grad():
                self.param_head.bias.copy_((init.unsqueeze(0) + spread).reshape(-1))

    @property
    def binning(self) -> Any:
        return self._binning.binning

    def architecture(self) -> dict:
        """JSON-serialisable description; models.build_model rebuilds the module from it."""
        return {"type": "mdn", "d_in": self.d_in, "family": self.family.name, "components": self.n_components,
                "hidden": list(self.hidden), "activation": self.activation}

    def work_per_row(self) -> int:
        """Size of the largest intermediate per input row (components x support points); sets chunk sizes."""
        b = self.binning
        points = int(np.prod(b.support)) if getattr(b, "counts", False) else int(b.n_categories)
        return self.n_components * points

    def category_work(self, categories: np.ndarray) -> int:
        """work_per_row() of category_probs(x, categories): components x the integers up to the last bin asked."""
        b = self.binning
        if not (getattr(b, "counts", False) and len(b.shape) == 1 and len(categories)):
            return self.work_per_row()
        edges = np.asarray(b.edges_np[0])
        return self.n_components * int(np.ceil(edges[min(int(np.max(categories)) + 1, len(edges) - 1)]))

    def mixture(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_weights (n, K), constrained params (n, K, raw_size))."""
        h = self.trunk(x)
        log_w = F.log_softmax(self.weight_head(h), dim=-1)
        raw = self.param_head(h).reshape(x.shape[0], self.n_components, self.family.raw_size)
        return log_w, self.family.constrain(raw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bin probabilities (n, C), last column the overflow mass; rows sum to 1."""
        log_w, params = self.mixture(x)
        return distributions.mixture_probs(self.family, log_w, params, self._binning.on(x.device))

    def category_probs(self, x: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        """forward(x)[:, categories] for bin categories of a 1-D count histogram (not the overflow), with the
        mixture's pmf computed only up to the last bin listed: a gene with few molecules touches a small part of
        the grid, so its likelihood costs that part of a forward pass. Other histograms run forward()."""
        return self._category_probs(x, categories, None)

    def thinned_category_probs(self, x: torch.Tensor, beta: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        """category_probs of the counts after binomial thinning with detection probability beta (n,)."""
        return self._category_probs(x, categories, beta)

    @property
    def exact_overflow(self) -> bool:
        """Whether category_probs takes the overflow category (in float64, from the components' tails): a 1-D
        count histogram of Gamma-Poisson components."""
        b = self.binning
        return bool(getattr(b, "counts", False) and b.ndim == 1 and self.family.name == "gamma_poisson")

    def _category_probs(self, x: torch.Tensor, categories: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor:
        b = self._binning.on(x.device)
        categories = categories.to(device=x.device, dtype=torch.long)
        if not (getattr(b, "counts", False) and b.ndim == 1 and self.family.discrete and self.family.event_dim == 1):
            return (self.forward(x) if beta is None else self.thinned(x, beta))[:, categories]
        n_bins = b.shape[0]
        top = n_bins if self.exact_overflow else n_bins - 1
        if categories.numel() and (int(categories.min()) < 0 or int(categories.max()) > top):
            raise ValueError(f"categories must be bin indices in [0, {top}]"
                             + ("" if self.exact_overflow else " (the overflow needs forward())"))
        over = categories == n_bins
        inside = categories[~over]
        idx = b.index[0]
        log_w, params = self.mixture(x)
        if beta is not None:
            params = distributions.thinned_params(self.family, params, beta)
        if self.family.name == "gamma_poisson":  # each bin's mass by one walk along the integers (bin_masses)
            bins = nb_mixture_category_masses(log_w[:, None], params[:, None, :, 0], params[:, None, :, 1],
                                              np.zeros(inside.numel(), dtype=np.int64), inside.cpu().numpy(),
                                              idx.cpu().numpy(), n_bins)
        else:  # the pmf on the integers up to the last bin asked
            n_sup = int(torch.nonzero(idx <= inside.max()).max()) + 1 if inside.numel() else 1
            pmf = distributions.mixture_pmf_grid(self.family, log_w, params, (n_sup,))
            bins = distributions.sum_into_bins(pmf, idx[:n_sup], n_bins)[:, inside]
        if not bool(over.any()):
            return bins
        out = torch.zeros((x.shape[0], categories.numel()), dtype=torch.float64, device=x.device)
        out[:, ~over] = bins.to(torch.float64)
        out[:, over] = nb_mixture_outside(log_w, params[..., 0], params[..., 1], int(math.ceil(b.edges_np[0][0])),
                                          b.support[0])[:, None]
        return out

    def thinned(self, x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """forward(x) of the counts after binomial thinning with detection probability beta (n,)."""
        log_w, params = self.mixture(x)
        return distributions.thinned_mixture_probs(self.family, log_w, params, beta, self._binning.on(x.device))
