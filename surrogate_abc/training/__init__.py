"""Training emulators on binned data: configs, the mini-batch loop, checkpoints and the `train` command.

One concept per module:
  config      ModelSpec, TrainSettings, TrainConfig; load_train_config / parse_train_config
  data        TrainingData (features x, targets y), load / concat_training_data, the seeded row splits
  checkpoint  save / load_checkpoint, the optimizer state as tensors, json_safe, the run fingerprint
  callbacks   what ends or adjusts a run after an epoch: early stopping, lr decay on plateau, time limit
  loop        fit (the epoch loop), evaluate, make_optimizer, resolve_device
  run         train (single split, k-fold, ensembles, --init warm start), build_network
  summary     format_summary

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

from ..data.scaling import features
from ..emulators.layers import ACTIVATIONS
from ..emulators.models import LSTM_OPTIONS, make_binning
from .callbacks import (
    Callback,
    EarlyStopping,
    EpochEnd,
    LRDecayOnPlateau,
    TimeLimit,
    default_callbacks,
)
from .checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_fingerprint,
    checkpoint_path,
    flatten_optimizer_state,
    json_safe,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from .config import (
    MODEL_TYPES,
    OPTIMIZERS,
    ModelSpec,
    TrainConfig,
    TrainSettings,
    load_train_config,
    parse_train_config,
)
from .data import (
    TrainingData,
    bootstrap_indices,
    concat_training_data,
    kfold_indices,
    load_training_data,
    split_by_source,
    split_indices,
    targets,
)
from .loop import (
    EVAL_CHUNK,
    LossFn,
    MetricsFn,
    evaluate,
    fit,
    make_optimizer,
    resolve_device,
)
from .run import ModelFactory, build_network, train
from .summary import format_summary

__all__ = [
    # config
    "MODEL_TYPES", "OPTIMIZERS", "ACTIVATIONS", "ModelSpec", "TrainSettings", "TrainConfig",
    "load_train_config", "parse_train_config",
    # data
    "TrainingData", "features", "targets", "load_training_data", "concat_training_data",
    "split_by_source", "split_indices", "kfold_indices", "bootstrap_indices",
    # checkpoints
    "CHECKPOINT_FORMAT", "checkpoint_path", "checkpoint_fingerprint", "flatten_optimizer_state",
    "unflatten_optimizer_state", "save_checkpoint", "load_checkpoint", "json_safe",
    # callbacks and the loop
    "Callback", "EpochEnd", "EarlyStopping", "LRDecayOnPlateau", "TimeLimit", "default_callbacks",
    "EVAL_CHUNK", "LossFn", "MetricsFn", "resolve_device", "make_optimizer", "evaluate", "fit",
    # networks and train()
    "make_binning", "LSTM_OPTIONS", "build_network", "ModelFactory", "train",
    "format_summary",
]
