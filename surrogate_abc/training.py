"""Training emulators on binned data: configs, the mini-batch loop, checkpoints and the `train` command.

Data (see surrogate_abc/data/schema.py, binned layout): features x = (transform(theta) - mean) / std per
column, targets y = concat(hist.reshape(-1), [overflow]) with C = prod(bins) + 1 categories.

The loop keeps the whole dataset as float32 tensors on the device and draws mini-batches with a
randperm whose generator is seeded by (seed, epoch), so a resumed run sees the same batches as an
uninterrupted one. After every epoch the current weights, the best weights so far and the optimizer
state go to `<out>.ckpt.safetensors` (all tensors; epoch, history and a fingerprint of config + data in
the JSON header metadata; no pickle). Rerunning the same config on the same data resumes from it; a
different config or data file starts over with a warning. `epochs` is not part of the fingerprint, so a
finished 3-epoch run is extended by rerunning with epochs = 6.

Validation: a seeded 80/20 split (`validation = 0.2`), or k-fold (`kfold = k`): k models are trained,
each with one fold held out; the per-fold metrics are reported and the model of the fold with the lowest
validation loss is the one returned and saved (no retraining on all data: simple and documented).
Ensembles (`*_ensemble`, `members = k`): member i is trained on a bootstrap resample (seed (seed, i)) of
the training split and early-stopped on the common validation split; for LSTM ensembles the combining
dense layer is then trained on the training split with the members frozen.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, DataFileError, UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODEL_TYPES = ("mdn", "mdn_conditional", "lstm", "mdn_ensemble", "lstm_ensemble")
OPTIMIZERS = ("adam", "sgd")
ACTIVATIONS = ("elu", "tanh", "relu", "gelu", "silu", "softplus", "leaky_relu")
CHECKPOINT_FORMAT = "surrogate-abc/checkpoint"
EVAL_CHUNK = 65536

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricsFn = Callable[[torch.Tensor, torch.Tensor], Mapping[str, float]]


# ============================================================================ config
@dataclass(frozen=True)
class ModelSpec:
    """The [model] section: which network and its architecture options."""

    type: str
    family: str | None = None
    components: int = 4
    hidden: tuple[int, ...] = (64, 128, 256, 128, 64)
    activation: str = "elu"
    lstm: Mapping[str, Any] = field(default_factory=dict)  # [model.lstm] options passed to the LSTM array

    @property
    def is_ensemble(self) -> bool:
        return self.type.endswith("_ensemble")

    @property
    def base(self) -> str:
        """'mdn' or 'lstm'."""
        return self.type.removesuffix("_ensemble")


@dataclass(frozen=True)
class TrainSettings:
    """The [training] section."""

    loss: str = "hellinger"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    batch_size: int = 512
    epochs: int = 200
    validation: float = 0.2
    kfold: int = 0  # >= 2: k-fold cross-validation instead of the single split
    patience: int = 20
    seed: int = 0
    members: int = 1  # ensemble members
    combiner_epochs: int = 20  # LSTM ensembles: epochs for the combining dense layer
    lr_decay: float = 1.0  # < 1: multiply the learning rate by this after lr_patience epochs without improvement
    lr_patience: int = 10
    min_lr: float = 1e-6
    max_seconds: float = 0.0  # > 0: stop after this much training wall time (best weights kept and saved)
    max_tail_mass: float = 1.0  # < 1: drop sets whose FSP tail mass (probability the truncation missed) exceeds it


@dataclass(frozen=True)
class TrainConfig:
    """A training config (configs/train_*.toml)."""

    name: str
    model: ModelSpec
    training: TrainSettings
    protocol: str | None = None  # expected protocol name of the data (checked when set)
    description: str = ""
    source: str = "<memory>"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in checkpoints and emulator metadata)."""
        d = dataclasses.asdict(self)
        d["model"]["hidden"] = list(self.model.hidden)
        d["model"]["lstm"] = dict(self.model.lstm)
        return d

    def with_epochs(self, epochs: int) -> "TrainConfig":
        """The same config with another epoch budget (the CLI's --epochs)."""
        if epochs <= 0:
            raise ConfigError(f"{self.source}: epochs must be > 0, got {epochs}")
        return dataclasses.replace(self, training=dataclasses.replace(self.training, epochs=epochs))

    def with_max_seconds(self, seconds: float) -> "TrainConfig":
        """The same config with a wall-time budget (the CLI's --max-time); 0 means none."""
        if seconds < 0:
            raise ConfigError(f"{self.source}: max time must be >= 0 seconds, got {seconds}")
        return dataclasses.replace(self, training=dataclasses.replace(self.training, max_seconds=float(seconds)))


