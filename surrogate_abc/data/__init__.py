"""HDF5 schema, binning, observed-data loading and validation."""
from .schema import BINNED_FORMAT, FORMAT_VERSION, SIMULATION_FORMAT, file_sha256, open_ours, partial_path

__all__ = ["BINNED_FORMAT", "FORMAT_VERSION", "SIMULATION_FORMAT", "file_sha256", "open_ours", "partial_path"]
