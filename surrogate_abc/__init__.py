"""surrogate-abc: neural emulators of reaction-network count distributions for fast ABC-SMC."""
from __future__ import annotations

__version__ = "0.1.0"

from .config import Axis, Prior, Protocol, load_protocol, parse_protocol
from .errors import ConfigError, DataFileError, UserError
from .networks import BIRTH_DEATH, GENE, GaussianMixtureNetwork, MassActionNetwork, get_network

__all__ = [
    "Axis",
    "BIRTH_DEATH",
    "ConfigError",
    "DataFileError",
    "GENE",
    "GaussianMixtureNetwork",
    "MassActionNetwork",
    "Prior",
    "Protocol",
    "UserError",
    "__version__",
    "get_network",
    "load_protocol",
    "parse_protocol",
]