_TOP_KEYS = {"name", "description", "protocol", "model", "training"}
_MODEL_KEYS = {"type", "family", "components", "hidden", "activation", "lstm"}
_TRAIN_TYPES: dict[str, type] = {f.name: f.type for f in dataclasses.fields(TrainSettings)}  # type: ignore[misc]


def load_train_config(path: str | os.PathLike) -> TrainConfig:
    """Load and validate a training config; a name without .toml is looked up as configs/train_<name>.toml."""
    from .config import CONFIG_DIR

    p = Path(path)
    if not p.is_file() and p.suffix != ".toml":
        for cand in (Path.cwd() / "configs" / f"{p}.toml", CONFIG_DIR / f"{p}.toml", CONFIG_DIR / f"train_{p}.toml"):
            if cand.is_file():
                p = cand
                break
    if not p.is_file():
        raise ConfigError(f"{path}: training config not found; give a path to a configs/train_*.toml file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read training config ({exc})") from None
    return parse_train_config(text, source=str(p))


def parse_train_config(text: str, source: str = "<string>") -> TrainConfig:
    """Parse training-config TOML; every error names `source` and the field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: malformed TOML ({exc}); fix the syntax") from None

    def err(f: str, msg: str) -> ConfigError:
        return ConfigError(f"{source}: [{f}] {msg}")

    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise err(sorted(unknown)[0], f"unknown key; allowed: {', '.join(sorted(_TOP_KEYS))}")
    for key in ("model", "training"):
        if not isinstance(raw.get(key), dict):
            raise err(key, "missing; a training config needs a [model] and a [training] table")
    name = raw.get("name", Path(source).stem)
    if not isinstance(name, str):
        raise err("name", f"must be a string, got {name!r}")
    proto = raw.get("protocol")
    if proto is not None and not isinstance(proto, str):
        raise err("protocol", f"must be a protocol name, got {proto!r}")

    m = raw["model"]
    bad = set(m) - _MODEL_KEYS
    if bad:
        raise err(f"model.{sorted(bad)[0]}", f"unknown key; allowed: {', '.join(sorted(_MODEL_KEYS))}")
    mtype = m.get("type")
    if mtype not in MODEL_TYPES:
        raise err("model.type", f"must be one of {', '.join(MODEL_TYPES)}, got {mtype!r}")
    family = m.get("family")
    if mtype.startswith("mdn") and not isinstance(family, str):
        raise err("model.family", "an MDN needs a component family, e.g. family = \"gamma_poisson\"")
    comps = m.get("components", 4)
    if not _is_int(comps) or comps < 1:
        raise err("model.components", f"must be a positive integer, got {comps!r}")
    hidden = m.get("hidden", [64, 128, 256, 128, 64])
    if not isinstance(hidden, list) or not hidden or not all(_is_int(h) and h > 0 for h in hidden):
        raise err("model.hidden", f"must be a non-empty list of positive layer widths, got {hidden!r}")
    act = m.get("activation", "elu")
    if act not in ACTIVATIONS:
        raise err("model.activation", f"must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    lstm = m.get("lstm", {})
    if not isinstance(lstm, dict):
        raise err("model.lstm", "must be a table of LSTM options")
    model = ModelSpec(mtype, family, int(comps), tuple(int(h) for h in hidden), act, dict(lstm))

    t = raw["training"]
    vals: dict[str, Any] = {}
    for k, v in t.items():
        if k not in _TRAIN_TYPES:
            raise err(f"training.{k}", f"unknown key; allowed: {', '.join(_TRAIN_TYPES)}")
        want = _TRAIN_TYPES[k]
        if want in ("int", int):
            if not _is_int(v):
                raise err(f"training.{k}", f"must be an integer, got {v!r}")
        elif want in ("float", float):
            if not _is_num(v):
                raise err(f"training.{k}", f"must be a number, got {v!r}")
            v = float(v)
        elif not isinstance(v, str):
            raise err(f"training.{k}", f"must be a string, got {v!r}")
        vals[k] = v
    s = TrainSettings(**vals)
    from .losses import LOSSES

    if s.loss not in LOSSES:
        raise err("training.loss", f"unknown loss {s.loss!r}; use one of {', '.join(LOSSES)}")
    if s.optimizer not in OPTIMIZERS:
        raise err("training.optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {s.optimizer!r}")
    checks = [("lr", s.lr > 0, "must be > 0"), ("batch_size", s.batch_size > 0, "must be > 0"),
              ("epochs", s.epochs > 0, "must be > 0"), ("patience", s.patience > 0, "must be > 0"),
              ("validation", 0 < s.validation < 1, "must be a fraction in (0, 1), e.g. 0.2"),
              ("kfold", s.kfold == 0 or s.kfold >= 2, "must be 0 (single split) or >= 2 folds"),
              ("members", s.members >= 1, "must be >= 1"), ("weight_decay", s.weight_decay >= 0, "must be >= 0"),
              ("combiner_epochs", s.combiner_epochs > 0, "must be > 0"),
              ("lr_decay", 0 < s.lr_decay <= 1, "must be in (0, 1] (1 = constant learning rate)"),
              ("lr_patience", s.lr_patience > 0, "must be > 0"), ("min_lr", s.min_lr > 0, "must be > 0")]
    for k, ok, msg in checks:
        if not ok:
            raise err(f"training.{k}", f"{msg}, got {getattr(s, k)!r}")
    if model.is_ensemble and s.members < 2:
        raise err("training.members", f"an {mtype} needs members >= 2, got {s.members}")
    if not model.is_ensemble and s.members != 1:
        raise err("training.members", f"members applies to *_ensemble models; use type = \"{mtype}_ensemble\"")
    if model.is_ensemble and s.kfold:
        raise err("training.kfold", "k-fold is not supported for ensembles; remove kfold or use a single model")
    return TrainConfig(name=name, model=model, training=s, protocol=proto,
                       description=str(raw.get("description", "")), source=source)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ============================================================================ data
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


def features(theta: np.ndarray, mean: np.ndarray, std: np.ndarray, transforms: tuple[str, ...]) -> np.ndarray:
    """Emulator input features: (transform(theta) - mean) / std, transform 'log10' or 'identity' per column."""
    theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    t = theta.copy()
    for j, tr in enumerate(transforms):
        if tr == "log10":
            t[:, j] = np.log10(theta[:, j])
        elif tr != "identity":
            raise ValueError(f"unknown feature transform {tr!r} (expected 'log10' or 'identity')")
    return (t - mean) / std


def targets(hist: np.ndarray, overflow: np.ndarray) -> np.ndarray:
    """Training targets (n, prod(bins) + 1): flattened histogram with the overflow mass last."""
    n = hist.shape[0]
    return np.concatenate([hist.reshape(n, -1), np.asarray(overflow).reshape(n, 1)], axis=1)


def load_training_data(path: str | os.PathLike) -> TrainingData:
    """Read a binned file of ours into features and targets; DataFileError on anything else."""
    from .config import parse_protocol
    from .data.schema import BINNED_FORMAT, attr_list, attr_str, file_sha256, open_ours

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
    p0 = first.protocol
    for q in parts[1:]:
        p = q.protocol
        what = None
        if p.name != p0.name:
            what = f"protocol {p.name!r}, not {p0.name!r}"
        elif p.param_names != p0.param_names:
            what = f"parameters {', '.join(p.param_names)}, not {', '.join(p0.param_names)}"
        elif q.hist_shape != first.hist_shape or any(
                not np.array_equal(np.asarray(a.edges), np.asarray(b.edges)) for a, b in zip(p.axes, p0.axes)):
            what = f"histogram bins {q.hist_shape} with other edges than {first.path}"
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


def split_by_source(source: np.ndarray, validation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """split_indices within each data file: adding a file leaves the earlier files' split unchanged, so a model
    warm-started (--init) from a run on those files is never validated on its own training rows."""
    tr, va = [], []
    for i in np.unique(source):
        rows = np.flatnonzero(source == i)
        if len(rows) < 2:
            tr.append(rows)
            continue
        t, v = split_indices(len(rows), validation, seed)
        tr.append(rows[t])
        va.append(rows[v])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def split_indices(n: int, validation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) index split; validation holds round(validation * n) >= 1 rows."""
    perm = np.random.default_rng([seed, 0x5A11]).permutation(n)
    n_val = min(max(1, round(validation * n)), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def kfold_indices(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k seeded (train, validation) splits; every row is validation in exactly one fold."""
    if not 2 <= k <= n:
        raise ConfigError(f"kfold = {k} needs 2 <= k <= n = {n}")
    perm = np.random.default_rng([seed, 0x5A11]).permutation(n)
    folds = np.array_split(perm, k)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1:])), np.sort(folds[i])) for i in range(k)]


def bootstrap_indices(idx: np.ndarray, seed: int, member: int) -> np.ndarray:
    """A bootstrap resample (with replacement, same size) of `idx`, seeded by (seed, member)."""
    rng = np.random.default_rng([seed, 0xB007, member])
    return idx[rng.integers(0, len(idx), size=len(idx))]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> cuda when available, else cpu; asking for cuda without CUDA is a UserError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {device!r}: unknown device; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available on this machine (torch "
                        f"{torch.__version__}); use --device cpu or leave --device out")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device!r}: only cpu and cuda are supported")
    return dev


# ============================================================================ checkpoints
def flatten_optimizer_state(sd: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer state_dict as named tensors + a JSON-serialisable rest (no pickle needed)."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                plain.setdefault(str(pid), {})[k] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"state": plain, "param_groups": groups}


def unflatten_optimizer_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of flatten_optimizer_state."""
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("optim."):
            _, pid, k = name.split(".", 2)
            state.setdefault(int(pid), {})[k] = t
    for pid, rest in meta["state"].items():
        state.setdefault(int(pid), {}).update(rest)
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
              for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(path: Path, model: nn.Module, best: Mapping[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, meta: Mapping[str, Any]) -> None:
    """Write current + best weights and optimizer state (tensors) with `meta` as JSON; atomic replace."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best.items()})
    opt_t, opt_meta = flatten_optimizer_state(optimizer.state_dict())
    tensors.update(opt_t)
    header = {"format": CHECKPOINT_FORMAT, "optimizer": opt_meta, **meta}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"surrogate_abc": json.dumps(header)})
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, meta) of a checkpoint, or None (with a warning) when it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["surrogate_abc"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a training checkpoint")
    except Exception as exc:  # damaged/foreign: start over rather than fail
        warnings.warn(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc}); starting over", stacklevel=3)
        return None
    return tensors, meta


def json_safe(obj: Any) -> Any:
    """A copy with non-finite floats replaced by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _fingerprint(config: TrainConfig, data_sha: str, tag: str) -> str:
    d = config.to_dict()
    d["training"].pop("epochs")
    d["training"].pop("max_seconds")
    d.pop("source")
    return hashlib.sha256(json.dumps([d, data_sha, tag], sort_keys=True).encode()).hexdigest()


# ============================================================================ the loop
def make_optimizer(params, s: TrainSettings) -> torch.optim.Optimizer:
    """Adam or SGD (with momentum) over `params` per the [training] settings."""
    params = [p for p in params if p.requires_grad]
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
             metrics_fn: MetricsFn | None = None, chunk: int = EVAL_CHUNK) -> tuple[float, dict[str, float]]:
    """Mean loss and metrics over (x, y), in chunks; all are row means, so chunk averages weighted by rows."""
    was = model.training
    model.eval()
    total, mets, n = 0.0, {}, x.shape[0]
    for i in range(0, n, chunk):
        pred = model(x[i:i + chunk])
        w = pred.shape[0] / n
        total += w * float(loss_fn(pred, y[i:i + chunk]))
        if metrics_fn is not None:
            for k, v in metrics_fn(pred, y[i:i + chunk]).items():
                mets[k] = mets.get(k, 0.0) + w * float(v)
    model.train(was)
    return total, mets


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1))
    return g


