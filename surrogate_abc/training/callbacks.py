"""What the epoch loop (loop.fit) asks after every epoch: callbacks that may change the optimizer or end the run.

Each callback has one method, on_epoch_end(state) -> None to go on, or the record of why the run stops
({"reason": ..., "epoch": ...}; the first callback to stop wins). The loop keeps what a checkpoint must
restore (best weights, epochs since the best; the learning rate lives in the optimizer state), and hands
it to the callbacks in EpochEnd, so a resumed run behaves as an uninterrupted one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch

from .config import TrainSettings

Stop = dict[str, Any]  # {"reason": early_stopping | time_limit | ..., "epoch": int}


@dataclass(frozen=True)
class EpochEnd:
    """The loop's state after an epoch's validation."""

    epoch: int
    epochs: int  # the epoch budget of the run
    val_loss: float
    since_best: int  # epochs since the validation loss last improved (0: this epoch is the best so far)
    optimizer: torch.optim.Optimizer


class Callback(Protocol):
    def on_epoch_end(self, state: EpochEnd) -> Stop | None:
        """None to go on, or why the run stops."""


class LRDecayOnPlateau:
    """Multiply the learning rate by `factor` (not below `min_lr`) every `patience` epochs without improvement."""

    def __init__(self, factor: float, patience: int, min_lr: float):
        self.factor, self.patience, self.min_lr = factor, patience, min_lr

    def on_epoch_end(self, state: EpochEnd) -> Stop | None:
        if state.since_best > 0 and state.since_best % self.patience == 0:
            for group in state.optimizer.param_groups:  # the lr lives in the optimizer state: checkpointed with it
                group["lr"] = max(group["lr"] * self.factor, self.min_lr)
        return None


class EarlyStopping:
    """Stop after `patience` epochs without improvement of the validation loss."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, state: EpochEnd) -> Stop | None:
        if state.since_best >= self.patience:
            return {"reason": "early_stopping", "epoch": state.epoch}
        return None


class TimeLimit:
    """Stop once `seconds` of wall time have passed since it was made (the start of the loop), unless the
    epoch budget ends the run anyway. It ends the run like max_epochs: a rerun with more time resumes it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()

    def on_epoch_end(self, state: EpochEnd) -> Stop | None:
        if time.perf_counter() - self.start >= self.seconds and state.epoch < state.epochs:
            return {"reason": "time_limit", "epoch": state.epoch}
        return None


def default_callbacks(s: TrainSettings) -> list[Callback]:
    """The callbacks the [training] settings ask for, in the order they run: lr decay (lr_decay < 1), early
    stopping (patience), time limit (max_seconds > 0)."""
    callbacks: list[Callback] = []
    if s.lr_decay < 1.0:
        callbacks.append(LRDecayOnPlateau(s.lr_decay, s.lr_patience, s.min_lr))
    callbacks.append(EarlyStopping(s.patience))
    if s.max_seconds > 0:
        callbacks.append(TimeLimit(s.max_seconds))
    return callbacks


def run_callbacks(callbacks: Sequence[Callback], state: EpochEnd) -> Stop | None:
    """Every callback sees the epoch; the first stop returned (or None) ends the run."""
    stop = None
    for cb in callbacks:
        got = cb.on_epoch_end(state)
        if stop is None:
            stop = got
    return stop
