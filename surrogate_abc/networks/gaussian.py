"""The thesis' toy testbed: a mixture of Gaussians whose bin probabilities are known exactly."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr


@dataclass(frozen=True)
class GaussianMixtureNetwork:
    """Not a reaction network: a K-component Gaussian mixture with parameters mu_i, sigma_i, w_i."""

    components: int = 3
    name: str = "gaussian_mixture"
    kind: str = "closed_form"
    engines: tuple[str, ...] = ("exact",)
    default_engine: str = "exact"
    default_initial: tuple[tuple[str, int], ...] = ()   # (as reaction networks: nothing to start from)
    default_values: tuple[tuple[str, float], ...] = ()

    @property
    def rate_names(self) -> tuple[str, ...]:
        k = range(1, self.components + 1)
        return tuple([f"mu{i}" for i in k] + [f"sigma{i}" for i in k] + [f"w{i}" for i in k])

    @property
    def species(self) -> tuple[str, ...]:
        return ("x",)

    @property
    def positive(self) -> tuple[str, ...]:
        """Parameters that must be > 0 (sigmas); weights must be >= 0."""
        return tuple(f"sigma{i}" for i in range(1, self.components + 1))

    def bin_probabilities(self, params: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact bin masses by CDF differences. params (n, 3K) in rate_names order.

        Returns (probs (n, B), outside (n,)) with probs.sum(1) + outside == 1.
        """
        params = np.atleast_2d(np.asarray(params, dtype=float))
        K = self.components
        mu, sigma, w = params[:, :K], params[:, K : 2 * K], params[:, 2 * K :]
        w = w / w.sum(axis=1, keepdims=True)
        z = (np.asarray(edges, float)[None, None, :] - mu[:, :, None]) / sigma[:, :, None]
        cdf = np.einsum("nk,nke->ne", w, ndtr(z))
        probs = np.clip(np.diff(cdf, axis=1), 0.0, None)
        return probs, np.clip(1.0 - probs.sum(axis=1), 0.0, None)
