"""Files of a batch run: posterior.nc with a `gene` dimension, skipped.csv, and (on request) a folder per gene."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from .run import Prepared, TableRun


def posterior_dataset(prep: "Prepared", rows: Sequence[Mapping[str, Any]], draws: np.ndarray):
    """xarray Dataset of the posterior: every parameter and derived variable as (chain=1, draw, gene) float64."""
    import xarray as xr

    from .run import variables

    G, D, d = draws.shape
    values = variables(prep.space, prep.emulator, draws.reshape(-1, d))
    data = {k: (("chain", "draw", "gene"), np.asarray(v, float).reshape(G, D).T[None]) for k, v in values.items()}
    coords = {"chain": [0], "draw": np.arange(D), "gene": [str(r["gene"]) for r in rows]}
    return xr.Dataset(data, coords=coords)


def gene_stats_dataset(rows: Sequence[Mapping[str, Any]]):
    """Per-gene diagnostics (gene,): cells (cells_used with --missing drop), mean, fano, ess, evaluations, ppc_deviance, ppc_p, method, flags."""
    import xarray as xr

    genes = [str(r["gene"]) for r in rows]
    numeric = ("cells",) + (("cells_used",) if rows and "cells_used" in rows[0] else ()) + (
        "mean", "fano", "ess", "evaluations", "ppc_deviance", "ppc_p", "seconds")
    data: dict[str, Any] = {k: (("gene",), np.array([float(r.get(k, np.nan)) for r in rows])) for k in numeric}
    data["method"] = (("gene",), np.array([str(r["method"]) for r in rows], dtype=object).astype(str))
    data["flags"] = (("gene",), np.array([str(r["flags"]) for r in rows], dtype=object).astype(str))
    return xr.Dataset(data, coords={"gene": genes})


def write_gene_posterior(path: Path, prep: "Prepared", rows: Sequence[Mapping[str, Any]], draws: np.ndarray,
                         run: "TableRun", command: str) -> Path:
    """posterior.nc (ArviZ InferenceData): group `posterior` (chain, draw, gene) of equally weighted draws and group
    `sample_stats` (gene) of per-gene diagnostics; attributes name the emulator, its SHA-256 and the command."""
    from ...arviz_import import import_arviz

    az = import_arviz()
    attrs = {"emulator": prep.emulator.source, "emulator_sha256": prep.sha256 or "", "command": command,
             "method": "batch", "observed": str(run.path), "seed": int(run.seed),
             "inference_library": "surrogate_abc"}
    post = posterior_dataset(prep, rows, draws)
    post.attrs.update(attrs)
    idata = az.InferenceData(posterior=post, sample_stats=gene_stats_dataset(rows))
    tmp = path.with_name(path.name + ".partial")
    idata.to_netcdf(str(tmp))
    tmp.replace(path)
    return path


def write_skipped(path: Path, skipped: Mapping[str, str]) -> Path:
    """skipped.csv: gene, reason (header only when nothing was skipped)."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["gene", "reason"])
        for g, reason in skipped.items():
            w.writerow([g, reason])
    return path


def write_gene_folders(out: Path, prep: "Prepared", rows: Sequence[Mapping[str, Any]], draws: np.ndarray) -> None:
    """OUT/<gene>/posterior.nc and summary.csv for each gene inferred by the batch method (genes rerun with ABC-SMC
    already have their folder, abc.db and plots included)."""
    from ...arviz_import import import_arviz
    from ..results_table import dir_name

    az = import_arviz()
    post = posterior_dataset(prep, rows, draws)
    for k, r in enumerate(rows):
        if r["method"] != "batch":
            continue
        folder = out / dir_name(str(r["gene"]))
        folder.mkdir(parents=True, exist_ok=True)
        one = post.isel(gene=k).drop_vars("gene")
        one.attrs.update({"gene": str(r["gene"]), "ess": float(r["ess"]), "method": "batch"})
        idata = az.InferenceData(posterior=one)
        idata.to_netcdf(str(folder / "posterior.nc"))
        az.summary(idata, kind="stats").to_csv(folder / "summary.csv")
