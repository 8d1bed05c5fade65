"""Resumable state of a batch run: OUT/.batch/ holds a manifest of what the run is, and one file per finished
block of genes (and per gene rerun with ABC-SMC). A file appears only when complete (written to a temporary
name and renamed), so a run stopped at any point (Ctrl-C, a killed process) keeps every finished block, and
the same command computes only what is missing. Each block's result depends only on the seed, the block's
index and its genes, so a resumed run equals an uninterrupted one."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...errors import UserError

STATE_DIR = ".batch"


class BatchStore:
    """OUT/.batch/: manifest.json, block_<i>.npz, smc_<i>.npz."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.dir = self.out / STATE_DIR

    def open(self, manifest: Mapping[str, Any]) -> int:
        """Create the state folder, or reuse it when its manifest equals `manifest` (a UserError naming the
        first field that differs otherwise); returns how many block files it already holds."""
        path = self.dir / "manifest.json"
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            if old is not None:
                for key, value in manifest.items():
                    if old.get(key) != _jsonable(value):
                        raise UserError(f"{self.out}: holds a batch run made with another {key} "
                                        f"({old.get(key)!r}, now {_jsonable(value)!r}); rerun with the same options to "
                                        f"resume, or use another --out (or delete {path.parent}) to start again")
                return len(list(self.dir.glob("block_*.npz")))
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_text(path, json.dumps(_jsonable(dict(manifest)), indent=1))
        return 0

    def block_path(self, kind: str, index: int) -> Path:
        return self.dir / f"{kind}_{index:06d}.npz"

    def has(self, kind: str, index: int) -> bool:
        return self.block_path(kind, index).is_file()

    def save(self, kind: str, index: int, arrays: Mapping[str, np.ndarray], rows: list[dict[str, Any]]) -> None:
        """One finished unit: its arrays and its genes' rows (as JSON), written atomically."""
        path = self.block_path(kind, index)
        tmp = path.with_name(path.name + ".partial")
        with open(tmp, "wb") as fh:
            np.savez(fh, rows=np.array(json.dumps(rows)), **dict(arrays))  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)

    def load(self, kind: str, index: int) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        with np.load(self.block_path(kind, index), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if k != "rows"}
            rows = json.loads(str(f["rows"]))
        return arrays, rows

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    tmp.replace(path)
