"""Training data from binned files: features and targets, several files as one (the row splits: splits.py).

Features x = (transform(theta) - mean) / std per column (surrogate_abc.data.scaling), targets
y = concat(hist.reshape(-1), [overflow]) with C = prod(bins) + 1 categories (see data/schema.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import parse_protocol
from ..data.scaling import features
from ..data.schema import BINNED_FORMAT, attr_list, attr_str, file_sha256, open_ours
from ..errors import DataFileError


@dataclass(frozen=True)
class TrainingData:
    """Features, targets and what an emulator needs to know about a binned file."""

    x: np.ndarray  # (n, d) float32 scaled features
    y: np.ndarray  # (n, C) float32 targets, last column = overflow
    theta: np.ndarray  # (n, d) float64
    protocol: Any  # surrogate_abc.config.Protocol
    mean: np.ndarray
    std: np.ndarray
    transforms: tuple[str, ...]
    hist_shape: tuple[int, ...]
    sha256: str
    path: str
    tail_mass: np.ndarray | None = None  # (n,) FSP tail mass per set (zeros for SSA data)
    source: np.ndarray | None = None  # (n,) index of the data file each row came from (several --data files)

    def subset(self, keep: np.ndarray) -> "TrainingData":
        """The rows where `keep` (bool mask) is true."""
        tm = None if self.tail_mass is None else self.tail_mass[keep]
        src = None if self.source is None else self.source[keep]
        return dataclasses.replace(self, x=self.x[keep], y=self.y[keep], theta=self.theta[keep], tail_mass=tm,
                                   source=src)

    def rescaled(self, mean: np.ndarray, std: np.ndarray, transforms: tuple[str, ...]) -> "TrainingData":
        """The same sets with features recomputed under another scaling (e.g. the one of an --init emulator)."""
        x = features(self.theta, mean, std, transforms).astype(np.float32)
        return dataclasses.replace(self, x=x, mean=np.asarray(mean, np.float64), std=np.asarray(std, np.float64),
                                   transforms=tuple(transforms))


def targets(hist: np.ndarray, overflow: np.ndarray) -> np.ndarray:
    """Training targets (n, prod(bins) + 1): flattened histogram with the overflow mass last."""
    n = hist.shape[0]
    return np.concatenate([hist.reshape(n, -1), np.asarray(overflow).reshape(n, 1)], axis=1)


def load_training_data(path: str | os.PathLike) -> TrainingData:
    """Read a binned file of ours into features and targets; DataFileError on anything else."""
    p = Path(path)
    need = ["theta", "hist", "overflow", "scaling/mean", "scaling/std"]
    with open_ours(p, BINNED_FORMAT, required=need) as f:
        theta = f["theta"][()]
        hist = f["hist"][()]
        overflow = f["overflow"][()]
        tail = np.asarray(f["tail_mass"][()], dtype=np.float64) if "tail_mass" in f else np.zeros(len(theta))
        mean = np.asarray(f["scaling/mean"][()], dtype=np.float64)
        std = np.asarray(f["scaling/std"][()], dtype=np.float64)
        transforms = tuple(attr_list(f["scaling/mean"], "transforms") or attr_list(f["scaling"], "transforms"))
        toml = attr_str(f, "config_toml")
        network_toml = attr_str(f, "network_toml")
    if not toml:
        raise DataFileError(f"{p}: attribute 'config_toml' is missing; regenerate the file with `surrogate-abc bin`")
    protocol = parse_protocol(toml, source=f"{p}:config_toml", network_toml=network_toml)
    n, d = theta.shape
    if len(transforms) != d or mean.shape != (d,) or std.shape != (d,):
        raise DataFileError(f"{p}: scaling has {mean.shape} mean, {std.shape} std, {len(transforms)} transforms for "
                            f"{d} parameters; regenerate the file with `surrogate-abc bin`")
    if n < 2 or hist.shape[0] != n or overflow.shape != (n,):
        raise DataFileError(f"{p}: hist {hist.shape} / overflow {overflow.shape} do not match theta {theta.shape}")
    if np.any(std <= 0) or not np.all(np.isfinite(std)):
        raise DataFileError(f"{p}: scaling/std must be > 0 and finite, got {std}; regenerate the file")
    y = targets(hist, overflow)
    x = features(theta, mean, std, transforms)
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise DataFileError(f"{p}: theta, hist or overflow holds NaN/inf values; regenerate the file")
    return TrainingData(x.astype(np.float32), y.astype(np.float32), theta, protocol, mean, std, transforms,
                        tuple(hist.shape[1:]), file_sha256(p), str(p), tail)


def concat_training_data(parts: list[TrainingData]) -> TrainingData:
    """Several binned files of one protocol as one data set, scaled like the first; rows remember their file.

    The files must come from the same protocol with the same bins (their `config_toml` describe the same
    parameters, species and edges); DataFileError names the file and what differs otherwise."""
    first = parts[0]
    if len(parts) == 1:
        return dataclasses.replace(first, source=np.zeros(len(first.theta), dtype=np.int64))
    for q in parts[1:]:
        what = _mismatch(q, first)
        if what:
            raise DataFileError(f"{q.path}: holds {what}; every --data file must come from the same protocol and "
                                f"binning (`surrogate-abc bin` with the same edges)")
    parts = [parts[0]] + [q.rescaled(first.mean, first.std, first.transforms) for q in parts[1:]]
    sha = hashlib.sha256(" ".join(q.sha256 for q in parts).encode()).hexdigest()
    tails = [q.tail_mass if q.tail_mass is not None else np.zeros(len(q.theta)) for q in parts]
    return dataclasses.replace(
        first, x=np.concatenate([q.x for q in parts]), y=np.concatenate([q.y for q in parts]),
        theta=np.concatenate([q.theta for q in parts]), tail_mass=np.concatenate(tails), sha256=sha,
        path=" + ".join(q.path for q in parts),
        source=np.concatenate([np.full(len(q.theta), i, dtype=np.int64) for i, q in enumerate(parts)]))


def _mismatch(q: TrainingData, first: TrainingData) -> str | None:
    """What in `q` differs from `first` so that they cannot train together (protocol, parameters, bins), or None."""
    p, p0 = q.protocol, first.protocol
    if p.name != p0.name:
        return f"protocol {p.name!r}, not {p0.name!r}"
    if p.param_names != p0.param_names:
        return f"parameters {', '.join(p.param_names)}, not {', '.join(p0.param_names)}"
    if q.hist_shape != first.hist_shape or any(
            not np.array_equal(np.asarray(a.edges), np.asarray(b.edges)) for a, b in zip(p.axes, p0.axes)):
        return f"histogram bins {q.hist_shape} with other edges than {first.path}"
    return None
