"""The human-readable summary of a training run (what `surrogate-abc train` prints)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


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
