"""Reaction networks (the gene model), the toy Gaussian mixture, and parameter protocols."""
from __future__ import annotations

from typing import Any, Union

from .base import AffineReaction, MassActionNetwork, Reaction, ensure_scons_on_path
from .gaussian import GaussianMixtureNetwork
from .gene import BIRTH_DEATH, GENE, gene_means

Network = Union[MassActionNetwork, GaussianMixtureNetwork]

NETWORK_NAMES = ("gene", "birth_death", "gaussian_mixture")


def get_network(name: str, **options: Any) -> Network:
    """Look a network up by name; raises KeyError listing the known names."""
    if name == "gene":
        return GENE
    if name == "birth_death":
        return BIRTH_DEATH
    if name == "gaussian_mixture":
        return GaussianMixtureNetwork(components=int(options.get("components", 3)))
    raise KeyError(f"unknown network {name!r}; known: {', '.join(NETWORK_NAMES)}")


__all__ = [
    "AffineReaction",
    "BIRTH_DEATH",
    "GENE",
    "GaussianMixtureNetwork",
    "MassActionNetwork",
    "NETWORK_NAMES",
    "Network",
    "Reaction",
    "ensure_scons_on_path",
    "gene_means",
    "get_network",
]
