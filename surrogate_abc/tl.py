"""Tools on an in-memory AnnData, scanpy style (`import surrogate_abc as sa; sa.tl.bursting(adata)`).

`bursting` runs the batch method (`surrogate-abc infer counts.h5ad`, inference/transcriptome/) on adata's raw
counts and writes each gene's posterior summary into `adata.var`, as scvelo writes its fits: columns
`burst_frequency_median`, `burst_frequency_q05`, `burst_frequency_q95`, the same for `burst_size` and every
parameter (`<variable>_ess`, `_r_hat` too), `ess`, `flags`, `ppc_p`, `method`, ... (the columns of genes.csv) and
`skipped` (why a gene was not inferred; its other columns NaN). `adata.uns["surrogate_abc"]` records the settings,
the emulator and its SHA-256, and the versions. Importing this module imports nothing heavy.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

    from .inference.transcriptome.refine import BatchSettings

__all__ = ["bursting"]


def bursting(adata: AnnData, layer: str | None = None, genes: Sequence[str] | Any = None, size_factors: Any = None, *,
             emulator: str | os.PathLike[str] | None = None, capture: float | None = None,
             capture_prior: tuple[float, float] | None = None, prior: Mapping[str, tuple[float, float]] | None = None,
             min_cells: int = 10, seed: int = 0, batch: BatchSettings | None = None, progress: bool = False,
             out: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Burst kinetics of every gene of `adata` (or of `genes`), filled into `adata.var` in place; returns the
    per-gene table (the rows of genes.csv, a DataFrame indexed by gene).

    adata: cells x genes AnnData of raw integer counts in X, or in `layer` (dense, CSR or CSC; read in blocks,
        never copied whole; negative, NaN or fractional values stop with one line naming the gene and cell).
    genes: names (or a boolean mask over var, e.g. `adata.var.highly_variable`) of the genes to infer; default all.
    size_factors: per-cell capture: 'total' (each cell's total count over the mean total) or an obs column of
        size factors; needs capture= or capture_prior= (the mean cell's efficiency). Default: one capture for all.
    emulator: an emulator .safetensors, a protocol name or "exact:<protocol>" (default: the shipped mRNA one).
    capture / capture_prior: the detection probability, fixed or inferred on (LOW, HIGH) (binomial thinning).
    prior: narrowed priors {parameter: (low, high)}. min_cells: genes with fewer non-zero cells are skipped.
    seed: the run's seed (same seed, same data: same results). batch: BatchSettings (ESS target, draws, ...).
    progress: progress bars and log lines. out: a folder to keep the run's files in (genes.csv, posterior.nc,
        skipped.csv, genes.png; a rerun resumes there); None: nothing is written (a temporary folder, removed).
    """
    import tempfile

    from .data.anndata_memory import is_anndata
    from .inference.transcriptome import TableRun, infer_transcriptome
    from .inference.transcriptome.anndata_io import read_results

    if not is_anndata(adata):
        raise UserError(f"bursting: adata is a {type(adata).__name__}, not an AnnData; for a file use "
                        "surrogate_abc.infer_genes(path) or `surrogate-abc infer counts.h5ad`")
    if size_factors is not None and not isinstance(size_factors, str):
        raise UserError("size_factors: give 'total' (each cell's total count over its mean) or the name of an obs "
                        "column (put an array there first: adata.obs['sf'] = ...)")
    names = _gene_names(adata, genes)
    run = TableRun("adata", str(emulator) if emulator is not None else None, names, layer, capture,
                   tuple(capture_prior) if capture_prior is not None else None,
                   {str(k): (float(v[0]), float(v[1])) for k, v in dict(prior or {}).items()}, int(min_cells),
                   int(seed), size_factors=size_factors, adata=adata)
    command = _call_text(layer=layer, genes=names, size_factors=size_factors, emulator=emulator, capture=capture,
                         capture_prior=capture_prior, prior=prior, min_cells=min_cells, seed=seed, out=out)

    def log(message: str) -> None:
        if progress:
            print(message, flush=True)

    if out is not None:
        csv_path, _ = infer_transcriptome(run, Path(out), batch, plots=True, command=command, log=log,
                                          progress=progress)
        return read_results(csv_path)
    with tempfile.TemporaryDirectory(prefix="surrogate-abc-bursting-") as tmp:
        csv_path, _ = infer_transcriptome(run, Path(tmp), batch, plots=False, command=command, log=log,
                                          progress=progress)
        return read_results(csv_path)


def _gene_names(adata: AnnData, genes: Any) -> tuple[str, ...] | None:
    """`genes` as a tuple of names: a name, names, or a boolean mask over adata.var."""
    if genes is None:
        return None
    if isinstance(genes, str):
        return (genes,)
    values = np.asarray(genes)
    if values.dtype == bool:
        if values.shape != (adata.n_vars,):
            raise UserError(f"genes: a boolean mask of {values.size} values for {adata.n_vars} genes; give one value "
                            "per gene of adata.var")
        return tuple(str(g) for g in np.asarray(adata.var_names)[values])
    return tuple(str(g) for g in values.ravel())


def _call_text(**kwargs: Any) -> str:
    """The call as text for uns["surrogate_abc"]["command"]: arguments that differ from the defaults."""
    defaults = {"min_cells": 10, "seed": 0}
    parts = []
    for k, v in kwargs.items():
        if v is None or defaults.get(k, object()) == v:
            continue
        text = repr(list(v)) if isinstance(v, tuple) else repr(v)
        parts.append(f"{k}={text if len(text) <= 200 else text[:180] + ' ...'}")
    return f"surrogate_abc.tl.bursting({', '.join(['adata', *parts])})"