def fit(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
        *, loss_fn: LossFn, settings: TrainSettings, metrics_fn: MetricsFn | None = None,
        checkpoint: Path | None = None, fingerprint: str = "", resume: bool = True,
        progress: bool = False, desc: str = "train", loss_name: str = "loss",
        params: list[nn.Parameter] | None = None) -> dict[str, Any]:
    """Mini-batch training with early stopping on the validation loss; the model ends with the best weights.

    All tensors must already be on the model's device. Returns the history: per-epoch records
    (epoch, train_loss, val_loss, val_<metric>..., seconds), best_epoch, best_val_loss,
    resumed_from_epoch and stopped = {reason: early_stopping|max_epochs|non_finite, epoch, ...}.
    `params` restricts the optimised parameters (e.g. an ensemble's combining layer).
    """
    from tqdm.auto import tqdm

    device = x_train.device
    s = settings
    optimizer = make_optimizer(params if params is not None else model.parameters(), s)
    hist: dict[str, Any] = {"epochs": [], "best_epoch": 0, "best_val_loss": math.inf, "resumed_from_epoch": 0,
                            "stopped": None}
    best = _clone_state(model)
    since_best = 0
    start = 1
    if checkpoint is not None and resume and checkpoint.exists():
        loaded = load_checkpoint(checkpoint)
        if loaded is not None and loaded[1].get("fingerprint") != fingerprint:
            warnings.warn(f"{checkpoint}: checkpoint is from a different config or data file; starting over",
                          stacklevel=2)
            loaded = None
        if loaded is not None:
            tensors, meta = loaded
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
            optimizer.load_state_dict(unflatten_optimizer_state(tensors, meta["optimizer"]))
            hist = meta["history"]
            since_best = int(meta["since_best"])
            start = int(meta["epoch"]) + 1
            hist["resumed_from_epoch"] = start - 1
            prev = hist.get("stopped") or {}
            if prev.get("reason") in ("early_stopping", "non_finite"):
                model.load_state_dict(best)
                return hist
            hist["stopped"] = None
    n = x_train.shape[0]
    bs = min(s.batch_size, n)
    bar = tqdm(total=s.epochs, initial=start - 1, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    model.train()
    teacher = getattr(model, "ar_order", 0) > 0  # autoregressive LSTM: teacher forcing with the true bins
    epoch = start - 1
    t_start = time.perf_counter()
    for epoch in range(start, s.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=_epoch_generator(s.seed, epoch, device), device=device)
        total = torch.zeros((), device=device, dtype=torch.float64)
        bad = None
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            yb = y_train[idx]
            loss = loss_fn(model(x_train[idx], y_teacher=yb) if teacher else model(x_train[idx]), yb)
            if not torch.isfinite(loss):
                bad = ("train", float(loss.detach()))
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * idx.shape[0]
        if bad is None:
            val_loss, mets = evaluate(model, x_val, y_val, loss_fn, metrics_fn)
            if not math.isfinite(val_loss):
                bad = ("validation", val_loss)
        if bad is not None:
            which, value = bad
            model.load_state_dict(best)
            hist["stopped"] = {"reason": "non_finite", "epoch": epoch, "loss": which, "loss_name": loss_name,
                               "value": repr(value), "restored_epoch": hist["best_epoch"]}
            warnings.warn(f"training stopped at epoch {epoch}: the {which} {loss_name} loss is {value}; "
                          f"restored the best weights (epoch {hist['best_epoch']})", RuntimeWarning, stacklevel=2)
            break
        rec = {"epoch": epoch, "train_loss": float(total) / n, "val_loss": val_loss,
               **{f"val_{k}": v for k, v in mets.items()}, "seconds": time.perf_counter() - t0}
        hist["epochs"].append(rec)
        if val_loss < hist["best_val_loss"]:
            hist["best_val_loss"], hist["best_epoch"], since_best = val_loss, epoch, 0
            best = _clone_state(model)
        else:
            since_best += 1
            if s.lr_decay < 1.0 and since_best % s.lr_patience == 0:
                for group in optimizer.param_groups:  # the lr lives in the optimizer state: checkpointed with it
                    group["lr"] = max(group["lr"] * s.lr_decay, s.min_lr)
        rec["lr"] = optimizer.param_groups[0]["lr"]
        if since_best >= s.patience:
            hist["stopped"] = {"reason": "early_stopping", "epoch": epoch}
        elif s.max_seconds > 0 and time.perf_counter() - t_start >= s.max_seconds and epoch < s.epochs:
            # A wall-time budget ends the run like max_epochs: a rerun with more time resumes it.
            hist["stopped"] = {"reason": "time_limit", "epoch": epoch}
        bar.update(1)
        bar.set_postfix(train=f"{rec['train_loss']:.4g}", val=f"{val_loss:.4g}",
                        **({"H2": f"{mets['H2']:.3g}"} if "H2" in mets else {}))
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, best, optimizer,
                            {"fingerprint": fingerprint, "epoch": epoch, "since_best": since_best, "history": hist})
        if hist["stopped"] is not None:
            break
    bar.close()
    if hist["stopped"] is None:
        hist["stopped"] = {"reason": "max_epochs", "epoch": epoch}
    elif hist["stopped"]["reason"] == "non_finite" and checkpoint is not None:
        save_checkpoint(checkpoint, model, best, optimizer,
                        {"fingerprint": fingerprint, "epoch": epoch, "since_best": since_best, "history": hist})
    model.load_state_dict(best)
    return hist


