"""Observed single-cell data for inference: loading, validation and binning onto an emulator's edges.

Layout of observed.h5 (no `format` attribute needed): one dataset per observed species, named as the
emulator's protocol names it in [histogram.<species>] (`protein`, `mrna`, or any species of your network):
  <species> (cells,)  non-negative integers   per-cell counts; two such datasets of equal length: joint data
or a pre-binned histogram instead of per-cell counts:
  histogram (B,) | (B1, B2)  non-negative integers: number of cells per bin
  edges     (B+1,)           1-D histograms: the bin edges (attr `species` names the species; default protein)
  edges_<a> (B1+1,), edges_<b> (B2+1,)   2-D histograms: attr `species` = "a,b" gives the axis order
                             (default mrna, protein)
Optional file attributes: true_<param> (the true rates of synthetic data), protocol, description.
A value x is in bin i when edges[i] <= x < edges[i+1]; values outside every bin are the overflow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, SupportsFloat, cast

import h5py
import numpy as np

from ..errors import DataFileError
from ..report import warn
from .edges import bin_centres

# Datasets read as per-cell counts when no emulator names its species: the species of the shipped default
# emulators and the toy birth-death protocols. With an emulator, its protocol's species are read.
COUNT_DATASETS = ("mrna", "protein", "x")


@dataclass
class Observed:
    """Observed data: per-cell counts (cells, k) or a histogram with its edges."""

    path: str
    species: tuple[str, ...]
    n_cells: int
    counts: np.ndarray | None = None  # (cells, k) int64, columns in `species` order
    histogram: np.ndarray | None = None  # (B,) or (Bm, Bp) int64
    edges: tuple[np.ndarray, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)

    def true_params(self) -> dict[str, float]:
        """The true parameter values recorded as attributes true_<name> (synthetic data)."""
        # np.isscalar's guard admits complex, str and bytes too; true_* attributes hold real numbers
        return {k[5:]: float(cast(SupportsFloat, v)) for k, v in self.attrs.items()
                if k.startswith("true_") and np.isscalar(v)}

    def mean(self, species: str) -> float:
        """Mean count of one species (bin centres for histogram data)."""
        j = self.species.index(species)
        if self.counts is not None:
            return float(self.counts[:, j].mean())
        e = self.edges[j]
        centres = bin_centres(e, integer=True)
        hist = self.histogram
        assert hist is not None  # an Observed holds counts or a histogram
        marg = hist.sum(axis=tuple(a for a in range(hist.ndim) if a != j))
        return float((marg * centres).sum() / max(marg.sum(), 1))


def _check_counts(p: Path, name: str, v: np.ndarray) -> np.ndarray:
    if v.ndim != 1:
        raise DataFileError(f"{p}: dataset '{name}' must be 1-D (one count per cell), got shape {v.shape}")
    if v.size == 0:
        raise DataFileError(f"{p}: dataset '{name}' is empty; it needs one count per cell")
    return _check_integers(p, name, v)


def _check_integers(p: Path, name: str, v: np.ndarray) -> np.ndarray:
    if v.dtype.kind not in "iuf":
        raise DataFileError(f"{p}: dataset '{name}' has dtype {v.dtype}; expected integer counts")
    if v.dtype.kind == "f":
        if np.isnan(v).any():
            raise DataFileError(f"{p}: dataset '{name}' contains NaN at index {int(np.flatnonzero(np.isnan(v.ravel()))[0])}; "
                                "remove or fix those cells")
        if not np.isfinite(v).all():
            raise DataFileError(f"{p}: dataset '{name}' contains infinite values; remove those cells")
        frac = v != np.round(v)
        if frac.any():
            raise DataFileError(f"{p}: dataset '{name}' has non-integer counts (e.g. {v.ravel()[frac.ravel()][0]!r}); "
                                "counts must be whole numbers of molecules")
    if (v < 0).any():
        raise DataFileError(f"{p}: dataset '{name}' has negative counts (e.g. {v.ravel()[(v < 0).ravel()][0]}); "
                            "counts must be >= 0")
    return v.astype(np.int64)


def _count_datasets(f: h5py.File, species: Sequence[str] | None) -> list[str]:
    """The per-cell count datasets to read: `species` when the file holds them all, else those of `species` and
    COUNT_DATASETS it holds (so that `select_species` reports a missing species with what the file does hold)."""
    if species is not None and all(s in f and isinstance(f[s], h5py.Dataset) for s in species):
        return list(species)
    names = dict.fromkeys([*(species or ()), *COUNT_DATASETS])
    return sorted(n for n in names if n in f and isinstance(f[n], h5py.Dataset))


def load_observed(path: str | Path, species: Sequence[str] | None = None) -> Observed:
    """Read and validate observed.h5 (layout in the module docstring); DataFileError names the problem.

    `species` (the emulator's observed species) names the datasets to read; without it every per-cell count
    dataset in the file is read."""
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: observed data file not found")
    try:
        f = h5py.File(p, "r")
    except OSError:
        raise DataFileError(f"{p}: not an HDF5 file; observed data must be HDF5 with one dataset of per-cell "
                            "counts per species (e.g. 'protein', and optionally 'mrna') or a 'histogram' with its "
                            "'edges'") from None
    with f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        present = _count_datasets(f, species)
        if present:
            arrays = {n: _check_counts(p, n, np.asarray(f[n][()])) for n in present}
            lengths = {n: len(a) for n, a in arrays.items()}
            if len(set(lengths.values())) > 1:
                desc = ", ".join(f"{n} has {k}" for n, k in lengths.items())
                raise DataFileError(f"{p}: datasets {' and '.join(lengths)} differ in length ({desc} cells); "
                                    "joint data need one (mrna, protein) pair per cell")
            counts = np.stack([arrays[n] for n in present], axis=1)
            return Observed(str(p), tuple(present), len(counts), counts=counts, attrs=attrs)
        if "histogram" in f:
            return _load_histogram(p, f, attrs)
        want = f"per-cell counts named {' and '.join(repr(s) for s in species)}" if species else \
            "per-cell counts (e.g. 'protein', optionally with 'mrna')"
        raise DataFileError(f"{p}: no known dataset (found: {', '.join(f.keys()) or 'none'}); expected {want}, "
                            "or 'histogram' with 'edges'")


def _load_histogram(p: Path, f: h5py.File, attrs: dict) -> Observed:
    hist = np.asarray(f["histogram"][()])
    if hist.size == 0:
        raise DataFileError(f"{p}: dataset 'histogram' is empty")
    if hist.ndim not in (1, 2):
        raise DataFileError(f"{p}: dataset 'histogram' must be 1-D or 2-D (mrna x protein), got shape {hist.shape}")
    hist = _check_integers(p, "histogram", hist)
    if hist.ndim == 1:
        if "edges" not in f:
            raise DataFileError(f"{p}: a 1-D 'histogram' needs its dataset 'edges' ({hist.shape[0] + 1} values)")
        species: tuple[str, ...] = (str(attrs.get("species", "protein")),)
        names: tuple[str, ...] = ("edges",)
    else:
        given = attrs.get("species")
        species = tuple(str(given).split(",")) if given else ("mrna", "protein")
        if len(species) != 2:
            raise DataFileError(f"{p}: attribute species={given!r} must name the two axes of the 2-D 'histogram' "
                                "(e.g. \"mrna,protein\")")
        names = tuple(f"edges_{s}" for s in species)
        for n in names:
            if n not in f:
                raise DataFileError(f"{p}: a 2-D 'histogram' over {species[0]} x {species[1]} needs datasets "
                                    f"{names[0]} and {names[1]}; '{n}' is missing")
    edges = []
    for ax, n in enumerate(names):
        e = np.asarray(f[n][()], dtype=float)
        if e.ndim != 1 or len(e) != hist.shape[ax] + 1:
            raise DataFileError(f"{p}: dataset '{n}' has shape {e.shape} but 'histogram' has {hist.shape[ax]} bins on "
                                f"axis {ax}; it needs {hist.shape[ax] + 1} edges")
        if not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
            raise DataFileError(f"{p}: dataset '{n}' must be finite and strictly increasing")
        edges.append(e)
    n_cells = int(hist.sum())
    if n_cells == 0:
        raise DataFileError(f"{p}: dataset 'histogram' holds no cells (all bins are 0)")
    return Observed(str(p), species, n_cells, histogram=hist, edges=tuple(edges), attrs=attrs)


def select_species(observed: Observed, species: tuple[str, ...]) -> Observed:
    """The observed data restricted to (and ordered as) `species`; DataFileError when one is missing."""
    missing = [s for s in species if s not in observed.species]
    if missing:
        raise DataFileError(f"{observed.path}: the emulator needs dataset(s) {', '.join(missing)} but the file has "
                            f"{', '.join(observed.species)}; use an emulator for {'+'.join(observed.species)} data")
    if tuple(species) == observed.species:
        return observed
    if observed.counts is None:
        raise DataFileError(f"{observed.path}: the histogram is over {'+'.join(observed.species)} but the emulator "
                            f"models {'+'.join(species)}; use a matching emulator")
    warn(f"{observed.path}: using only {', '.join(species)} of the observed "
         f"{', '.join(observed.species)} (the emulator models {'+'.join(species)})", stacklevel=2)
    cols = [observed.species.index(s) for s in species]
    return Observed(observed.path, tuple(species), observed.n_cells, counts=observed.counts[:, cols],
                    attrs=observed.attrs)


def observed_histogram(observed: Observed, edges: tuple[np.ndarray, ...]) -> tuple[np.ndarray, int]:
    """Bin the observed cells onto the emulator's edges: (counts per bin (B...) int64, overflow_count).

    Cells beyond the emulator's last edge (or below its first) go to the overflow, with a warning that says
    how many. A histogram is re-binned when every emulator edge is one of its edges (a coarsening)."""
    edges = tuple(np.asarray(e, float) for e in edges)
    if len(edges) != len(observed.species):
        raise DataFileError(f"{observed.path}: data have {len(observed.species)} species but the emulator's "
                            f"histogram has {len(edges)} axes")
    if observed.counts is not None:
        x = observed.counts.astype(float)
        inside = np.ones(len(x), bool)
        for j, e in enumerate(edges):
            inside &= (x[:, j] >= e[0]) & (x[:, j] < e[-1])
        hist, _ = np.histogramdd(x[inside], bins=list(edges))
        hist = hist.astype(np.int64)
    else:
        assert observed.histogram is not None  # an Observed holds counts or a histogram
        hist = observed.histogram
        for ax, (e_obs, e_emu) in enumerate(zip(observed.edges, edges)):
            hist = _coarsen(observed.path, hist, ax, e_obs, e_emu)
    overflow = int(observed.n_cells - hist.sum())
    if overflow > 0:
        where = ", ".join(f"{s} >= {e[-1]:g}" for s, e in zip(observed.species, edges))
        warn(f"{observed.path}: {overflow} of {observed.n_cells} cells lie beyond the emulator's last edge "
             f"({where}); they count as overflow mass", stacklevel=2)
    return hist, overflow


def _coarsen(path: str, hist: np.ndarray, ax: int, e_obs: np.ndarray, e_emu: np.ndarray) -> np.ndarray:
    if len(e_obs) == len(e_emu) and np.allclose(e_obs, e_emu):
        return hist
    inner = e_emu[(e_emu >= e_obs[0]) & (e_emu <= e_obs[-1])]
    pos = np.searchsorted(e_obs, inner)
    ok = (pos < len(e_obs)) & np.isclose(e_obs[np.minimum(pos, len(e_obs) - 1)], inner)
    if not ok.all():
        raise DataFileError(f"{path}: the histogram's edges (axis {ax}) cannot be re-binned onto the emulator's edges "
                            f"(emulator edge {inner[~ok][0]:g} is not an observed edge); "
                            "provide per-cell counts or a histogram on the emulator's edges")
    obs_centres = 0.5 * (e_obs[:-1] + e_obs[1:])
    idx = np.searchsorted(e_emu, obs_centres, side="right") - 1
    keep = (obs_centres >= e_emu[0]) & (obs_centres < e_emu[-1])
    moved = np.moveaxis(hist, ax, 0)
    out = np.zeros((len(e_emu) - 1,) + moved.shape[1:], dtype=np.int64)
    np.add.at(out, idx[keep], moved[keep])
    return np.moveaxis(out, 0, ax)


def protocol_mean_ranges(protocol, n: int = 4000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Range (min, max) of the stationary mean of each observed count species over the protocol's prior,
    from the prior box's corners and `n` prior draws. Empty for the continuous toy."""
    from ..networks import ReactionNetwork

    net = protocol.network
    if not isinstance(net, ReactionNetwork):
        return {}
    theta = protocol.sample(min(n, 256), seed)  # moments per row (a Lyapunov solve each): a few hundred draws
    if not any(p.kind == "dirichlet" for p in protocol.priors):
        box = protocol.bounds()
        corners = np.array(np.meshgrid(*box, indexing="ij")).reshape(len(box), -1).T
        theta = np.concatenate([theta, corners[:4096]])
    if not net.affine:  # no closed moments: the range is not known without solving the network
        return {}
    rates = protocol.rates(theta)
    red = net.reduced_species
    mu = np.array([net.stationary_moments(dict(zip(protocol.rate_names, r)))[0] for r in rates])
    means = {s: mu[:, red.index(s)] for s in protocol.species if s in red}
    return {s: (float(np.min(v)), float(np.max(v))) for s, v in means.items() if s in protocol.species}


def check_observed_in_domain(observed: Observed, protocol, emulator_name: str, margin: float = 0.05) -> None:
    """DataFileError when an observed species' mean lies outside the range of means the emulator's protocol covers
    (widened by `margin` on each side)."""
    for s, (lo, hi) in protocol_mean_ranges(protocol).items():
        if s not in observed.species:
            continue
        m = observed.mean(s)
        if not (lo * (1 - margin) <= m <= hi * (1 + margin)):
            raise DataFileError(
                f"{observed.path}: mean {s} count {m:.4g} lies outside the range of means [{lo:.4g}, {hi:.4g}] that emulator "
                f"{emulator_name} (protocol {protocol.name}) was trained on; use an emulator whose protocol covers a "
                f"mean {s} of {m:.4g} (e.g. widen the mean prior in a copy of the protocol and train on it)")


def binned_means(hist: np.ndarray, overflow: np.ndarray, edges: Sequence[np.ndarray]) -> np.ndarray:
    """Mean count per species of histograms on `edges`: bin centres for the bins, the last edge for the overflow
    (a truncated mean, the same for observed and emulated data). hist (n, B...) counts, overflow (n,) -> (n, S)."""
    hist = np.asarray(hist, float)
    n = hist.shape[0]
    total = hist.reshape(n, -1).sum(axis=1) + np.asarray(overflow, float)
    out = []
    for j, e in enumerate(edges):
        e = np.asarray(e, float)
        marg = hist.sum(axis=tuple(a for a in range(1, hist.ndim) if a != j + 1)) if hist.ndim > 2 else hist
        out.append(((marg * bin_centres(e, integer=True)).sum(axis=1) + np.asarray(overflow, float) * e[-1]) / np.maximum(total, 1))
    return np.stack(out, axis=1)


def predictive_mean_ranges(emulator, n_cells: int, n_draws: int = 2000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Range (min, max) of the truncated mean (`binned_means`) of n_cells cells drawn from the emulator at
    n_draws prior draws plus the prior box's corners: the sample means the emulator can explain. Unlike the
    range of population means, this reaches the small sample means of very bursty parameter sets (most cells
    empty, rare large bursts), which in-domain data do show."""
    protocol = emulator.protocol
    theta = protocol.sample(n_draws, seed)
    box = protocol.bounds()
    corners = np.array(np.meshgrid(*box, indexing="ij")).reshape(len(box), -1).T
    theta = np.concatenate([theta, corners[:4096]])
    counts, over = emulator.sample_counts(theta, int(n_cells), np.random.default_rng(seed))
    means = binned_means(counts, over, tuple(emulator.edges))
    return {s: (float(means[:, j].min()), float(means[:, j].max())) for j, s in enumerate(emulator.species)}


def check_observed_predictive(observed: Observed, hist: np.ndarray, overflow: int, emulator, emulator_name: str,
                              margin: float = 0.05, ranges: dict | None = None) -> None:
    """DataFileError when the observed truncated mean of a species lies outside the range of such means that the
    emulator produces for as many cells over its prior (`predictive_mean_ranges`, widened by `margin`; pass
    `ranges` to reuse them for several data sets of as many cells)."""
    obs = binned_means(np.asarray(hist)[None], np.array([overflow]), tuple(emulator.edges))[0]
    ranges = ranges if ranges is not None else predictive_mean_ranges(emulator, observed.n_cells)
    for j, (s, (lo, hi)) in enumerate(ranges.items()):
        if not (lo * (1 - margin) <= obs[j] <= hi * (1 + margin)):
            raise DataFileError(
                f"{observed.path}: mean {s} count {observed.mean(s):.4g} ({obs[j]:.4g} on the emulator's bins) lies "
                f"outside the range of means [{lo:.4g}, {hi:.4g}] that emulator {emulator_name} (protocol "
                f"{emulator.protocol.name}) produces for {observed.n_cells} cells over its prior; use an emulator whose "
                f"protocol covers a mean {s} of {observed.mean(s):.4g} (e.g. widen the mean prior in a copy of the "
                "protocol and train on it)")
