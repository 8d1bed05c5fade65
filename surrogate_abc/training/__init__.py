"""Training emulators on binned data: configs, the mini-batch loop, checkpoints and the `train` command.

One concept per module:
  config      ModelSpec, TrainSettings, TrainConfig; load_train_config / parse_train_config
  data        TrainingData (features x, targets y), load / concat_training_data
  splits      the seeded row splits: split_indices, split_by_source, kfold_indices, bootstrap_indices
  checkpoint  save / load_checkpoint, the optimizer state as tensors, json_safe, the run fingerprint
  callbacks   what ends or adjusts a run after an epoch: early stopping, lr decay on plateau, time limit
  loop        fit (the epoch loop), evaluate, make_optimizer, resolve_device
  run         train (single split, k-fold, ensembles, --init warm start), build_network
  summary     format_summary

Every public name the former single module training.py had is importable from here. The data layout is described in
data.py, the batches and the resume in loop.py, the checkpoint file in checkpoint.py, the validation modes
(split, k-fold, ensembles) in run.py.
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
from .data import TrainingData, concat_training_data, load_training_data, targets
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
from .splits import bootstrap_indices, kfold_indices, split_by_source, split_indices
from .summary import format_summary

__all__ = [
    # config
    "MODEL_TYPES", "OPTIMIZERS", "ACTIVATIONS", "ModelSpec", "TrainSettings", "TrainConfig",
    "load_train_config", "parse_train_config",
    # data and splits
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
