"""The `simulate` stage: SSA (gillespy2 C++), exact FSP, closed-form and generating-function (gene model) engines,
resumable HDF5 output, MPI.

Submodules are imported on first use (module __getattr__): importing the package stays cheap, so the
top-level package can load it before binding the function `surrogate_abc.simulate` (see api.py).
"""
from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "RunSettings": "results",
    "SetResult": "results",
    "beta_poisson_bins": "marginal_bins",
    "check_output_path": "runner",
    "resolve_engine": "engines",
    "run_simulation": "runner",
    "SSASimulator": "ssa",
    "count_grid": "ssa",
    "sampling_interval": "ssa",
    "set_seed": "ssa",
    "set_seeds": "ssa",
}


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
