"""Training configs (configs/train_*.toml): the [model] and [training] sections, parsed and validated."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..config import CONFIG_DIR
from ..emulators.layers import ACTIVATIONS
from ..emulators.models import CONFIG_TYPES, EMULATOR_TYPES
from ..errors import ConfigError
from ..losses import LOSSES
from ..toml_io import tomllib

MODEL_TYPES = CONFIG_TYPES  # the [model] types as configs spell them (emulators.models also accepts lstm_array)
OPTIMIZERS = ("adam", "sgd")


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
        """The type of one network ('mdn' or 'lstm' for the ensembles)."""
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

ErrorFn = Callable[[str, str], ConfigError]  # (field, message) -> the error naming the file and [field]


def load_train_config(path: str | os.PathLike) -> TrainConfig:
    """Load and validate a training config; a name without .toml is looked up as configs/train_<name>.toml."""
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
    model = _parse_model(raw["model"], err)
    s = _parse_training(raw["training"], err)
    _check_combination(model, s, err)
    return TrainConfig(name=name, model=model, training=s, protocol=proto,
                       description=str(raw.get("description", "")), source=source)


def _parse_model(m: Mapping[str, Any], err: ErrorFn) -> ModelSpec:
    """The [model] table; the type and activation names are those of the emulators' registry and table."""
    bad = set(m) - _MODEL_KEYS
    if bad:
        raise err(f"model.{sorted(bad)[0]}", f"unknown key; allowed: {', '.join(sorted(_MODEL_KEYS))}")
    mtype = m.get("type")
    if not isinstance(mtype, str) or mtype not in EMULATOR_TYPES:
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
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise err("model.activation", f"must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    lstm = m.get("lstm", {})
    if not isinstance(lstm, dict):
        raise err("model.lstm", "must be a table of LSTM options")
    return ModelSpec(mtype, family, int(comps), tuple(int(h) for h in hidden), act, dict(lstm))


def _parse_training(t: Mapping[str, Any], err: ErrorFn) -> TrainSettings:
    """The [training] table: every key typed as TrainSettings declares it, then the value checks."""
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
    return s


def _check_combination(model: ModelSpec, s: TrainSettings, err: ErrorFn) -> None:
    """What [model] and [training] allow together (members for ensembles only, no k-fold ensembles)."""
    if model.is_ensemble and s.members < 2:
        raise err("training.members", f"an {model.type} needs members >= 2, got {s.members}")
    if not model.is_ensemble and s.members != 1:
        raise err("training.members", f"members applies to *_ensemble models; use type = \"{model.type}_ensemble\"")
    if model.is_ensemble and s.kfold:
        raise err("training.kfold", "k-fold is not supported for ensembles; remove kfold or use a single model")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
