"""Genes the batch method could not sample well (ESS below --min-ess after refinement) rerun one by one with the
per-gene ABC-SMC path (inference/genes.py, which needs pyabc); their rows and draws replace the batch ones."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ...data.gene_histograms import read_gene_cells
from ...data.joint_histograms import read_layer_counts
from ..settings import InferenceSettings
from .refine import BatchSettings, gene_seed
from .store import BatchStore

if TYPE_CHECKING:
    from .run import Prepared, TableRun


def rerun_smc(run: TableRun, prep: Prepared, store: BatchStore, low: Sequence[int], rows: list[dict[str, Any]],
               draws: np.ndarray, smc: InferenceSettings, settings: BatchSettings, out: Path, per_gene_outputs: bool,
               command: str, log: Callable[[str], None]) -> None:
    """Rerun genes `low` with the per-gene ABC-SMC path; their rows and draws are replaced (kept in the store)."""
    from ...arviz_import import import_arviz
    from ..genes import GeneTask, dir_name, run_task

    names = [rows[i]["gene"] for i in low]
    todo = [k for k in range(len(low)) if not store.has("smc", low[k])]
    counts = _counts(run, [names[k] for k in todo])
    for j, k in enumerate(todo):
        i = low[k]
        folder = out / dir_name(names[k]) if per_gene_outputs else store.dir / "smc" / dir_name(names[k])
        task = GeneTask(names[k], (names[k],), tuple(prep.emulator.species), counts[j], run.path,
                        (run.emulator,), run.capture, run.capture_prior,
                        smc.replace(prior=dict(run.prior)), str(folder), command)
        smc_row = run_task(task)
        az = import_arviz()
        idata = az.from_netcdf(str(folder / "posterior.nc"))
        post = idata.posterior
        flat = np.stack([post[n].values.ravel() for n in prep.space.names], axis=1)
        rng = gene_seed(run.seed, 10**6 + i)
        theta = flat[rng.choice(len(flat), settings.draws, replace=True)]
        idata.close()
        smc_row.update({"method": "smc", "ess": float(np.nanmin([smc_row.get(f"{n}_ess", np.nan)
                                                                 for n in prep.space.names])),
                        "evaluations": 0, "ppc_deviance": rows[i]["ppc_deviance"], "ppc_p": rows[i]["ppc_p"],
                        "flags": ";".join(f for f in rows[i]["flags"].split(";") if f and f != "low_ess"),
                        "cells": rows[i]["cells"]})  # the table's cells; cells_used (its own) stays the batch row's
        store.save("smc", i, {"draws": theta}, [smc_row])
        log(f"gene {names[k]}: ABC-SMC done ({j + 1}/{len(todo)})")
    for i in low:  # the ABC-SMC row's values in the batch row's column order
        arrays, (row,) = store.load("smc", i)
        rows[i] = {**{k: row.get(k, v) for k, v in rows[i].items()}, **row}
        draws[i] = arrays["draws"]


def _counts(run: TableRun, genes: list[str]) -> list[np.ndarray]:
    """Each gene's counts (cells it has a value in, species): with --layers in both (nascent, mature)."""
    if not genes:
        return []
    if run.layers:
        both = read_layer_counts(run.source, genes, run.layers, run.cells)
        return [both[:, j, :] for j in range(len(genes))]  # (cells, 2) each
    return [c[:, None] for c in read_gene_cells(run.source, genes, run.layer, run.cells, run.fmt)]
