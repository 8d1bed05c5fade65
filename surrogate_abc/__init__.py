"""surrogate-abc: neural emulators of reaction-network count distributions for fast ABC-SMC."""
from __future__ import annotations

__version__ = "0.1.0"

# The subpackage surrogate_abc.simulate (cheap: lazy exports) is loaded first, so that the name `simulate` below
# stays the API function: Python binds a subpackage to its parent's attribute only when it first loads it.
from . import simulate as _simulate_stage  # noqa: F401
from . import tl  # scanpy-style tools on an AnnData (cheap: imports inside its functions)
from .api import attach_marginal, calibrate, infer, infer_differential, infer_genes, load_emulator, simulate, train
from .config import Axis, Prior, Protocol, load_protocol, parse_protocol
from .errors import ConfigError, DataFileError, UserError
from .networks import (
                       BIRTH_DEATH,
                       GENE,
                       GaussianMixtureNetwork,
                       MassActionNetwork,
                       Reaction,
                       ReactionNetwork,
                       get_network,
                       load_network_file,
                       parse_network_table,
)

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
    "attach_marginal",
    "calibrate",
    "Reaction",
    "ReactionNetwork",
    "get_network",
    "infer",
    "infer_differential",
    "infer_genes",
    "load_emulator",
    "load_network_file",
    "load_protocol",
    "parse_network_table",
    "parse_protocol",
    "simulate",
    "tl",
    "train",
]
