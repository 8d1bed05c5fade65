"""`surrogate-abc infer counts.csv|.tsv|.h5ad`: one inference per gene of a count table, genes in parallel.

Every column of a table (or `genes`) is one data set of the emulator's single observed species (mRNA unless
the emulator says otherwise); for a two-species emulator `species` maps columns to species
({"mrna": COL, "protein": COL}) and the table is one data set. Everything is checked before anything is
written (one DataFileError line naming the file, column and problem). Each data set's outputs go to
OUT/<gene>/ (written to OUT/.<gene>.partial/ and renamed when complete) and OUT/genes.csv holds one row per
gene: cells, mean, Fano factor and, for each parameter and derived variable, the posterior median, 5% and 95%
quantiles, ESS and r_hat (and with --compare the model probabilities).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..data.observed import Observed, observed_histogram, predictive_mean_ranges
from ..data.table_format import TableFormat
from ..data.tables import read_count_table
from ..emulators.resolve import model_specs, resolve_models
from ..errors import UserError
from ..report import warn
from .infer import check_observed, run_dataset
from .results_table import QUANTILES, default_out_dir, dir_name, format_genes, write_genes_csv
from .run import InferenceSettings
from .transcriptome.layers import LAYER_SPECIES, check_layers
from .workers import die_with_parent, one_core, with_notes


@dataclass(frozen=True)
class GeneTask:
    """One data set of a table, with everything a worker process needs to run it."""

    name: str
    columns: tuple[str, ...]
    species: tuple[str, ...]
    counts: np.ndarray  # (cells, len(species)) int64
    path: str
    specs: tuple[str | None, ...]
    capture: float | tuple[float, float] | None
    capture_prior: tuple[float, float] | None
    settings: InferenceSettings
    out: str
    command: str
    table_cells: int | None = None  # the table's cells when missing values were dropped (counts: the gene's own)


def plan_tasks(path: str | Path, specs: Sequence[str | None], settings: InferenceSettings, out: Path,
               genes: Sequence[str] | None = None, layer: str | None = None,
               species_map: Mapping[str, str] | None = None, capture: float | tuple[float, float] | None = None,
               capture_prior: tuple[float, float] | None = None, command: str = "",
               layers: tuple[str, str] | None = None, fmt: TableFormat | None = None) -> list[GeneTask]:
    """Read and check the table and the models; the data sets to run (UserError before anything is written).
    `layers` (nascent, mature): each gene's data are its counts in those two AnnData layers. `fmt`: a CSV/TSV's
    layout and missing-value rule (with missing values dropped each gene keeps the cells it has a value in)."""
    fmt = fmt or TableFormat()
    if fmt.drop_missing and species_map:
        raise UserError("--missing drop leaves each gene its own cells; --species needs every column in the same "
                        "cells (fill the missing values instead)")
    hint = LAYER_SPECIES if layers else tuple(species_map) if species_map else ("mrna",)
    models = resolve_models(list(specs), hint, capture, capture_prior)
    emulator = models[0][0]
    species = tuple(emulator.species)
    columns: list[str] | None
    if layers:
        if species_map:
            raise UserError("--species and --layers exclude each other: --layers gives each gene's two species")
        for em, _ in models:  # every model of --compare models both layers
            check_layers(layers, em, str(path), layer=layer)
        columns = list(genes) if genes else None
    elif species_map:
        unknown = [s for s in species_map if s not in species]
        missing = [s for s in species if s not in species_map]
        if unknown or missing:
            raise UserError(f"--species {','.join(f'{k}={v}' for k, v in species_map.items())}: the emulator "
                            f"{emulator.source} models {'+'.join(species)}; map exactly those "
                            f"(e.g. --species {','.join(f'{s}=COLUMN' for s in species)})")
        if genes:
            raise UserError("--genes and --species exclude each other: --species names the columns of one data set")
        columns = [species_map[s] for s in species]
    elif len(species) > 1:
        raise UserError(f"emulator {emulator.source} models {'+'.join(species)}: map the table's columns to them "
                        f"with --species {','.join(f'{s}=COLUMN' for s in species)}")
    else:
        columns = list(genes) if genes else None
    tables = ([read_count_table(path, columns, x, fmt) for x in layers] if layers else
              [read_count_table(path, columns, layer, fmt)])
    table = tables[0]
    if layers and (tables[1].genes != table.genes or tables[1].counts.shape != table.counts.shape):
        raise UserError(f"{path}: layers {layers[0]!r} and {layers[1]!r} differ in shape or genes; give two layers of "
                        "the same matrix")
    if species_map:
        groups = [(f"{'+'.join(table.genes)}", tuple(table.genes))]
    else:
        groups = [(g, (g,)) for g in table.genes]
    names = [dir_name(n) for n, _ in groups]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{path}: genes {', '.join(g for g, _ in groups if dir_name(g) == dup[0])} would share the "
                        f"output folder {dup[0]!r}; rename them")
    tasks, ranges = [], {}
    # with missing values dropped, the means' ranges for the fewest cells any gene keeps (the widest), computed once
    fewest = None if table.missing is None else int((~table.missing).sum(axis=0).min())
    for (name, cols), folder in zip(groups, names):
        counts = (np.stack([t.column(name) for t in tables], axis=1) if layers else
                  np.stack([table.column(c) for c in cols], axis=1))
        observed = Observed(str(path), species, len(counts), counts=counts)
        hist, overflow = observed_histogram(observed, tuple(emulator.edges))
        for em, _ in models:
            key = (em.source, fewest or len(counts))
            if key not in ranges:  # the same for every gene with as many cells
                base = getattr(em, "inner", em)  # a capture wrapper's model: one that solves each set is checked
                # by its domain (FSP, the generating function)
                ranges[key] = None if getattr(base, "solves_each_set", False) else predictive_mean_ranges(em, key[1])
            check_observed(_named(observed, name), hist, overflow, em, ranges=ranges[key])
        tasks.append(GeneTask(name, cols, species, counts, str(path), tuple(specs), capture, capture_prior, settings,
                              str(out / folder), command, len(table.counts) if fmt.drop_missing else None))
    return tasks


def _named(observed: Observed, gene: str) -> Observed:
    """The observed data with the gene in its path, so that messages name the column."""
    return Observed(f"{observed.path} (column {gene})", observed.species, observed.n_cells, counts=observed.counts)


def run_task(task: GeneTask, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one gene (in this process): outputs to task.out (via a .partial folder); returns its genes.csv row,
    made from run_dataset's InferenceData in memory (posterior.nc is not read back)."""
    start = time.perf_counter()
    models = resolve_models(list(task.specs), task.species, task.capture, task.capture_prior)
    observed = Observed(task.path, task.species, len(task.counts), counts=task.counts)
    hist, overflow = observed_histogram(observed, tuple(models[0][0].edges))
    final = Path(task.out)
    partial = final.parent / f".{final.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    try:
        result = run_dataset(observed, hist, overflow, models, task.settings, partial, command=task.command,
                             log=log or (lambda _m: None), attrs={"gene": task.name, "columns": ",".join(task.columns),
                                                                  "abc_db": str(final / "abc.db")})
        row = gene_row(task, result.idata)  # the InferenceData in memory, as written to posterior.nc
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _worker_init(parent: int) -> None:
    """A gene worker: one core, ended with the process `parent`."""
    one_core()
    die_with_parent(parent)


