"""The `train` command: data, networks from the config's [model] section (or --init weights), the single
split, k-fold or ensemble runs of loop.fit, and the Emulator that comes out.

Validation: a seeded 80/20 split per data file (`validation = 0.2`), or k-fold (`kfold = k`): k models are
trained, each with one fold held out; the per-fold metrics are reported and the model of the fold with the
lowest validation loss is the one returned and saved (no retraining on all data: simple and documented).
Ensembles (`*_ensemble`, `members = k`): member i is trained on a bootstrap resample (seed (seed, i)) of
the training split and early-stopped on the common validation split; for LSTM ensembles the combining
dense layer is then trained on the training split with the members frozen.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import numpy as np
import torch
from torch import nn

from ..emulators.conditional import ConditionalMDN
from ..emulators.emulator import Emulator
from ..emulators.ensemble import LSTMEnsemble, MDNEnsemble
from ..emulators.io import load_emulator, read_emulator_metadata, save_emulator
from ..emulators.mdn import MDN
from ..emulators.models import build_from_config
from ..emulators.widen import widen_state, widening_factor
from ..errors import ConfigError, UserError
from ..losses import get_loss, metrics
from .checkpoint import checkpoint_fingerprint, checkpoint_path, json_safe
from .config import ModelSpec, TrainConfig
from .data import TrainingData, concat_training_data, load_training_data
from .loop import LossFn, evaluate, fit, resolve_device
from .splits import bootstrap_indices, kfold_indices, split_by_source

ModelFactory = Callable[[int, int], nn.Module]


def build_network(spec: ModelSpec, protocol: Any, d_in: int, n_out: int, source: str = "<config>") -> nn.Module:
    """A fresh single network (MDN, conditional MDN or LSTM array) for a [model] section; ensembles build k of these.

    MDN: `hidden` is the dense trunk. LSTM: `hidden` is the dense embedding, [model.lstm] holds
    bin_features, hidden (LSTM units), ar_order, bidirectional and cell (standard | peephole).
    Built by the emulators' registry (emulators.models), as io.load_emulator rebuilds saved networks.
    """
    try:
        return build_from_config(spec.base, spec, protocol, d_in, n_out)
    except UserError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: [model] cannot build {spec.type}: {exc}") from None


@dataclass(frozen=True)
class _Job:
    """What the runs of one train() call share: the data on the device, where to checkpoint, how to fit."""

    config: TrainConfig
    data: TrainingData
    x: torch.Tensor
    y: torch.Tensor
    out: Path | None
    new_model: Callable[..., nn.Module]  # (seed, spec=None) -> a fresh network on the device
    fit_options: dict[str, Any]

    def fit(self, model: nn.Module, tr: np.ndarray, va: np.ndarray, tag: str, desc: str, **options) -> dict:
        """loop.fit on rows `tr`, validated on `va`, checkpointed under `tag`."""
        return fit(model, self.x[tr], self.y[tr], self.x[va], self.y[va], checkpoint=checkpoint_path(self.out, tag),
                   fingerprint=checkpoint_fingerprint(self.config, self.data.sha256, tag), desc=desc,
                   **{**self.fit_options, **options})


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
    dev = resolve_device(device)
    paths = [data_path] if isinstance(data_path, (str, os.PathLike)) else list(data_path)
    if not paths:
        raise UserError("no --data file given")
    data, init_emu, init_sha = _load_data(config, paths, init)
    data, n_dropped = _drop_inexact_sets(config, data)
    s = config.training
    loss_fn = get_loss(s.loss)
    out = Path(out_path) if out_path is not None else None
    if out is not None and not out.parent.is_dir():
        raise UserError(f"--out {out}: directory {out.parent} does not exist")
    n, d = data.x.shape
    C = data.y.shape[1]
    new_model = _network_maker(config, data.protocol, d, C, dev, model_factory, init_emu, init)
    job = _Job(config, data, torch.from_numpy(data.x).to(dev), torch.from_numpy(data.y).to(dev), out, new_model,
               dict(loss_fn=loss_fn, metrics_fn=metrics, settings=s, resume=resume, progress=progress,
                    loss_name=s.loss))
    history: dict[str, Any] = {"config": config.to_dict(), "data": data.path, "data_sha256": data.sha256,
                               "n_sets": n, "n_dropped_tail_mass": n_dropped, "device": str(dev),
                               "n_files": len(paths)}
    if init_emu is not None:
        history["init"] = {"file": os.path.basename(str(init)),
                           "weights_sha256": init_sha,
                           "epochs": len((init_emu.metadata.get("history") or {}).get("epochs") or [])}
    if s.kfold:
        model, top, val_idx = _train_kfold(job, loss_fn, history)
    else:
        model, top, val_idx = _train_split(job, model_factory is None, history)
    return _finish(job, paths, model, top, val_idx, loss_fn, history)


def _load_data(config: TrainConfig, paths: list, init: str | os.PathLike | None):
    """(data, --init emulator or None, its weights hash or None): the files as one data set, rescaled to the
    --init emulator's scaling when given, checked against the config's protocol."""
    data = concat_training_data([load_training_data(p) for p in paths])
    init_emu = init_sha = None
    if init is not None:
        init_emu, init_sha = _load_init(init, data, config)
        data = data.rescaled(init_emu.scaling_mean, init_emu.scaling_std, init_emu.transforms)
        data = dataclasses.replace(data, sha256=hashlib.sha256(f"{data.sha256} init {init_sha}".encode()).hexdigest())
    proto = data.protocol
    if config.protocol is not None and proto.name != config.protocol:
        raise ConfigError(f"{config.source}: [protocol] is {config.protocol!r} but {data.path} holds "
                          f"{proto.name!r} data; train on {config.protocol} data or change protocol")
    return data, init_emu, init_sha


def _drop_inexact_sets(config: TrainConfig, data: TrainingData) -> tuple[TrainingData, int]:
    """Leave out the sets whose FSP tail mass exceeds max_tail_mass (said on stderr); (data, how many)."""
    s = config.training
    if not (s.max_tail_mass < 1.0 and data.tail_mass is not None):
        return data, 0
    keep = data.tail_mass <= s.max_tail_mass
    n_dropped = int((~keep).sum())
    if keep.sum() < 2:
        raise ConfigError(f"{config.source}: [training] max_tail_mass = {s.max_tail_mass:g} leaves {int(keep.sum())} "
                          f"of {len(keep)} sets of {data.path}; raise it")
    if n_dropped:
        data = data.subset(keep)
        print(f"dropped {n_dropped} of {len(keep)} sets whose FSP tail mass exceeds max_tail_mass = "
              f"{s.max_tail_mass:g}", file=sys.stderr)
    return data, n_dropped


def _network_maker(config: TrainConfig, proto: Any, d: int, C: int, dev: torch.device,
                   model_factory: ModelFactory | None, init_emu: Any, init: Any) -> Callable[..., nn.Module]:
    """new_model(seed, spec=None): a network seeded by `seed` without touching the global RNG stream, from
    model_factory or the [model] section (`spec` overrides it), with the --init weights when given."""

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

    return new_model


def _train_kfold(job: _Job, loss_fn: LossFn, history: dict[str, Any]):
    """k models, fold i held out of model i; (the model of the lowest validation loss, its history, its fold)."""
    s = job.config.training
    folds = kfold_indices(len(job.data.x), s.kfold, s.seed)
    runs, models_ = [], []
    for i, (tr, va) in enumerate(folds):
        m = job.new_model(s.seed)
        runs.append(job.fit(m, tr, va, f"fold{i}", f"fold {i + 1}/{s.kfold}"))
        models_.append(m)
    chosen = int(np.argmin([h["best_val_loss"] for h in runs]))
    fold_metrics = [evaluate(m, job.x[va], job.y[va], loss_fn, metrics)[1] for m, (_, va) in zip(models_, folds)]
    history.update(mode="kfold", folds=runs, fold_metrics=fold_metrics, chosen_fold=chosen,
                   kfold_mean={k: float(np.mean([f[k] for f in fold_metrics])) for k in fold_metrics[0]},
                   kfold_std={k: float(np.std([f[k] for f in fold_metrics])) for k in fold_metrics[0]})
    return models_[chosen], runs[chosen], folds[chosen][1]


def _train_split(job: _Job, from_config: bool, history: dict[str, Any]):
    """One model (or an ensemble of the config's) on the per-file split; (model, its history, validation rows)."""
    s = job.config.training
    source = job.data.source
    assert source is not None  # concat_training_data records each row's file
    tr, va = split_by_source(source, s.validation, s.seed)
    if job.config.model.is_ensemble and from_config:
        model, top, members_h = _train_ensemble(job, tr, va)
        history.update(mode="ensemble", members=members_h)
    else:
        model = job.new_model(s.seed)
        top = job.fit(model, tr, va, "", job.config.name)
        history.update(mode="single")
    return model, top, va


def _train_ensemble(job: _Job, tr: np.ndarray, va: np.ndarray):
    """Members on bootstrap resamples of the training split; LSTM ensembles then fit their combiner."""
    config = job.config
    s = config.training
    base = dataclasses.replace(config.model, type=config.model.base)
    members, runs = [], []
    for i in range(s.members):
        m = job.new_model(s.seed * 1000 + i, spec=base)
        runs.append(job.fit(m, bootstrap_indices(tr, s.seed, i), va, f"member{i}", f"member {i + 1}/{s.members}"))
        members.append(m)
    if config.model.base == "mdn":
        return MDNEnsemble(members).to(job.x.device), runs[int(np.argmin([h["best_val_loss"] for h in runs]))], runs
    model = LSTMEnsemble(members, job.y.shape[1]).to(job.x.device)
    model.freeze_members()
    top = job.fit(model, tr, va, "combiner", "combiner", settings=dataclasses.replace(s, epochs=s.combiner_epochs),
                  params=[p for p in model.parameters() if p.requires_grad])
    return model, top, runs


def _finish(job: _Job, paths: list, model: nn.Module, top: dict, val_idx: np.ndarray, loss_fn: LossFn,
            history: dict[str, Any]):
    """Final validation metrics, the history, and the Emulator (saved to --out when given)."""
    config, data = job.config, job.data
    val_loss, val_metrics = evaluate(model, job.x[val_idx], job.y[val_idx], loss_fn, metrics)
    history.update(epochs=top["epochs"], best_epoch=top["best_epoch"], stopped=top["stopped"],
                   resumed_from_epoch=top["resumed_from_epoch"], validation_loss=val_loss,
                   validation_metrics=val_metrics, n_validation=int(len(val_idx)))
    history = json_safe(history)
    model.eval()
    meta = {"training_config": config.to_dict(), "history": history, "validation_metrics": val_metrics,
            "data_sha256": data.sha256, "data_file": " + ".join(os.path.basename(str(p)) for p in paths)}
    emulator = Emulator(model, data.protocol, data.mean, data.std, data.transforms, meta)
    if job.out is not None:
        save_emulator(emulator, job.out)
    return emulator, history


def _load_init(path: str | os.PathLike, data: TrainingData, config: TrainConfig):
    """(emulator, weights hash) behind --init, checked against the data's protocol and the config."""
    emu = load_emulator(path, device="cpu")
    if emu.protocol.name != data.protocol.name or emu.param_names != data.protocol.param_names:
        raise UserError(f"--init {path}: an emulator of {emu.protocol.name!r} ({', '.join(emu.param_names)}), but the "
                        f"data hold {data.protocol.name!r} ({', '.join(data.protocol.param_names)})")
    if config.model.is_ensemble or config.training.kfold:
        raise ConfigError(f"{config.source}: --init starts one network; it cannot seed an ensemble or k-fold run")
    return emu, str(read_emulator_metadata(path)["weights_sha256"])


def _copy_weights(emu, model: nn.Module, path, config: TrainConfig) -> None:
    """Load the --init emulator's weights into `model`; a network of m times the --init network's mixture
    components (and otherwise the same) starts from the widened weights (emulators.widen), said on stderr.
    UserError when the architectures differ otherwise."""
    try:
        model.load_state_dict(emu.model.state_dict(), strict=True)
        return
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
    arch: dict[str, Any] = getattr(emu.model, "architecture", lambda: {})()
    new_arch: dict[str, Any] = getattr(model, "architecture", lambda: {})()
    try:
        factor = widening_factor(arch, new_arch)
    except ValueError as why:
        raise UserError(f"--init {path}: its network ({arch.get('type', '?')}, hidden {arch.get('hidden', '?')}, "
                        f"{arch.get('components', '?')} components) does not match the [model] of {config.source} "
                        f"({first}; {why}); use the same [model] section") from None
    mixture = cast(MDN | ConditionalMDN, model)  # widening_factor accepted it: an mdn or mdn_conditional network
    model.load_state_dict(widen_state(emu.model.state_dict(), arch, factor, mixture.family.raw_size), strict=True)
    print(f"--init {os.path.basename(str(path))}: {arch['components']} mixture components widened to "
          f"{new_arch['components']} (each copied {factor}x, same mixture)", file=sys.stderr)