# ============================================================================ models
def make_binning(protocol: Any):
    """The emulators' Binning for a protocol's histogram axes (distributions.Binning)."""
    from .emulators.distributions import Binning

    return Binning.from_protocol(protocol)


LSTM_OPTIONS = ("bin_features", "hidden", "ar_order", "bidirectional", "cell")


def build_network(spec: ModelSpec, protocol: Any, d_in: int, n_out: int, source: str = "<config>") -> nn.Module:
    """A fresh single network (MDN, conditional MDN or LSTM array) for a [model] section; ensembles build k of these.

    MDN: `hidden` is the dense trunk. LSTM: `hidden` is the dense embedding, [model.lstm] holds
    bin_features, hidden (LSTM units), ar_order, bidirectional and cell (standard | peephole).
    """
    try:
        if spec.base == "mdn":
            from .emulators.mdn import MDN

            return MDN(d_in, spec.family, spec.components, make_binning(protocol), hidden=spec.hidden,
                       activation=spec.activation)
        if spec.base == "mdn_conditional":
            from .emulators.conditional import ConditionalMDN

            return ConditionalMDN(d_in, spec.family, spec.components, make_binning(protocol), hidden=spec.hidden,
                                  activation=spec.activation)
        from .emulators.lstm import LSTMArray

        bad = set(spec.lstm) - set(LSTM_OPTIONS)
        if bad:
            raise ValueError(f"unknown LSTM option {sorted(bad)[0]!r} in [model.lstm]; allowed: {', '.join(LSTM_OPTIONS)}")
        return LSTMArray(d_in, n_out, embed=spec.hidden, activation=spec.activation, **dict(spec.lstm))
    except UserError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: [model] cannot build {spec.type}: {exc}") from None


