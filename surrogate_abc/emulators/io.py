"""Save and load emulators as ONE .safetensors file: the weights, plus JSON metadata in the header.

Header metadata key "surrogate_abc" holds JSON with: format "surrogate-abc/emulator", format_version,
package_version, architecture, config_toml (the protocol), param_names, species, edges, scaling
{mean, std, transforms}, weights_sha256 (of the tensors, checked on load), and the emulator's own
metadata (training config, history, validation metrics, data_sha256, ...) as further top-level keys.
No pickle anywhere. Writes go to a temporary file that is renamed into place (atomic).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import __version__
from ..config import parse_protocol
from ..errors import DataFileError, UserError
from .emulator import Emulator
from .layers import architecture_of
from .models import build_model, make_binning, needs_binning

EMULATOR_FORMAT = "surrogate-abc/emulator"
EMULATOR_FORMAT_VERSION = 1
META_KEY = "surrogate_abc"
CORE_KEYS = ("format", "format_version", "package_version", "architecture", "config_toml", "network_toml", "param_names",
             "species", "edges", "scaling", "weights_sha256")


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_emulator(emulator: Emulator, path: str | os.PathLike) -> Path:
    """Write `emulator` to `path` (.safetensors) atomically; returns the path."""
    path = Path(path)
    tensors = _state_tensors(emulator.model)
    meta: dict[str, Any] = {k: v for k, v in emulator.metadata.items() if k not in CORE_KEYS}
    meta.update({
        "format": EMULATOR_FORMAT,
        "format_version": EMULATOR_FORMAT_VERSION,
        "package_version": __version__,
        "architecture": architecture_of(emulator.model),
        "config_toml": emulator.protocol.toml_text, "network_toml": emulator.protocol.network_toml,
        "param_names": list(emulator.param_names),
        "species": list(emulator.species),
        "edges": {s: np.asarray(e, dtype=float).tolist() for s, e in zip(emulator.species, emulator.edges)},
        "scaling": {"mean": emulator.scaling_mean.tolist(), "std": emulator.scaling_std.tolist(),
                    "transforms": list(emulator.transforms)},
        "weights_sha256": weights_sha256(tensors),
    })
    if not emulator.protocol.toml_text:
        raise UserError("cannot save an emulator whose protocol has no TOML text; load the protocol with "
                        "surrogate_abc.load_protocol or parse_protocol")
    try:
        header = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: emulator metadata is not JSON-serialisable ({exc}); store plain numbers, "
                        f"strings, lists and dicts") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={META_KEY: header})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _bad(path: Path, why: str) -> DataFileError:
    return DataFileError(f"{path}: not a surrogate-abc emulator file ({why}); give a .safetensors file written "
                         f"by `surrogate-abc train` or save_emulator")


def read_emulator_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of an emulator file, validated (format and version), without building the model."""
    return _read(Path(path), tensors=False)[0]


def _read(path: Path, tensors: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    if not path.is_file():
        raise DataFileError(f"{path}: emulator file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata()
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as exc:  # safetensors raises SafetensorError / OSError on garbage or truncation
        raise _bad(path, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'unreadable'}") from None
    if not header or META_KEY not in header:
        raise _bad(path, f"a safetensors file without the '{META_KEY}' metadata key")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise _bad(path, f"metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != EMULATOR_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise _bad(path, f"format is {got!r}, expected {EMULATOR_FORMAT!r}")
    ver = meta.get("format_version")
    if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
        raise _bad(path, f"format_version {ver!r} is invalid")
    if ver > EMULATOR_FORMAT_VERSION:
        raise DataFileError(f"{path}: emulator format_version {ver} is newer than this surrogate-abc {__version__} "
                            f"supports (format_version {EMULATOR_FORMAT_VERSION}); upgrade surrogate-abc")
    missing = [k for k in CORE_KEYS if k not in meta and k != "network_toml"]  # network_toml: since 0.2
    if missing:
        raise _bad(path, f"metadata lacks {', '.join(missing)}")
    return meta, out


def load_emulator(path: str | os.PathLike, device: str | torch.device | None = None) -> Emulator:
    """Read an emulator written by save_emulator; DataFileError (one line) on a damaged or foreign file."""
    path = Path(path)
    meta, tensors = _read(path, tensors=True)
    if weights_sha256(tensors) != meta["weights_sha256"]:
        raise DataFileError(f"{path}: the weights do not match their checksum (weights_sha256); the file is "
                            f"damaged; retrain or restore it")
    try:
        protocol = parse_protocol(meta["config_toml"], source=f"{path} (embedded protocol)",
                                  network_toml=meta.get("network_toml"))
        scaling = meta["scaling"]
        binning = make_binning(protocol) if needs_binning(meta["architecture"]) else None
        model = build_model(meta["architecture"], binning)
    except UserError as exc:
        raise DataFileError(f"{path}: cannot rebuild the emulator ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFileError(f"{path}: cannot rebuild the emulator from its metadata ({type(exc).__name__}: {exc}); "
                            f"the file is damaged or from an incompatible version") from None
    expected = model.state_dict()
    if set(expected) != set(tensors):
        extra, lack = sorted(set(tensors) - set(expected)), sorted(set(expected) - set(tensors))
        raise DataFileError(f"{path}: tensors do not match the architecture (unexpected: {extra[:3]}, missing: "
                            f"{lack[:3]}); the file is damaged")
    for k, v in expected.items():
        if tuple(v.shape) != tuple(tensors[k].shape) or v.dtype != tensors[k].dtype:
            raise DataFileError(f"{path}: tensor {k} has shape {tuple(tensors[k].shape)} {tensors[k].dtype}, the "
                                f"architecture needs {tuple(v.shape)} {v.dtype}; the file is damaged")
    model.load_state_dict(tensors, strict=True)
    extra_meta = {k: v for k, v in meta.items() if k not in CORE_KEYS}
    try:
        em = Emulator(model, protocol, scaling["mean"], scaling["std"], scaling["transforms"], extra_meta,
                      source=str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFileError(f"{path}: invalid scaling metadata ({exc}); the file is damaged") from None
    if list(em.param_names) != list(meta["param_names"]):
        raise DataFileError(f"{path}: param_names {meta['param_names']} disagree with the embedded protocol "
                            f"({list(em.param_names)}); the file is damaged")
    return em.to(device) if device is not None else em
