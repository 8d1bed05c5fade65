"""Training checkpoints: `<out>.ckpt.safetensors` holds the current weights, the best weights so far and the
optimizer state (all tensors; no pickle), with epoch, history and a fingerprint of config + data as JSON in
the header metadata. A different fingerprint means another config or data file: the run starts over.
`epochs` and `max_seconds` are not part of the fingerprint, so a finished run is extended by rerunning it
with a larger budget."""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .config import TrainConfig

CHECKPOINT_FORMAT = "surrogate-abc/checkpoint"


def checkpoint_path(out: Path | None, tag: str) -> Path | None:
    """Where the run `tag` ('' for a single model, fold<i>, member<i>, combiner) of `out` checkpoints."""
    if out is None:
        return None
    suffix = ".ckpt.safetensors" if not tag else f".{tag}.ckpt.safetensors"
    return out.with_name(out.name + suffix)


def checkpoint_fingerprint(config: TrainConfig, data_sha: str, tag: str) -> str:
    """Hash of the config (less epochs, max_seconds and its file name), the data and the run tag."""
    d = config.to_dict()
    d["training"].pop("epochs")
    d["training"].pop("max_seconds")
    d.pop("source")
    return hashlib.sha256(json.dumps([d, data_sha, tag], sort_keys=True).encode()).hexdigest()


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
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best.items()})
    opt_t, opt_meta = flatten_optimizer_state(optimizer.state_dict())
    tensors.update(opt_t)
    header = {"format": CHECKPOINT_FORMAT, "optimizer": opt_meta, **meta}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"surrogate_abc": json.dumps(header)})
    os.replace(tmp, path)


def load_checkpoint(path: Path, stacklevel: int = 3) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, meta) of a checkpoint, or None (with a warning at `stacklevel`) when it cannot be read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["surrogate_abc"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a training checkpoint")
    except Exception as exc:  # damaged/foreign: start over rather than fail
        warnings.warn(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc}); starting over",
                      stacklevel=stacklevel)
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
