"""The epoch loop `fit`: mini-batch training, a checkpoint after every epoch and resume from it, with the
callbacks (early stopping, learning-rate decay, time limit) deciding after each epoch; `evaluate`,
`make_optimizer`, `resolve_device`.

The whole dataset stays as float32 tensors on the device; mini-batches come from a randperm whose
generator is seeded by (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import UserError
from .callbacks import Callback, EpochEnd, default_callbacks, run_callbacks
from .checkpoint import load_checkpoint, save_checkpoint, unflatten_optimizer_state
from .config import TrainSettings

EVAL_CHUNK = 65536

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricsFn = Callable[[torch.Tensor, torch.Tensor], Mapping[str, float]]


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
    total, n = 0.0, x.shape[0]
    mets: dict[str, float] = {}
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


@dataclass
class _Run:
    """A run's progress besides the current weights and the optimizer: what its checkpoint's header holds."""

    hist: dict[str, Any]
    best: dict[str, torch.Tensor]
    since_best: int = 0
    start: int = 1  # the first epoch still to run

    def meta(self, fingerprint: str, epoch: int) -> dict[str, Any]:
        return {"fingerprint": fingerprint, "epoch": epoch, "since_best": self.since_best, "history": self.hist}

    def finished(self) -> bool:
        """Whether a resumed run had ended for good (early stopping or a non-finite loss; not its budget)."""
        return (self.hist.get("stopped") or {}).get("reason") in ("early_stopping", "non_finite")


def fit(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
        *, loss_fn: LossFn, settings: TrainSettings, metrics_fn: MetricsFn | None = None,
        checkpoint: Path | None = None, fingerprint: str = "", resume: bool = True,
        progress: bool = False, desc: str = "train", loss_name: str = "loss",
        params: list[nn.Parameter] | None = None, callbacks: Sequence[Callback] | None = None) -> dict[str, Any]:
    """Mini-batch training with early stopping on the validation loss; the model ends with the best weights.

    All tensors must already be on the model's device. Returns the history: per-epoch records
    (epoch, train_loss, val_loss, val_<metric>..., seconds, lr), best_epoch, best_val_loss,
    resumed_from_epoch and stopped = {reason: early_stopping|max_epochs|time_limit|non_finite, epoch, ...}.
    `params` restricts the optimised parameters (e.g. an ensemble's combining layer); `callbacks` replaces
    the ones the settings ask for (callbacks.default_callbacks).
    """
    device = x_train.device
    s = settings
    optimizer = make_optimizer(params if params is not None else model.parameters(), s)
    run = _Run({"epochs": [], "best_epoch": 0, "best_val_loss": math.inf, "resumed_from_epoch": 0, "stopped": None},
               _clone_state(model))
    if checkpoint is not None and resume and checkpoint.exists():
        run = _resume(checkpoint, fingerprint, model, optimizer, device) or run
        if run.finished():
            model.load_state_dict(run.best)
            return run.hist
        run.hist["stopped"] = None
    n = x_train.shape[0]
    bs = min(s.batch_size, n)
    bar = tqdm(total=s.epochs, initial=run.start - 1, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    model.train()
    teacher = getattr(model, "ar_order", 0) > 0  # autoregressive LSTM: teacher forcing with the true bins
    epoch = run.start - 1
    callbacks = default_callbacks(s) if callbacks is None else list(callbacks)
    for epoch in range(run.start, s.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=_epoch_generator(s.seed, epoch, device), device=device)
        total, bad = _train_epoch(model, optimizer, x_train, y_train, loss_fn, perm, bs, teacher)
        if bad is None:
            val_loss, mets = evaluate(model, x_val, y_val, loss_fn, metrics_fn)
            if not math.isfinite(val_loss):
                bad = ("validation", val_loss)
        if bad is not None:
            _stop_non_finite(model, run, epoch, bad, loss_name)
            break
        rec = {"epoch": epoch, "train_loss": float(total) / n, "val_loss": val_loss,
               **{f"val_{k}": v for k, v in mets.items()}, "seconds": time.perf_counter() - t0}
        _track_best(run, model, epoch, rec)
        run.hist["stopped"] = run_callbacks(callbacks, EpochEnd(epoch, s.epochs, val_loss, run.since_best, optimizer))
        rec["lr"] = optimizer.param_groups[0]["lr"]
        bar.update(1)
        bar.set_postfix(train=f"{rec['train_loss']:.4g}", val=f"{val_loss:.4g}",
                        **({"H2": f"{mets['H2']:.3g}"} if "H2" in mets else {}))
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, run.best, optimizer, run.meta(fingerprint, epoch))
        if run.hist["stopped"] is not None:
            break
    bar.close()
    if run.hist["stopped"] is None:
        run.hist["stopped"] = {"reason": "max_epochs", "epoch": epoch}
    elif run.hist["stopped"]["reason"] == "non_finite" and checkpoint is not None:
        save_checkpoint(checkpoint, model, run.best, optimizer, run.meta(fingerprint, epoch))
    model.load_state_dict(run.best)
    return run.hist


def _resume(checkpoint: Path, fingerprint: str, model: nn.Module, optimizer: torch.optim.Optimizer,
            device: torch.device) -> _Run | None:
    """Load weights and optimizer state from the checkpoint of the same run; None (with a warning) otherwise."""
    loaded = load_checkpoint(checkpoint, stacklevel=4)  # the warnings name fit's caller
    if loaded is not None and loaded[1].get("fingerprint") != fingerprint:
        warnings.warn(f"{checkpoint}: checkpoint is from a different config or data file; starting over",
                      stacklevel=3)
        loaded = None
    if loaded is None:
        return None
    tensors, meta = loaded
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
    optimizer.load_state_dict(unflatten_optimizer_state(tensors, meta["optimizer"]))
    run = _Run(meta["history"], best, int(meta["since_best"]), int(meta["epoch"]) + 1)
    run.hist["resumed_from_epoch"] = run.start - 1
    return run


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 loss_fn: LossFn, perm: torch.Tensor, bs: int, teacher: bool
                 ) -> tuple[torch.Tensor, tuple[str, float] | None]:
    """One pass over the mini-batches of `perm`: (summed loss x rows, None) or, at a non-finite loss, the
    partial sum and ("train", value) without taking that step."""
    total = torch.zeros((), device=x.device, dtype=torch.float64)
    for i in range(0, x.shape[0], bs):
        idx = perm[i:i + bs]
        yb = y[idx]
        loss = loss_fn(model(x[idx], y_teacher=yb) if teacher else model(x[idx]), yb)
        if not torch.isfinite(loss):
            return total, ("train", float(loss.detach()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * idx.shape[0]
    return total, None


def _track_best(run: _Run, model: nn.Module, epoch: int, rec: dict[str, Any]) -> None:
    """Append the epoch's record; keep the weights when the validation loss improved, else count the epoch."""
    run.hist["epochs"].append(rec)
    if rec["val_loss"] < run.hist["best_val_loss"]:
        run.hist["best_val_loss"], run.hist["best_epoch"], run.since_best = rec["val_loss"], epoch, 0
        run.best = _clone_state(model)
    else:
        run.since_best += 1


def _stop_non_finite(model: nn.Module, run: _Run, epoch: int, bad: tuple[str, float], loss_name: str) -> None:
    """A NaN/inf train or validation loss: back to the best weights, and the run stops saying so."""
    which, value = bad
    model.load_state_dict(run.best)
    run.hist["stopped"] = {"reason": "non_finite", "epoch": epoch, "loss": which, "loss_name": loss_name,
                           "value": repr(value), "restored_epoch": run.hist["best_epoch"]}
    warnings.warn(f"training stopped at epoch {epoch}: the {which} {loss_name} loss is {value}; "
                  f"restored the best weights (epoch {run.hist['best_epoch']})", RuntimeWarning, stacklevel=3)
