"""The `simulate` stage: SSA (gillespy2 C++), exact FSP and closed-form engines, resumable HDF5 output, MPI."""
from .runner import RunSettings, SetResult, check_output_path, resolve_engine, run_simulation
from .ssa import SSASimulator, count_grid, sampling_interval, set_seed, set_seeds

__all__ = [
    "RunSettings",
    "SSASimulator",
    "SetResult",
    "check_output_path",
    "count_grid",
    "resolve_engine",
    "run_simulation",
    "sampling_interval",
    "set_seed",
    "set_seeds",
]
