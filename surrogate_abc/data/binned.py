"""The `bin` stage: turn a complete simulation file into normalised histograms (the binned file).

Layouts are those of surrogate_abc.data.schema. Per parameter set, the stored per-integer grid is
re-binned onto the histogram edges:
  counts (ssa)      -> bin counts / samples
  pmf (fsp)         -> exact PMF summed into bins, divided by the stored total (grid + overflow)
  binned_pmf (toy)  -> copied (toy data is stored pre-binned on its edges)
Overflow = stored overflow + mass outside the edges, divided by the same normaliser; every row
satisfies hist.sum() + overflow == 1 (checked to 1e-9). Sets are processed in blocks, so files with
1e5 sets never need to be in memory at once, and the output is written to a temporary file in the
target directory that is renamed only when complete.

Under mpiexec (PMI_SIZE / OMPI_COMM_WORLD_SIZE > 1) rank 0 does all the work (binning is I/O-bound
and the numba kernels already use every core of rank 0's node); ranks > 0 return None at once.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..config import Protocol, parse_protocol
from ..errors import DataFileError, UserError
from .scaling import transform
from .schema import BINNED_FORMAT, FORMAT_VERSION, SIMULATION_FORMAT, attr_list, attr_str, file_sha256, open_ours

GRID_KINDS = ("counts", "pmf", "binned_pmf")
BLOCK_BYTES = 64 << 20  # grid bytes read per block
MAX_BINS_PER_AXIS = 100_000
SUM_TOL = 1e-9


# ----------------------------------------------------------------------------------- edges
def parse_edges_option(text: str, species: tuple[str, ...]) -> list[np.ndarray]:
    """Parse --edges: 'start:stop:width' per species, comma-separated in axis order."""
    want = len(species)
    fmt = ",".join(["start:stop:width"] * want)
    segs = [s.strip() for s in text.split(",")]
    if len(segs) != want:
        raise UserError(f"--edges {text!r}: expected {want} comma-separated segment(s) '{fmt}' "
                        f"(one per species: {', '.join(species)}), got {len(segs)}")
    out = []
    for sp, seg in zip(species, segs):
        parts = seg.split(":")
        try:
            start, stop, width = (float(p) for p in parts)
            if len(parts) != 3:
                raise ValueError
        except ValueError:
            raise UserError(f"--edges {text!r}: segment {seg!r} for {sp} must be three numbers "
                            f"'start:stop:width', e.g. '0:300:3'") from None
        if not all(math.isfinite(v) for v in (start, stop, width)) or width <= 0 or stop <= start:
            raise UserError(f"--edges {text!r}: segment {seg!r} for {sp} needs finite numbers with width > 0 "
                            f"and stop > start")
        nb = round((stop - start) / width)
        if not math.isclose(nb * width, stop - start, rel_tol=1e-9):
            raise UserError(f"--edges {text!r}: segment {seg!r} for {sp}: (stop - start) must be a multiple "
                            f"of width")
        if nb > MAX_BINS_PER_AXIS:
            raise UserError(f"--edges {text!r}: segment {seg!r} for {sp} gives {nb} bins; at most "
                            f"{MAX_BINS_PER_AXIS} per axis")
        out.append(start + width * np.arange(nb + 1, dtype=float))
    return out


# ----------------------------------------------------------------------------------- source
@dataclass(frozen=True)
class SimulationInfo:
    """What bin_file needs to know about a validated, complete simulation file."""

    path: Path
    protocol: Protocol
    engine: str
    kind: str
    species: tuple[str, ...]
    n: int
    caps: tuple[int, ...]
    samples: int
    stored_edges: tuple[np.ndarray, ...] | None


def inspect_simulation(path: Path, f: h5py.File) -> SimulationInfo:
    """Validate an open simulation file (complete, consistent shapes) and describe it."""
    if not bool(f.attrs.get("complete", False)):
        raise DataFileError(f"{path}: simulation is incomplete (attribute complete=False); rerun the same "
                            f"`surrogate-abc simulate` command to finish it, then bin the completed file")
    done = np.asarray(f["done"][()], dtype=bool)
    if not done.all():
        raise DataFileError(f"{path}: only {int(done.sum())} of {done.size} sets are done; rerun the same "
                            f"`surrogate-abc simulate` command to finish it")
    text = attr_str(f, "config_toml")
    if not text:
        raise DataFileError(f"{path}: attribute config_toml is missing; regenerate the file with `surrogate-abc simulate`")
    protocol = parse_protocol(text, source=f"{path} (attribute config_toml)", network_toml=attr_str(f, "network_toml"))
    kind = attr_str(f["grid"], "kind")
    if kind not in GRID_KINDS:
        raise DataFileError(f"{path}: dataset grid has kind {kind!r}, expected one of {', '.join(GRID_KINDS)}; "
                            f"regenerate the file")
    species = tuple(attr_list(f, "species")) or protocol.species
    if species != protocol.species:
        raise DataFileError(f"{path}: attribute species {species} differs from the protocol's histogram axes "
                            f"{protocol.species}; the file is inconsistent; regenerate it")
    grid, theta = f["grid"], f["theta"]
    n = done.size
    if grid.ndim != 1 + len(species) or grid.shape[0] != n or theta.shape != (n, len(protocol.param_names)) \
            or f["overflow"].shape != (n,):
        raise DataFileError(f"{path}: dataset shapes grid {grid.shape}, theta {theta.shape}, overflow "
                            f"{f['overflow'].shape} do not match {n} sets, species {', '.join(species)} and "
                            f"parameters {', '.join(protocol.param_names)}; regenerate the file")
    stored = None
    if kind == "binned_pmf":
        try:
            stored = tuple(np.asarray(f[f"edges/{s}"][()], dtype=float) for s in species)
        except KeyError:
            raise DataFileError(f"{path}: dataset edges/{species[0]} is missing (required for binned_pmf data); "
                                f"regenerate the file") from None
        if tuple(len(e) - 1 for e in stored) != grid.shape[1:]:
            raise DataFileError(f"{path}: grid shape {grid.shape} does not match edges/{species[0]}; regenerate the file")
    samples = int(f.attrs.get("samples", 0))
    return SimulationInfo(path, protocol, attr_str(f, "engine"), kind, species, n, tuple(grid.shape[1:]),
                          samples, stored)


def choose_edges(info: SimulationInfo, edges_option: str | None) -> list[np.ndarray]:
    """Edges from --edges or the protocol, checked against the stored support (cap) of each axis."""
    if info.kind == "binned_pmf":
        assert info.stored_edges is not None
        if edges_option is not None:
            wanted = parse_edges_option(edges_option, info.species)
            same = all(a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-12)
                       for a, b in zip(wanted, info.stored_edges))
            if not same:
                raise UserError(f"--edges {edges_option!r}: toy ('{info.engine}') data is stored pre-binned on its "
                                f"edges and cannot be re-binned; rerun simulate with the wanted [histogram] edges "
                                f"in the protocol")
        return list(info.stored_edges)
    if edges_option is not None:
        edges, where = parse_edges_option(edges_option, info.species), "--edges"
        for sp, e in zip(info.species, edges):
            if e[0] < 0:
                raise UserError(f"--edges {edges_option!r}: count edges for {sp} must start at >= 0, got {e[0]:g}")
    else:
        edges, where = [a.edges for a in info.protocol.axes], f"{info.path}: protocol [histogram] edges"
    for sp, e, cap in zip(info.species, edges, info.caps):
        if e[-1] > cap:
            raise UserError(f"{where}: last edge {e[-1]:g} of {sp} exceeds the stored support cap {cap} (counts "
                            f"0..{cap - 1} are stored, mass at >= {cap} only in total); use edges ending at <= {cap}, "
                            f"or rerun simulate with [histogram.{sp}] cap >= {math.ceil(e[-1])}")
    return [np.asarray(e, dtype=float) for e in edges]


# ----------------------------------------------------------------------------------- block maths
def bin_block(grid: np.ndarray, overflow: np.ndarray, tail: np.ndarray, kind: str, edges: list[np.ndarray],
              samples: int, first_set: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Normalised histograms (m, *B) and overflow (m,) for one block of sets; DataFileError on bad data.

    pmf rows must hold total probability (grid + overflow) within 1e-6 + tail_mass of 1; they are
    divided by that total, so the FSP's unplaced tail mass is spread proportionally.
    """
    from .binning import rebin_grid, rebin_grid_2d  # numba: imported only once there is work to do

    overflow = np.asarray(overflow, dtype=float)
    flat = grid.reshape(grid.shape[0], -1)
    bad = ~np.isfinite(flat).all(axis=1) | (flat < -1e-12).any(axis=1) | ~np.isfinite(overflow) | (overflow < 0)
    if bad.any():
        i = first_set + int(np.flatnonzero(bad)[0])
        raise DataFileError(f"{path}: set {i} has negative or non-finite values in grid/overflow; regenerate the file")
    if kind == "binned_pmf":
        hist, over = np.asarray(grid, dtype=float), overflow
    else:
        g = np.clip(grid, 0, None) if kind == "pmf" else grid
        hist, extra = rebin_grid(g, edges[0]) if len(edges) == 1 else rebin_grid_2d(g, edges[0], edges[1])
        total = flat.sum(axis=1, dtype=float) + overflow
        if kind == "counts":
            wrong = (total != samples) if samples > 0 else (total <= 0)
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                raise DataFileError(f"{path}: set {first_set + i} has {total[i]:.0f} samples in grid + overflow but "
                                    f"attribute samples is {samples}; the file is inconsistent; regenerate it")
        else:
            wrong = ~(total > 0) | (np.abs(total - 1.0) > 1e-6 + tail)
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                raise DataFileError(f"{path}: set {first_set + i} has total probability {total[i]:.9g} in grid + "
                                    f"overflow (expected 1); regenerate the file")
        shape = (-1,) + (1,) * len(edges)
        hist = hist / total.reshape(shape)
        over = (overflow + extra) / total
    err = np.abs(hist.reshape(hist.shape[0], -1).sum(axis=1) + over - 1.0)
    if not (err <= SUM_TOL).all():
        i = int(np.argmax(err))
        raise DataFileError(f"{path}: set {first_set + i}: histogram + overflow differs from 1 by {err[i]:.3g} "
                            f"(tolerance {SUM_TOL:g}); the data are inconsistent; regenerate the file")
    return hist, over


