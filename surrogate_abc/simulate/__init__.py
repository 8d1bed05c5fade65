"""The `simulate` stage: SSA (gillespy2 C++), exact FSP and closed-form engines, resumable HDF5 output, MPI.

Submodules are imported on first use (module __getattr__): importing the package stays cheap, so the
top-level package can load it before binding the function `surrogate_abc.simulate` (see api.py).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunSettings": "results",
    "SetResult": "results",
    "check_output_path": "runner",
    "resolve_engine": "engines",
    "run_simulation": "runner",
    "SSASimulator": "ssa",
    "count_grid": "ssa",
    "sampling_interval": "ssa",
    "set_seed": "ssa",
    "set_seeds": "ssa",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
