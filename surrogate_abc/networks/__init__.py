"""Networks as data: the [network] table, network files, SBML import, conservation laws, closed forms."""
from __future__ import annotations

from typing import Union

from .closed_form import ClosedForm, find_closed_form
from .conservation import ConservationLaw
from .gaussian import GaussianMixtureNetwork
from .gene import BIRTH_DEATH, GENE, gene_means
from .reaction import (
                       AffineReaction,
                       LatticeReaction,
                       MassActionNetwork,
                       Reaction,
                       ReactionNetwork,
                       ensure_scons_on_path,
)
from .registry import get_network, load_network_file, network_names, resolve_network
from .table import parse_network_table

Network = Union[ReactionNetwork, GaussianMixtureNetwork]

__all__ = [
    "AffineReaction",
    "BIRTH_DEATH",
    "ClosedForm",
    "ConservationLaw",
    "GENE",
    "GaussianMixtureNetwork",
    "LatticeReaction",
    "MassActionNetwork",
    "Network",
    "Reaction",
    "ReactionNetwork",
    "ensure_scons_on_path",
    "find_closed_form",
    "gene_means",
    "get_network",
    "load_network_file",
    "network_names",
    "parse_network_table",
    "resolve_network",
]