ModelFactory = Callable[[int, int], nn.Module]


# ============================================================================ train()
def _ckpt_path(out: Path | None, tag: str) -> Path | None:
    if out is None:
        return None
    suffix = ".ckpt.safetensors" if not tag else f".{tag}.ckpt.safetensors"
    return out.with_name(out.name + suffix)


def train(config: TrainConfig, data_path: str | os.PathLike | Sequence[str | os.PathLike],
          out_path: str | os.PathLike | None = None, device: str | torch.device | None = None, resume: bool = True,
          progress: bool = True, model_factory: ModelFactory | None = None,
          init: str | os.PathLike | None = None):
    """Train an emulator on one or more binned files; returns (Emulator, history), saved to `out_path` if given.

    Several files are concatenated (scaled like the first) and the validation rows are drawn per file.
    `init`: an emulator file whose weights (and input scaling) start the run instead of a random
    initialisation; its network must match the config's [model]. `model_factory(d_in, n_out) -> nn.Module`
    replaces the config's [model] (tests use small stand-ins).
    """
    from .emulators.emulator import Emulator
    from .losses import get_loss, metrics

    dev = resolve_device(device)
    paths = [data_path] if isinstance(data_path, (str, os.PathLike)) else list(data_path)
    if not paths:
        raise UserError("no --data file given")
    data = concat_training_data([load_training_data(p) for p in paths])
    init_emu = None
    if init is not None:
        init_emu, init_sha = _load_init(init, data, config)
        data = data.rescaled(init_emu.scaling_mean, init_emu.scaling_std, init_emu.transforms)
        data = dataclasses.replace(data, sha256=hashlib.sha256(f"{data.sha256} init {init_sha}".encode()).hexdigest())
    proto = data.protocol
    if config.protocol is not None and proto.name != config.protocol:
        raise ConfigError(f"{config.source}: [protocol] is {config.protocol!r} but {data.path} holds "
                          f"{proto.name!r} data; train on {config.protocol} data or change protocol")
    s = config.training
    n_dropped = 0
    if s.max_tail_mass < 1.0 and data.tail_mass is not None:
        keep = data.tail_mass <= s.max_tail_mass
        n_dropped = int((~keep).sum())
        if keep.sum() < 2:
            raise ConfigError(f"{config.source}: [training] max_tail_mass = {s.max_tail_mass:g} leaves {int(keep.sum())} "
                              f"of {len(keep)} sets of {data.path}; raise it")
        if n_dropped:
            data = data.subset(keep)
            print(f"dropped {n_dropped} of {len(keep)} sets whose FSP tail mass exceeds max_tail_mass = "
                  f"{s.max_tail_mass:g}", file=sys.stderr)
    loss_fn = get_loss(s.loss)
    out = Path(out_path) if out_path is not None else None
    if out is not None and not out.parent.is_dir():
        raise UserError(f"--out {out}: directory {out.parent} does not exist")
    n, d = data.x.shape
    C = data.y.shape[1]
    x_all = torch.from_numpy(data.x).to(dev)
    y_all = torch.from_numpy(data.y).to(dev)

    def new_model(tag_seed: int, spec: ModelSpec | None = None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tag_seed)
            if model_factory is not None:
                m = model_factory(d, C)
            else:
                m = build_network(spec or config.model, proto, d, C, config.source)
        if init_emu is not None:
            _copy_weights(init_emu, m, init, config)
        return m.to(dev)

    common = dict(loss_fn=loss_fn, metrics_fn=metrics, settings=s, resume=resume, progress=progress,
                  loss_name=s.loss)
    history: dict[str, Any] = {"config": config.to_dict(), "data": data.path, "data_sha256": data.sha256,
                               "n_sets": n, "n_dropped_tail_mass": n_dropped, "device": str(dev),
                               "n_files": len(paths)}
    if init_emu is not None:
        history["init"] = {"file": os.path.basename(str(init)),
                           "weights_sha256": init_sha,
                           "epochs": len((init_emu.metadata.get("history") or {}).get("epochs") or [])}
    if s.kfold:
        folds = kfold_indices(n, s.kfold, s.seed)
        runs, models_ = [], []
        for i, (tr, va) in enumerate(folds):
            m = new_model(s.seed)
            tag = f"fold{i}"
            h = fit(m, x_all[tr], y_all[tr], x_all[va], y_all[va], checkpoint=_ckpt_path(out, tag),
                    fingerprint=_fingerprint(config, data.sha256, tag), desc=f"fold {i + 1}/{s.kfold}", **common)
            runs.append(h)
            models_.append(m)
        chosen = int(np.argmin([h["best_val_loss"] for h in runs]))
        model = models_[chosen]
        fold_metrics = [evaluate(m, x_all[va], y_all[va], loss_fn, metrics)[1] for m, (_, va) in zip(models_, folds)]
        history.update(mode="kfold", folds=runs, fold_metrics=fold_metrics, chosen_fold=chosen,
                       kfold_mean={k: float(np.mean([f[k] for f in fold_metrics])) for k in fold_metrics[0]},
                       kfold_std={k: float(np.std([f[k] for f in fold_metrics])) for k in fold_metrics[0]})
        val_idx = folds[chosen][1]
        top = runs[chosen]
    else:
        tr, va = split_by_source(data.source, s.validation, s.seed)
        x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]
        val_idx = va
        if config.model.is_ensemble and model_factory is None:
            model, top, members_h = _train_ensemble(config, data, new_model, x_all, y_all, tr, va, out, common)
            history.update(mode="ensemble", members=members_h)
        else:
            model = new_model(s.seed)
            top = fit(model, x_tr, y_tr, x_va, y_va, checkpoint=_ckpt_path(out, ""),
                      fingerprint=_fingerprint(config, data.sha256, ""), desc=config.name, **common)
            history.update(mode="single")
    val_loss, val_metrics = evaluate(model, x_all[val_idx], y_all[val_idx], loss_fn, metrics)
    history.update(epochs=top["epochs"], best_epoch=top["best_epoch"], stopped=top["stopped"],
                   resumed_from_epoch=top["resumed_from_epoch"], validation_loss=val_loss,
                   validation_metrics=val_metrics, n_validation=int(len(val_idx)))
    history = json_safe(history)
    model.eval()
    meta = {"training_config": config.to_dict(), "history": history, "validation_metrics": val_metrics,
            "data_sha256": data.sha256, "data_file": " + ".join(os.path.basename(str(p)) for p in paths)}
    emulator = Emulator(model, proto, data.mean, data.std, data.transforms, meta)
    if out is not None:
        from .emulators.io import save_emulator

        save_emulator(emulator, out)
    return emulator, history