def _worker(task: GeneTask) -> tuple[dict[str, Any], list[str]]:
    """run_task in a worker process, with its warnings collected as note lines for the parent to print."""
    return with_notes(run_task, task)


def gene_row(task: GeneTask, idata) -> dict[str, Any]:
    """The genes.csv row of one finished gene."""
    from ..arviz_import import import_arviz

    az = import_arviz()
    x = task.counts[:, 0].astype(float)
    mean = float(x.mean())
    row: dict[str, Any] = {"gene": task.name, "cells": int(len(x))}
    if task.table_cells is not None:  # --missing drop: the table's cells, and the gene's own
        row.update({"cells": int(task.table_cells), "cells_used": int(len(x))})
    row.update({"mean": mean, "fano": float(x.var(ddof=1) / mean) if mean > 0 and len(x) > 1 else float("nan")})
    post = idata.posterior
    attrs = post.attrs
    if "models" in attrs:
        import json

        row["model"] = attrs["model"]
        for k, v in json.loads(attrs["model_probabilities"]).items():
            row[f"p_{k}"] = v
    ess = az.ess(idata, var_names=list(post.data_vars))
    rhat = az.rhat(idata, var_names=list(post.data_vars)) if post.sizes.get("chain", 1) > 1 else None
    for v in post.data_vars:
        vals = post[v].values.ravel()
        for key, q in QUANTILES.items():
            row[f"{v}_{key}"] = float(np.quantile(vals, q))
        row[f"{v}_ess"] = float(ess[v].values)
        row[f"{v}_r_hat"] = float(rhat[v].values) if rhat is not None else float("nan")
    return row


