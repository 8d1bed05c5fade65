"""Tools on an in-memory AnnData, scanpy style (`import surrogate_abc as sa; sa.tl.bursting(adata)`).

`bursting` runs the batch method (`surrogate-abc infer counts.h5ad`, inference/transcriptome/) on adata's raw
counts and writes each gene's posterior summary into `adata.var`, as scvelo writes its fits: columns
`burst_frequency_median`, `burst_frequency_q05`, `burst_frequency_q95`, the same for `burst_size` and every
parameter (`<variable>_ess`, `_r_hat` too), `ess`, `flags`, `ppc_p`, `method`, ... (the columns of genes.csv) and
`skipped` (why a gene was not inferred; its other columns NaN). `adata.uns["surrogate_abc"]` records the settings,
the emulator and its SHA-256, and the versions. `differential_bursting(adata, groupby)` compares groups of cells
(`surrogate-abc infer counts.h5ad --groupby COLUMN`): each group's columns as `<group>_<column>` and the log2 fold
changes of burst frequency and size as `<pair>_<variable>_<column>`. Importing this module imports nothing heavy.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

    from .inference.transcriptome.refine import BatchSettings
    from .inference.transcriptome.run import TableRun

__all__ = ["bursting", "differential_bursting"]


def bursting(adata: AnnData, layer: str | None = None, genes: Sequence[str] | Any = None, size_factors: Any = None, *,
             emulator: str | os.PathLike[str] | None = None, capture: float | None = None,
             capture_prior: tuple[float, float] | None = None, prior: Mapping[str, tuple[float, float]] | None = None,
             min_cells: int = 10, seed: int = 0, batch: BatchSettings | None = None, progress: bool = False,
             out: str | os.PathLike[str] | None = None, layers: Sequence[str] | None = None) -> pd.DataFrame:
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
    layers: two layers, nascent first (e.g. ("unspliced", "spliced")): each gene from its joint counts in both,
        with the shipped telegraph_splicing emulator (adds the splicing rate beta); capture applies to both.
    seed: the run's seed (same seed, same data: same results). batch: BatchSettings (ESS target, draws, ...).
    progress: progress bars and log lines. out: a folder to keep the run's files in (genes.csv, posterior.nc,
        skipped.csv, genes.png; a rerun resumes there); None: nothing is written (a temporary folder, removed).
    """
    from .inference.transcriptome import infer_transcriptome
    from .inference.transcriptome.anndata_io import read_results

    run = _table_run("bursting", adata, layer, genes, size_factors, emulator, capture, capture_prior, prior,
                     min_cells, seed, layers)
    command = _call_text("bursting", layer=layer, layers=run.layers, genes=run.genes, size_factors=size_factors,
                         emulator=emulator,
                         capture=capture, capture_prior=capture_prior, prior=prior, min_cells=min_cells, seed=seed,
                         out=out)
    with _folder(out) as folder:
        csv_path, _ = infer_transcriptome(run, folder, batch, plots=out is not None, command=command,
                                          log=_log(progress), progress=progress)
        return read_results(csv_path)


