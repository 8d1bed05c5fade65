"""HDF5 layouts of surrogate-abc's files, and the checks that open them.

Simulation file (written by `surrogate-abc simulate`), format "surrogate-abc/simulation":
  attrs   format, format_version, package_version, protocol, network, engine, seed, samples, n,
          species (observed, axis order), param_names, rate_names, config_toml, network_toml (the whole
          [network] table, so the file loads without the network file), complete (bool), command
  theta       (n, d)  float64   free parameters (attrs: names)
  rates       (n, r)  float64   rates actually used (attrs: names)
  initial     (n, s)  int64     initial counts of all network species (attrs: names)
  seeds       (n,)    uint64    per-set SSA seed (derived from --seed and the set index only)
  done        (n,)    bool      per-set completion mask (resumable runs)
  wall_time   (n,)    float64   seconds spent on each set
  grid        (n, K) | (n, Km, Kp)   per-set distribution on the integer support 0..cap-1 of each
              observed species: int64 counts (ssa) or float64 probabilities (fsp, pgf, and exact for
              closed-form laws of reaction networks); for the toy Gaussian mixture ('exact'), float64 bin masses on
              edges/x.   attrs: kind = counts|pmf|binned_pmf
  overflow    (n,)    float64   mass beyond the support: number of samples (ssa) or probability (fsp, pgf, exact)
  tail_mass   (n,)    float64   fsp: estimated probability outside the FSP truncation, which could not be placed;
                                pgf: estimated largest absolute error of one probability
  truncation  (n, m)  int64     fsp: state-space box used (states per reduced species; 0 for a species outside
                                the sub-chain solved when the observed species and what drives them form one)
  raw         (n, S, k) int32   ssa with --keep-raw: the sampled time series of the observed species
  edges/<species>               binned_pmf grids only (the toy): the bin edges grid cells refer to
While a run is in progress the file is `<out>.partial`; it is renamed to `<out>` once every set is done.

Binned file (written by `surrogate-abc bin`), format "surrogate-abc/binned":
  attrs   format, format_version, package_version, protocol, network, engine, species, param_names,
          config_toml, network_toml, samples, source_file, source_sha256
  theta       (n, d)  float64
  hist        (n, B) | (n, Bm, Bp) float64  probability per bin; hist.sum() + overflow == 1 per row
  overflow    (n,)    float64   probability beyond the last edge (or below the first) of any axis
  tail_mass   (n,)    float64   copied from fsp and pgf data (zeros otherwise)
  edges/<species>     float64   bin edges; a value x is in bin i when edges[i] <= x < edges[i+1]
  scaling/mean, scaling/std (d,) float64  statistics of the emulator input features
              (attrs: transforms, one per parameter: 'log10' or 'identity', applied before scaling)
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import h5py

from .. import __version__
from ..errors import DataFileError

SIMULATION_FORMAT = "surrogate-abc/simulation"
BINNED_FORMAT = "surrogate-abc/binned"
FORMAT_VERSION = 1


def partial_path(path: str | os.PathLike) -> Path:
    """Where an in-progress simulation lives until it is complete."""
    p = Path(path)
    return p.with_name(p.name + ".partial")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def open_ours(path: str | os.PathLike, fmt: str, required: Iterable[str] = (), mode: str = "r") -> h5py.File:
    """Open an HDF5 file of ours, checking format, version and datasets; DataFileError names the problem."""
    p = Path(path)
    what = {SIMULATION_FORMAT: "simulation output of `surrogate-abc simulate`",
            BINNED_FORMAT: "binned data from `surrogate-abc bin`"}.get(fmt, fmt)
    if not p.exists():
        hint = ""
        if fmt == SIMULATION_FORMAT and partial_path(p).exists():
            hint = f" ({partial_path(p)} exists: the run is unfinished; rerun the same simulate command to complete it)"
        raise DataFileError(f"{p}: file not found{hint}")
    try:
        f = h5py.File(p, mode)
    except OSError as exc:
        raise DataFileError(f"{p}: not a readable HDF5 file ({str(exc).splitlines()[0][:120]}); "
                            f"expected {what}") from None
    try:
        got = f.attrs.get("format")
        got = got.decode() if isinstance(got, bytes) else got
        if got != fmt:
            raise DataFileError(f"{p}: attribute 'format' is {got!r}, expected {fmt!r}; this is not {what}")
        ver = int(f.attrs.get("format_version", -1))
        if ver != FORMAT_VERSION:
            raise DataFileError(f"{p}: format_version {ver} is not supported (this is surrogate-abc {__version__}, "
                                f"format_version {FORMAT_VERSION}); regenerate the file")
        for name in required:
            if name not in f:
                raise DataFileError(f"{p}: dataset '{name}' is missing; the file is truncated or was not "
                                    f"written by surrogate-abc; regenerate it")
    except DataFileError:
        f.close()
        raise
    except Exception as exc:  # h5py raises assorted errors on truncated files
        f.close()
        raise DataFileError(f"{p}: cannot read ({type(exc).__name__}: {exc}); the file is damaged; regenerate it") from None
    return f


def attr_str(f: h5py.File | h5py.Dataset, key: str, default: str = "") -> str:
    """A string attribute, decoded."""
    v = f.attrs.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def attr_list(f: h5py.File | h5py.Dataset, key: str) -> list[str]:
    """A list-of-strings attribute, decoded."""
    return [x.decode() if isinstance(x, bytes) else str(x) for x in f.attrs.get(key, [])]