def infer_table(path: str | Path, emulator_spec: str | None, settings: InferenceSettings, out_dir: Path | None,
                genes: Sequence[str] | None = None, layer: str | None = None,
                species_map: Mapping[str, str] | None = None, compare: Sequence[str] | None = None,
                capture: float | tuple[float, float] | None = None, capture_prior: tuple[float, float] | None = None,
                jobs: int | None = None, command: str = "", log: Callable[[str], None] = print,
                progress: bool = True, h5ad_matrix: bool = True,
                layers: tuple[str, str] | None = None, fmt: TableFormat | None = None) -> tuple[Path, str]:
    """Infer every gene of a count table (with `layers`, on its joint counts in two AnnData layers); returns (genes.csv path, printed table). Genes run in `jobs` worker
    processes (default: the cores, at most one per gene), each on one core. For an .h5ad table also
    OUT/bursting.h5ad, the results in var (without X and layers unless `h5ad_matrix`; transcriptome/anndata_io.py)."""
    settings.check()
    out = Path(out_dir) if out_dir else default_out_dir(path)
    specs = model_specs(emulator_spec, compare)
    tasks = plan_tasks(path, specs, settings, out, genes, layer, species_map, capture, capture_prior, command, layers,
                       fmt)
    n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    if n_jobs > 1:  # genes are the parallel unit: each gene's chains run one after another on its core
        tasks = [dataclasses.replace(t, settings=t.settings.replace(chain_jobs=1)) for t in tasks]
    out.mkdir(parents=True, exist_ok=True)
    log(f"{len(tasks)} gene(s) of {tasks[0].table_cells or tasks[0].counts.shape[0]} cells from {path}; {n_jobs} in "
        f"parallel; writing {out}")
    rows: dict[str, dict[str, Any]] = {}
    bar = _bar(len(tasks)) if progress else None
    start = time.perf_counter()

    def done(row: dict[str, Any]) -> None:
        rows[row["gene"]] = row
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"last {row['gene']} ({row['seconds']:.0f} s)")
        else:
            log(f"gene {row['gene']} done ({len(rows)}/{len(tasks)}, {len(tasks) - len(rows)} left) "
                f"in {row['seconds']:.1f} s")

    try:
        if n_jobs == 1:
            for t in tasks:  # one gene: its generations are reported too
                done(run_task(t, log if len(tasks) == 1 else None))
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                     initargs=(os.getpid(),)) as pool:
                futures = [pool.submit(_worker, t) for t in tasks]
                for f in as_completed(futures):
                    row, notes = f.result()
                    for n in notes:
                        _reissue(n)
                    done(row)
    finally:
        if bar is not None:
            bar.close()
    ordered = [rows[t.name] for t in tasks]
    csv_path = write_genes_csv(ordered, out / "genes.csv")
    from .transcriptome.anndata_io import smc_results

    smc_results(path, out, csv_path, specs, settings, {"genes": genes, "layer": layer, "layers": layers, "species": species_map,
                "compare": compare, "capture": capture, "capture_prior": capture_prior}, command, h5ad_matrix, log)
    log(f"{len(tasks)} gene(s) in {time.perf_counter() - start:.1f} s")
    return csv_path, format_genes(ordered)


def _reissue(note: str) -> None:
    """A worker's warning, raised again in the parent (the CLI prints each text once)."""
    warn(note, stacklevel=2)


def _bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="genes", unit="gene", dynamic_ncols=True)