def differential_bursting(adata: AnnData, groupby: str, groups: Sequence[str] | None = None, layer: str | None = None,
                          genes: Sequence[str] | Any = None, size_factors: Any = None, *,
                          lfc_threshold: float = 0.5, call_probability: float = 0.95,
                          emulator: str | os.PathLike[str] | None = None, capture: float | None = None,
                          capture_prior: tuple[float, float] | None = None,
                          prior: Mapping[str, tuple[float, float]] | None = None, min_cells: int = 10, seed: int = 0,
                          batch: BatchSettings | None = None, progress: bool = False,
                          out: str | os.PathLike[str] | None = None,
                          layers: Sequence[str] | None = None) -> pd.DataFrame:
    """Which genes changed burst frequency or burst size between the groups of `adata.obs[groupby]` (or `groups`,
    in that order: pair `B_vs_A` is log2 of B over A). Every gene is inferred in each group (as `bursting`), then
    per pair and variable the posterior of the log2 fold change: returns differential.csv as a DataFrame (gene,
    pair, variable, log2fc_median, log2fc_q05, log2fc_q95, p_positive, call) and fills `adata.var` in place:
    each group's columns as `<group>_<column>` and each comparison's as `<pair>_<variable>_<column>`.

    call: `up`/`down` when P(log2 fold change > lfc_threshold / < -lfc_threshold) >= call_probability and the
    gene is a discovery at a false discovery rate of 1 - call_probability (Benjamini-Hochberg across the genes),
    `unchanged` when P(|log2 fold change| <= lfc_threshold) >= call_probability, else `undecided`. Give
    size_factors (with capture or capture_prior) when the groups' capture may differ. Other arguments as for
    `bursting`; `out` keeps OUT/groups/<group>/ and OUT/differential.csv and its figures.
    """
    import pandas as pd

    from .inference.differential import CallRule, infer_differential

    rule = CallRule(float(lfc_threshold), float(call_probability))
    run = _table_run("differential_bursting", adata, layer, genes, size_factors, emulator, capture, capture_prior,
                     prior, min_cells, seed, layers)
    command = _call_text("differential_bursting", groupby=groupby, groups=groups, layer=layer, layers=run.layers,
                         genes=run.genes,
                         size_factors=size_factors, lfc_threshold=lfc_threshold, call_probability=call_probability,
                         emulator=emulator, capture=capture, capture_prior=capture_prior, prior=prior,
                         min_cells=min_cells, seed=seed, out=out)
    with _folder(out) as folder:
        done = infer_differential(run, groupby, list(groups) if groups is not None else None, folder, rule, batch,
                                  plots=out is not None, command=command, log=_log(progress), progress=progress)
        return pd.read_csv(done.csv_path, keep_default_na=False, na_values=[""])


def _table_run(caller: str, adata: AnnData, layer: str | None, genes: Any, size_factors: Any, emulator: Any,
               capture: float | None, capture_prior: tuple[float, float] | None,
               prior: Mapping[str, tuple[float, float]] | None, min_cells: int, seed: int,
               layers: Sequence[str] | None = None) -> TableRun:
    from .data.anndata_memory import is_anndata
    from .inference.transcriptome import TableRun

    if not is_anndata(adata):
        raise UserError(f"{caller}: adata is a {type(adata).__name__}, not an AnnData; for a file use "
                        "surrogate_abc.infer_genes(path) or `surrogate-abc infer counts.h5ad`")
    if size_factors is not None and not isinstance(size_factors, str):
        raise UserError("size_factors: give 'total' (each cell's total count over its mean) or the name of an obs "
                        "column (put an array there first: adata.obs['sf'] = ...)")
    return TableRun("adata", str(emulator) if emulator is not None else None, _gene_names(adata, genes), layer,
                    capture, tuple(capture_prior) if capture_prior is not None else None,
                    {str(k): (float(v[0]), float(v[1])) for k, v in dict(prior or {}).items()}, int(min_cells),
                    int(seed), size_factors=size_factors, adata=adata, layers=_layer_pair(layers))


def _layer_pair(layers: Sequence[str] | None) -> tuple[str, str] | None:
    if layers is None:
        return None
    names = [str(x) for x in layers] if not isinstance(layers, str) else layers.split(",")
    if len(names) != 2 or names[0] == names[1]:
        raise UserError(f"layers={layers!r}: give two distinct layer names, nascent first, e.g. "
                        "layers=('unspliced', 'spliced')")
    return names[0].strip(), names[1].strip()


@contextlib.contextmanager
def _folder(out: str | os.PathLike[str] | None) -> Iterator[Path]:
    """`out`, or a temporary folder removed afterwards (nothing written)."""
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="surrogate-abc-bursting-") as tmp:
        yield Path(tmp)


def _log(progress: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if progress:
            print(message, flush=True)

    return log


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


def _call_text(caller: str, **kwargs: Any) -> str:
    """The call as text for uns["surrogate_abc"]["command"]: arguments that differ from the defaults."""
    defaults = {"min_cells": 10, "seed": 0, "lfc_threshold": 0.5, "call_probability": 0.95}
    parts = []
    for k, v in kwargs.items():
        if v is None or defaults.get(k, object()) == v:
            continue
        text = repr(list(v)) if isinstance(v, tuple) else repr(v)
        parts.append(f"{k}={text if len(text) <= 200 else text[:180] + ' ...'}")
    return f"surrogate_abc.tl.{caller}({', '.join(['adata', *parts])})"