def _load_init(path: str | os.PathLike, data: TrainingData, config: TrainConfig):
    """(emulator, weights hash) behind --init, checked against the data's protocol and the config."""
    from .emulators.io import load_emulator, read_emulator_metadata

    emu = load_emulator(path, device="cpu")
    if emu.protocol.name != data.protocol.name or emu.param_names != data.protocol.param_names:
        raise UserError(f"--init {path}: an emulator of {emu.protocol.name!r} ({', '.join(emu.param_names)}), but the "
                        f"data hold {data.protocol.name!r} ({', '.join(data.protocol.param_names)})")
    if config.model.is_ensemble or config.training.kfold:
        raise ConfigError(f"{config.source}: --init starts one network; it cannot seed an ensemble or k-fold run")
    return emu, str(read_emulator_metadata(path)["weights_sha256"])


def _copy_weights(emu, model: nn.Module, path, config: TrainConfig) -> None:
    """Load the --init emulator's weights into `model`; UserError when the architectures differ."""
    try:
        model.load_state_dict(emu.model.state_dict(), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        arch = getattr(emu.model, "architecture", lambda: {})()
        raise UserError(f"--init {path}: its network ({arch.get('type', '?')}, hidden {arch.get('hidden', '?')}) does "
                        f"not match the [model] of {config.source} ({first}); use the same [model] section") from None


def _train_ensemble(config, data, new_model, x_all, y_all, tr, va, out, common):
    """Members on bootstrap resamples of the training split; LSTM ensembles then fit their combiner."""
    from .emulators import ensemble as ens

    s = config.training
    base = dataclasses.replace(config.model, type=config.model.base)
    members, runs = [], []
    for i in range(s.members):
        m = new_model(s.seed * 1000 + i, spec=base)
        idx = bootstrap_indices(tr, s.seed, i)
        tag = f"member{i}"
        h = fit(m, x_all[idx], y_all[idx], x_all[va], y_all[va], checkpoint=_ckpt_path(out, tag),
                fingerprint=_fingerprint(config, data.sha256, tag), desc=f"member {i + 1}/{s.members}", **common)
        members.append(m)
        runs.append(h)
    if config.model.base == "mdn":
        return ens.MDNEnsemble(members).to(x_all.device), runs[int(np.argmin([h["best_val_loss"] for h in runs]))], runs
    model = ens.LSTMEnsemble(members, y_all.shape[1]).to(x_all.device)
    model.freeze_members()
    cs = dataclasses.replace(s, epochs=s.combiner_epochs)
    top = fit(model, x_all[tr], y_all[tr], x_all[va], y_all[va], checkpoint=_ckpt_path(out, "combiner"),
              fingerprint=_fingerprint(config, data.sha256, "combiner"), desc="combiner",
              params=[p for p in model.parameters() if p.requires_grad], **{**common, "settings": cs})
    return model, top, runs


def format_summary(history: Mapping[str, Any], out: Path | None = None) -> str:
    """A short human-readable summary of a training run (what `surrogate-abc train` prints)."""
    lines = []
    if out is not None:
        lines.append(f"wrote {out}")
    stopped = history.get("stopped") or {}
    lines.append(f"mode {history.get('mode')}, {history.get('n_sets')} sets, device {history.get('device')}; "
                 f"best epoch {history.get('best_epoch')} (stopped: {stopped.get('reason')} at epoch {stopped.get('epoch')})")
    if history.get("resumed_from_epoch"):
        lines.append(f"resumed from checkpoint at epoch {history['resumed_from_epoch']}")
    if stopped.get("reason") == "non_finite":
        lines.append(f"WARNING: the {stopped['loss']} loss became {stopped['value']} at epoch {stopped['epoch']}; "
                     f"kept the weights of epoch {stopped['restored_epoch']}")
    mets = history.get("validation_metrics") or {}
    lines.append(f"validation ({history.get('n_validation')} sets): " +
                 ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in mets.items()))
    if history.get("mode") == "kfold":
        mean, std = history["kfold_mean"], history["kfold_std"]
        lines.append("k-fold mean +- std: " + ", ".join(f"{k} {mean[k]:.4g} +- {std[k]:.2g}" for k in mean) +
                     f"; kept fold {history['chosen_fold']}")
    return "\n".join(lines)
