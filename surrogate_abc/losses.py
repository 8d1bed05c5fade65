"""Training losses and evaluation metrics between predicted and true distributions (the thesis' set).

All take (y_pred, y_true) of shape (n, C): one distribution per row (bin masses, last column the
overflow). Losses return a scalar tensor averaged over the batch; `metrics` returns plain floats.
Zeros are handled by clamping at `eps` before sqrt / log, so values and gradients stay finite.
In the formulas x = y_true, y = y_pred:

  hellinger   the thesis' H2 = 2 sum_t (sqrt(y_t) - sqrt(x_t))^2 (in [0, 4]; 4x the squared Hellinger
              distance of surrogate_abc.metrics): `thesis_h2`
  mdd_kld     max(KL(x || y), KL(y || x)),  KL(x || y) = sum_t x_t (log x_t - log y_t)
  mdd_ed      max(ED(x, y), ED(y, x)),      ED(x, y) = sum_t x_t (log x_t - log y_t)^2
  l1          mean_t |y_t - x_t|
  mse         mean_t (y_t - x_t)^2
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .errors import UserError

EPS = 1e-12


def _pair(y_pred, y_true) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as 2-D tensors of a common floating dtype (numpy input becomes float64)."""
    y = torch.as_tensor(y_pred)
    x = torch.as_tensor(y_true, device=y.device)
    dtype = torch.promote_types(y.dtype, x.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    y, x = y.to(dtype), x.to(dtype)
    if y.shape != x.shape:
        raise ValueError(f"y_pred {tuple(y.shape)} and y_true {tuple(x.shape)} must have the same shape")
    if y.ndim == 1:
        y, x = y[None], x[None]
    return y.reshape(y.shape[0], -1), x.reshape(x.shape[0], -1)


def _log(t: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.log(t.clamp(min=eps))


def thesis_h2_rows(y_pred, y_true, eps: float = EPS) -> torch.Tensor:
    """Per-row 2 * sum_t (sqrt(y) - sqrt(x))^2, shape (n,)."""
    y, x = _pair(y_pred, y_true)
    return 2.0 * ((torch.sqrt(y.clamp(min=eps)) - torch.sqrt(x.clamp(min=eps))) ** 2).sum(dim=1)


def kl_rows(p, q, eps: float = EPS) -> torch.Tensor:
    """Per-row KL(p || q) = sum_t p (log p - log q), shape (n,); p_t = 0 contributes 0."""
    q, p = _pair(q, p)
    return (p * (_log(p, eps) - _log(q, eps))).sum(dim=1)


def ed_rows(p, q, eps: float = EPS) -> torch.Tensor:
    """Per-row ED(p, q) = sum_t p (log p - log q)^2, shape (n,)."""
    q, p = _pair(q, p)
    return (p * (_log(p, eps) - _log(q, eps)) ** 2).sum(dim=1)


def thesis_h2(y_pred, y_true, eps: float = EPS) -> torch.Tensor:
    """The thesis' H2 loss 2 sum_t (sqrt(y) - sqrt(x))^2 (4x the squared Hellinger distance), batch mean."""
    return thesis_h2_rows(y_pred, y_true, eps).mean()


def kld(y_pred, y_true, eps: float = EPS) -> torch.Tensor:
    """KL(x || y) per row (target x, prediction y: the per-cell shift of a log-likelihood), averaged over the batch."""
    return kl_rows(y_true, y_pred, eps).mean()


def mdd_kld(y_pred, y_true, eps: float = EPS) -> torch.Tensor:
    """max(KL(x || y), KL(y || x)) per row, averaged over the batch."""
    return torch.maximum(kl_rows(y_true, y_pred, eps), kl_rows(y_pred, y_true, eps)).mean()


def mdd_ed(y_pred, y_true, eps: float = EPS) -> torch.Tensor:
    """max(ED(x, y), ED(y, x)) per row, averaged over the batch."""
    return torch.maximum(ed_rows(y_true, y_pred, eps), ed_rows(y_pred, y_true, eps)).mean()


def l1(y_pred, y_true) -> torch.Tensor:
    """Mean absolute difference over all entries."""
    y, x = _pair(y_pred, y_true)
    return (y - x).abs().mean()


def mse(y_pred, y_true) -> torch.Tensor:
    """Mean squared difference over all entries."""
    y, x = _pair(y_pred, y_true)
    return ((y - x) ** 2).mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "hellinger": thesis_h2,
    "mdd_kld": mdd_kld,
    "kld": kld,
    "mdd_ed": mdd_ed,
    "l1": l1,
    "mse": mse,
}

METRIC_NAMES = ("H2", "MSE", "KLD", "L1max", "L1")


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss function registered under `name`; UserError listing the known names otherwise."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown loss {name!r}; use one of {', '.join(LOSSES)}") from None


def metrics(y_pred, y_true, eps: float = EPS) -> dict[str, float]:
    """The thesis' table columns, averaged over rows: H2 (as the loss), MSE (mean over entries),
    KLD = KL(y_true || y_pred), L1max = max_t |y - x|, L1 = mean_t |y - x|. Torch or numpy input."""
    with torch.no_grad():
        y, x = _pair(y_pred, y_true)
        diff = (y - x).abs()
        return {
            "H2": float(thesis_h2_rows(y, x, eps).mean()),
            "MSE": float((diff ** 2).mean()),
            "KLD": float(kl_rows(x, y, eps).mean()),
            "L1max": float(diff.max(dim=1).values.mean()),
            "L1": float(diff.mean()),
        }


def metrics_rows(y_pred, y_true, eps: float = EPS) -> dict[str, np.ndarray]:
    """The same metrics per row (numpy arrays of shape (n,)), e.g. to find the worst-fitted parameters."""
    with torch.no_grad():
        y, x = _pair(y_pred, y_true)
        diff = (y - x).abs()
        out = {"H2": thesis_h2_rows(y, x, eps), "MSE": (diff ** 2).mean(dim=1), "KLD": kl_rows(x, y, eps),
               "L1max": diff.max(dim=1).values, "L1": diff.mean(dim=1)}
        return {k: v.detach().cpu().numpy().astype(np.float64) for k, v in out.items()}
