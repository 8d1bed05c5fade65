"""An emulator's accuracy on held-out exact targets (a binned file of FSP or closed-form distributions)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ..errors import UserError

DEFAULT_MAX_TAIL_MASS = 1e-3  # as in training: a set whose FSP truncation missed more has no exact target


def heldout_metrics(emulator: Any, binned: Path, max_tail_mass: float = DEFAULT_MAX_TAIL_MASS
                    ) -> tuple[dict[str, float], int, int]:
    """(losses.metrics of the emulator's pmf against the float64 targets of `binned`, sets used, sets left out
    because their FSP tail mass exceeds max_tail_mass); UserError when the file's histogram is not the
    emulator's."""
    from ..losses import metrics
    from .data import load_training_data

    data = load_training_data(binned)
    keep = data.tail_mass <= max_tail_mass if data.tail_mass is not None else np.ones(len(data.theta), bool)
    if not keep.any():
        raise UserError(f"{binned}: no set has an exact target (every FSP tail mass > {max_tail_mass:g})")
    probs, over = emulator.pmf(data.theta[keep])
    n = len(over)
    with h5py.File(binned) as f:  # exact float64 targets straight from the file
        hist = f["hist"][()][keep]
        truth = np.concatenate([hist.reshape(n, -1), f["overflow"][()][keep][:, None]], axis=1)
    if hist.shape[1:] != np.shape(probs)[1:]:
        raise UserError(f"{binned}: histograms of shape {hist.shape[1:]}, the emulator's are {np.shape(probs)[1:]}; "
                        f"bin the file with the emulator's protocol")
    pred = np.concatenate([np.asarray(probs).reshape(n, -1), np.asarray(over)[:, None]], axis=1)
    m = {k: float(v) for k, v in metrics(torch.from_numpy(pred), torch.from_numpy(truth)).items()}
    return m, n, int((~keep).sum())



def compare_on_heldout(before: Any, after: Any, binned: Path, max_tail_mass: float = DEFAULT_MAX_TAIL_MASS
                       ) -> tuple[dict[str, float], dict[str, float], dict[str, Any], str]:
    """Two emulators measured on the same held-out file (heldout_metrics): (metrics of `before`, metrics of
    `after`, the `validation_data` record an emulator's metadata keeps, "H2 b -> a, ..." for a summary line)."""
    from ..data.schema import file_sha256

    b, used, left = heldout_metrics(before, binned, max_tail_mass)
    a, _, _ = heldout_metrics(after, binned, max_tail_mass)
    record = {"file": Path(binned).name, "sha256": file_sha256(binned), "sets": used, "left_out": left,
              "max_tail_mass": max_tail_mass}
    return b, a, record, ", ".join(f"{k} {b[k]:.3g} -> {a[k]:.3g}" for k in a)