def feature_scaling(theta: np.ndarray, transforms: tuple[str, ...], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (d,) over sets of the emulator input features (log10 or identity per column).

    A zero std (a constant column, or a single set) is stored as 1 so that scaling never divides by 0.
    """
    theta = np.asarray(theta, dtype=float)
    for j, t in enumerate(transforms):
        if t == "log10" and np.any(theta[:, j] <= 0):
            raise DataFileError(f"{path}: theta column {j} must be > 0 for its log10 transform; regenerate the file")
    feats = transform(theta, transforms)
    if not np.isfinite(feats).all():
        raise DataFileError(f"{path}: theta has non-finite values; regenerate the file")
    mean, std = feats.mean(axis=0), feats.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


# ----------------------------------------------------------------------------------- output
def _mpi_rank() -> int:
    """This process's MPI rank when launched by mpiexec with > 1 rank, else 0 (mpi4py is not imported)."""
    for size_key, rank_key in (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK")):
        if int(os.environ.get(size_key, "1") or 1) > 1:
            return int(os.environ.get(rank_key, "0") or 0)
    return 0


def _temp_output(out: Path, data: Path) -> Path:
    """Check the output path and return a temp path next to it (created, so writability is proven)."""
    if out.resolve() == data.resolve():
        raise UserError(f"--out {out}: is the input file; choose a different output path")
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory; give a file name such as {out / 'binned.h5'}")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: directory {out.parent} does not exist; create it or choose another path")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        tmp.touch()
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write in {out.parent} ({exc.strerror}); choose a writable path") from None
    return tmp


def bin_file(data: Path, out: Path, edges: str | None = None, *, block_rows: int | None = None) -> str | None:
    """Bin a complete simulation file into a binned file; returns a one-line summary (None on MPI ranks > 0)."""
    if _mpi_rank() > 0:
        return None
    data, out = Path(data), Path(out)
    with open_ours(data, SIMULATION_FORMAT, required=("theta", "grid", "overflow", "done")) as src:
        try:
            info = inspect_simulation(data, src)
        except (OSError, KeyError, ValueError) as exc:
            raise DataFileError(f"{data}: cannot read ({type(exc).__name__}: {exc}); the file is damaged; "
                                f"regenerate it") from None
        bin_edges = choose_edges(info, edges)
        tmp = _temp_output(out, data)
        try:
            summary = _write_binned(src, info, bin_edges, tmp, out, block_rows)
            os.replace(tmp, out)
        except (OSError, KeyError, RuntimeError) as exc:
            tmp.unlink(missing_ok=True)
            raise DataFileError(f"{data}: cannot read ({type(exc).__name__}: {exc}); the file is damaged; "
                                f"regenerate it") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return summary


def _write_binned(src: h5py.File, info: SimulationInfo, edges: list[np.ndarray], tmp: Path, out: Path,
                  block_rows: int | None) -> str:
    proto, n = info.protocol, info.n
    bins = tuple(len(e) - 1 for e in edges)
    theta = np.asarray(src["theta"][()], dtype=float)
    mean, std = feature_scaling(theta, proto.transforms(), info.path)
    tail_src = src["tail_mass"] if "tail_mass" in src else None
    row_bytes = max(1, int(np.prod(info.caps)) * src["grid"].dtype.itemsize)
    rows = block_rows or max(1, min(n, BLOCK_BYTES // row_bytes))
    sum_over, max_tail = 0.0, 0.0
    with h5py.File(tmp, "w") as f:
        attrs = {
            "format": BINNED_FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__,
            "protocol": proto.name, "network": attr_str(src, "network", proto.network.name), "engine": info.engine,
            "species": list(info.species), "param_names": list(proto.param_names), "config_toml": proto.toml_text, "network_toml": proto.network_toml,
            "samples": info.samples, "source_file": str(info.path.resolve()),
            "source_sha256": file_sha256(info.path), "grid_kind": info.kind,
        }
        for k, v in attrs.items():
            f.attrs[k] = v
        th = f.create_dataset("theta", data=theta)
        th.attrs["names"] = list(proto.param_names)
        hist = f.create_dataset("hist", shape=(n,) + bins, dtype="f8")
        over = f.create_dataset("overflow", shape=(n,), dtype="f8")
        tail = f.create_dataset("tail_mass", shape=(n,), dtype="f8")
        for sp, e in zip(info.species, edges):
            f.create_dataset(f"edges/{sp}", data=e)
        sc = f.create_group("scaling")
        for key, arr in (("mean", mean), ("std", std)):
            sc.create_dataset(key, data=arr).attrs["transforms"] = list(proto.transforms())
        sc.attrs["transforms"] = list(proto.transforms())
        sc.attrs["param_names"] = list(proto.param_names)
        for lo in range(0, n, rows):
            hi = min(n, lo + rows)
            t = np.asarray(tail_src[lo:hi], dtype=float) if tail_src is not None else np.zeros(hi - lo)
            h, o = bin_block(src["grid"][lo:hi], src["overflow"][lo:hi], t, info.kind, edges, info.samples, lo,
                             info.path)
            hist[lo:hi], over[lo:hi], tail[lo:hi] = h, o, t
            sum_over += float(o.sum())
            max_tail = max(max_tail, float(t.max(initial=0.0)))
    shape = " x ".join(f"{b} {sp}" for b, sp in zip(bins, info.species))
    return (f"binned {n} sets ({info.engine}, {info.kind}) into {shape} bins; mean overflow {sum_over / max(n, 1):.3g}, "
            f"max tail mass {max_tail:.3g} -> {out}")
