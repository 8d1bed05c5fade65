"""`surrogate-abc infer TABLE --method batch`: every gene of a count table in one pass.

The table is read once into per-gene histograms on the emulator's bins (`data/gene_histograms.py`: blocks
of cells, a sparse matrix never dense whole). Genes with no counts or fewer than `min_cells` non-zero cells
are skipped and counted. The others are inferred in blocks of `block_size` genes (`refine.refine_block`:
shared prior sets, then per-gene adaptive importance sampling); each block's posteriors, genes.csv rows,
posterior-predictive checks and prior-bound flags are stored as it finishes (`store.BatchStore`), so a
stopped run resumes. Genes whose ESS stays below `min_ess` are rerun with the per-gene ABC-SMC path. The
outputs: OUT/genes.csv (one row per gene), OUT/posterior.nc (equally weighted draws with a `gene` dimension),
OUT/genes.png (burst size against burst frequency) and, with `per_gene_outputs`, a folder per gene.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...data.gene_histograms import GeneHistograms, gene_histograms
from ...data.joint_histograms import joint_gene_histograms
from ...data.size_factors import gene_columns, size_factors
from ...data.table_format import CELLS_BY_GENES, TableFormat, check_per_cell_options
from ...emulators.base import EmulatorLike
from ...emulators.resolve import resolve_models
from ...errors import UserError
from ...networks.bursts import burst_kinetics
from ..results_table import QUANTILES, default_out_dir, format_genes, write_genes_csv
from ..settings import InferenceSettings
from .checks import PPC_ALPHA, bound_flags, ppc_pvalue
from .efficiency import EfficiencyNodes, node_emulators, with_size_factors
from .importance import weighted_quantiles
from .layers import LAYER_SPECIES, check_layers
from .likelihood import GeneLikelihoods, category_log_pmf, node_log_pmf, used_categories
from .refine import BatchSettings, GenePosterior, equal_weight_draws, gene_seed, refine_block, shared_sets
from .selection import select_genes
from .space import ParameterSpace
from .store import BatchStore
from .summary import skip_summary, summarise

PRINT_ROWS = 30  # genes printed in the table at most (all are in genes.csv)
PPC_VALUES = 1 << 24  # probabilities per predictive-check emulator call at most (genes x draws x nodes x categories)


@dataclasses.dataclass(frozen=True)
class TableRun:
    """What a batch run infers: the table, its model and the options that change results."""

    path: str
    emulator: str | None = None
    genes: tuple[str, ...] | None = None
    layer: str | None = None
    capture: float | tuple[float, float] | None = None
    capture_prior: tuple[float, float] | None = None
    prior: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    min_cells: int = 10
    seed: int = 0
    size_factors: str | None = None  # per-cell capture: "total" or a column of size factors (efficiency.py)
    adata: Any = dataclasses.field(default=None, compare=False, repr=False)  # an in-memory AnnData (path: a label)
    layers: tuple[str, str] | None = None  # two AnnData layers, nascent then mature (--layers unspliced,spliced)
    groupby: str | None = None  # the column of the cells' groups (a CSV's is no gene)
    group: str | None = None  # a group of cells (--groupby): its name, and `cells` the mask over the table's cells
    cells: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    # every cell's size factor, when already computed (table_size_factors: one pass for all groups of --groupby)
    cell_size_factors: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    layout: str = CELLS_BY_GENES  # a CSV/TSV's layout: cells-by-genes or genes-by-cells (--layout)
    missing: str = "error"  # a CSV/TSV's missing values: an error, or "drop" (each gene keeps the cells it has)

    @property
    def source(self) -> Any:
        """What the counts are read from: the in-memory AnnData, else the file at `path`."""
        return self.path if self.adata is None else self.adata

    @property
    def fmt(self) -> TableFormat:
        """The table's layout and missing-value rule (data/table_format.py)."""
        return TableFormat(self.layout, self.missing)


@dataclasses.dataclass
class Prepared:
    """The run's emulator, prior, histograms of the genes to infer and the genes skipped (name -> reason)."""

    emulator: EmulatorLike
    sha256: str
    space: ParameterSpace
    data: GeneHistograms
    skipped: dict[str, str]
    nodes: EfficiencyNodes | None = None  # per-cell capture's efficiency nodes (data.node_hist holds the genes')
    node_errors: dict[int, float] | None = None  # the largest error of each number of nodes tried (nats per gene)
    drop_missing: bool = False  # missing values dropped (--missing drop): genes.csv has cells_used

    def emulators(self) -> list[EmulatorLike]:
        """The emulator at each efficiency node (one without per-cell capture)."""
        return node_emulators(self.emulator, self.nodes)

    def histograms(self, genes: np.ndarray) -> np.ndarray:
        """The likelihood's histograms of `genes`: (g, C), or (g, K, C) at the efficiency nodes."""
        return self.data.hist[genes] if self.data.node_hist is None else self.data.node_hist[genes]

    def shared_categories(self) -> np.ndarray:
        """The categories holding cells in any gene of the run: the columns of the shared sets' log pmf."""
        return used_categories(self.data.hist if self.data.node_hist is None else self.data.node_hist)

    def node_cells(self) -> np.ndarray | None:
        """(K,) cells at each efficiency node (sum of the interpolation weights), None without nodes."""
        return None if self.data.node_hist is None else self.data.node_hist[0].sum(axis=1)


def choose_method(method: str | None, compare: Sequence[str] | None, species: Mapping[str, str] | None,
                  mode: str = "likelihood") -> str:
    """The method for a count table: `method` when given (UserError where batch cannot serve the options), else
    batch, except with --compare, --species or --mode simulator, which only the per-gene ABC-SMC path covers."""
    needs_smc = [flag for flag, on in (("--compare", bool(compare)), ("--species", bool(species)),
                                       ("--mode simulator", mode == "simulator")) if on]
    if method == "batch" and needs_smc:
        raise UserError(f"--method batch does not cover {', '.join(needs_smc)}; use --method smc (one ABC-SMC per gene)")
    return method or ("smc" if needs_smc else "batch")


def prepare(run: TableRun, log: Callable[[str], None] = print, progress: bool = True) -> Prepared:
    """Resolve the model, read and check the table, pick the genes to infer (UserError before anything is written)."""
    if run.min_cells < 0:
        raise UserError(f"--min-cells {run.min_cells}: give a number of cells >= 0")
    check_per_cell_options(run.fmt, run.size_factors, run.groupby)
    (emulator, sha), = resolve_models([run.emulator], LAYER_SPECIES if run.layers else ("mrna",), run.capture,
                                      run.capture_prior)
    check_layers(run.layers, emulator, run.path, run.adata, run.layer)
    space = ParameterSpace.of(emulator, run.prior)
    bar = _bar("reading", "cell", delay=2.0) if progress else None  # shown only for a table that takes a while

    def read_progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    genes = run.genes or gene_columns(run.source, run.size_factors, run.groupby)  # a CSV's other columns: no genes
    sf = run.cell_size_factors
    if sf is None:  # checked before the long pass: a capture is needed, the column must be good
        sf = table_size_factors(run, emulator)
    if sf is not None and run.cells is not None:
        sf = sf[run.cells]
    try:
        data = (joint_gene_histograms(run.source, run.layers, emulator.edges, genes, progress=read_progress,
                                      cells=run.cells) if run.layers else
                gene_histograms(run.source, emulator.edges[0], genes, run.layer, progress=read_progress,
                                cells=run.cells, fmt=run.fmt))
    finally:
        if bar is not None:
            bar.close()
    kept, skipped = select_genes(data, emulator, run.min_cells)
    where = run.path if run.group is None else f"group {run.group!r} of {run.path}"
    dropped = "" if data.missing is None else (f" ({int(data.missing.sum()):,} missing value(s) dropped in "
                                                f"{int(np.count_nonzero(data.missing))} gene(s))")
    log(f"{len(data.genes)} gene(s) x {data.n_cells} cells from {where}{dropped}: {len(kept.genes)} to infer, "
        f"{len(skipped)} skipped")
    if run.size_factors is None or not len(kept.genes):
        return Prepared(emulator, sha, space, kept, skipped, drop_missing=run.fmt.drop_missing)
    assert sf is not None
    kept, choice = with_size_factors(run.source, sf, run.layer, emulator, space, kept, run.seed, log, run.cells,
                                     run.layers)
    if kept.left_out:
        log(f"{kept.left_out} cell(s) with a total count of 0 left out (no information); {kept.n_cells} used")
    return Prepared(emulator, sha, space, kept, skipped, choice.nodes, choice.errors)


def table_size_factors(run: TableRun, emulator: EmulatorLike) -> np.ndarray | None:
    """The size factors of every cell of the table (None without --size-factors), over all cells, so that groups
    of cells share one scale; UserError first when the emulator has no capture to scale."""
    if run.size_factors is None:
        return None
    node_emulators(emulator, EfficiencyNodes(np.ones(1)))
    return size_factors(run.source, run.size_factors, run.layers or run.layer,
                        gene_columns(run.source, run.size_factors, run.groupby))


def variables(space: ParameterSpace, emulator: EmulatorLike, theta: np.ndarray) -> dict[str, np.ndarray]:
    """The posterior variables at natural-scale draws theta (n, d): the parameters, then the derived
    burst_frequency and burst_size for bursty models."""
    out = {n: theta[:, j] for j, n in enumerate(space.names)}
    out.update(burst_kinetics(emulator.protocol, theta))
    return out


def gene_row(name: str, cells: int, mean: float, fano: float, values: Mapping[str, np.ndarray], w: np.ndarray,
             ess: float, cells_used: int | None = None) -> dict[str, Any]:
    """The genes.csv row of one gene: cells (cells_used: those with a value, with --missing drop), mean, Fano,
    then per variable median, 5%/95% quantiles, ESS, r_hat."""
    row: dict[str, Any] = {"gene": name, "cells": int(cells)}
    if cells_used is not None:
        row["cells_used"] = int(cells_used)
    row.update({"mean": float(mean), "fano": float(fano)})
    qs = np.array(list(QUANTILES.values()))
    for v, x in values.items():
        for key, q in zip(QUANTILES, weighted_quantiles(np.asarray(x, float), w, qs)):
            row[f"{v}_{key}"] = float(q)
        row[f"{v}_ess"] = float(ess)
        row[f"{v}_r_hat"] = float("nan")  # one importance sample, no chains
    return row


def run_block(prep: Prepared, index: int, genes: np.ndarray, shared_z: np.ndarray, shared_log_pmf: np.ndarray,
              settings: BatchSettings, seed: int) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """One block of genes: posteriors, rows, draws, checks. Returns (arrays to store, rows)."""
    start = time.perf_counter()
    data, space, em = prep.data, prep.space, prep.emulator
    rng = gene_seed(seed, index)
    ems = prep.emulators()
    lik = GeneLikelihoods(ems, prep.histograms(genes), prep.shared_categories())
    posts = refine_block(lik, space.box, space.natural, shared_z, shared_log_pmf, settings, rng)
    draws = np.stack([equal_weight_draws(p, settings.draws, rng) for p in posts])  # (g, D, d) sampling scale
    n_ppc = min(settings.ppc_draws, settings.draws)
    pick = np.stack([rng.choice(settings.draws, n_ppc, replace=False) for _ in posts])
    per_call = max(1, PPC_VALUES // (n_ppc * len(ems) * data.hist.shape[1]))  # genes per emulator call
    rows = []
    mean, fano = data.mean(), data.fano()  # of every gene, once
    used = data.cells_used() if prep.drop_missing else None
    for k, (i, post) in enumerate(zip(genes, posts)):
        if k % per_call == 0:  # the predictive check's pmf at n_ppc draws of the next genes
            ks = range(k, min(k + per_call, len(posts)))
            ppc_theta = space.natural(np.concatenate([draws[j, pick[j]] for j in ks]))
            ppc_log_p = np.moveaxis(node_log_pmf(ems, ppc_theta), 0, 1).reshape(len(ks), n_ppc, len(ems), -1)
        values = variables(space, em, space.natural(post.z))
        row = gene_row(data.genes[i], data.n_cells, mean[i], fano[i], values, post.weights, post.ess,
                       None if used is None else int(used[i]))
        stat, pval = ppc_pvalue(data.hist[i], ppc_log_p[k % per_call], rng, prep.node_cells())
        bounds = bound_flags(post.z, post.weights, space.low, space.high, space.names)
        row.update(_diagnostics(post, stat, pval, bounds, settings))
        rows.append(row)
    seconds = (time.perf_counter() - start) / max(len(genes), 1)
    for row in rows:
        row["seconds"] = round(seconds, 4)
    return {"draws": space.natural(draws.reshape(-1, len(space.names))).reshape(draws.shape)}, rows


def _diagnostics(post: GenePosterior, stat: float, pval: float, bounds: list[str],
                 settings: BatchSettings) -> dict[str, Any]:
    flags = ["ppc"] if pval <= PPC_ALPHA else []
    flags += [f"bound:{b}" for b in bounds]
    if post.ess < settings.min_ess:
        flags.append("low_ess")
    return {"method": "batch", "ess": float(post.ess), "evaluations": int(post.evaluations),
            "ppc_deviance": stat, "ppc_p": pval, "flags": ";".join(flags)}


@dataclasses.dataclass
class BatchOutcome:
    """A finished batch run: genes.csv, the printed table and summary, and in memory the rows, the equally weighted
    natural-scale draws (genes, draws, parameters) and the prepared run."""

    csv_path: Path
    text: str
    rows: list[dict[str, Any]]
    draws: np.ndarray
    prep: Prepared


def infer_transcriptome(run: TableRun, out_dir: Path | None, settings: BatchSettings | None = None,
                        smc: InferenceSettings | None = None, per_gene_outputs: bool = False, plots: bool = True,
                        command: str = "", log: Callable[[str], None] = print,
                        progress: bool = True, h5ad_matrix: bool = True,
                        scheduler: str | None = None) -> tuple[Path, str]:
    """Infer every gene of the table (see the module docstring); returns (genes.csv path, printed summary). For an
    .h5ad table also OUT/bursting.h5ad (without X and layers unless `h5ad_matrix`); an in-memory run.adata gets the
    results in its var and uns (anndata_io.py). `scheduler` (tcp://HOST:PORT or local:N) runs the blocks on dask
    workers (cluster.py), with the same results."""
    done = run_batch(run, out_dir, settings, smc, per_gene_outputs, plots, command, log, progress, h5ad_matrix,
                     scheduler)
    return done.csv_path, done.text


def run_batch(run: TableRun, out_dir: Path | None, settings: BatchSettings | None = None,
              smc: InferenceSettings | None = None, per_gene_outputs: bool = False, plots: bool = True,
              command: str = "", log: Callable[[str], None] = print, progress: bool = True,
              h5ad_matrix: bool = True, scheduler: str | None = None, anndata: bool = True) -> BatchOutcome:
    """`infer_transcriptome`, returning the BatchOutcome; `anndata` False: no AnnData output (bursting.h5ad,
    run.adata's var), as for each group of --groupby, whose results go into one AnnData together."""
    settings = settings or BatchSettings()
    smc = smc or InferenceSettings(seed=run.seed, plots=False, exact_check="none")
    t0 = time.perf_counter()
    if scheduler is not None:  # a bad or unreachable --scheduler stops before anything is read or written
        from .cluster import check_scheduler, dask_blocks

        check_scheduler(scheduler)
    prep = prepare(run, log, progress)
    out = Path(out_dir) if out_dir else default_out_dir(run.path)
    if not prep.data.genes:
        group = "" if run.group is None else f" in group {run.group!r}"
        raise UserError(f"{run.path}: no gene to infer{group} ({skip_summary(prep.skipped)}); lower --min-cells or "
                        "check the table")
    store = BatchStore(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    store.open(_manifest(run, prep, settings))
    G = len(prep.data.genes)
    blocks = [np.arange(s, min(s + settings.block_size, G)) for s in range(0, G, settings.block_size)]
    todo = [b for b in range(len(blocks)) if not store.has("block", b)]
    if len(todo) < len(blocks):
        log(f"resuming {out}: {len(blocks) - len(todo)} of {len(blocks)} blocks already done")
    log(f"{G} gene(s) in {len(blocks)} block(s) of up to {settings.block_size}; writing {out}")
    shared_z = shared_sets(prep.space.box, settings.shared_sets, run.seed)
    shared_log_pmf = (category_log_pmf(prep.emulators(), prep.space.natural(shared_z), prep.shared_categories())
                      if todo else np.zeros((0, 0, 0)))
    bar = _bar("genes", "gene", total=G) if progress else None
    if bar is not None:
        bar.update(G - sum(len(blocks[b]) for b in todo))
    results = (((b, run_block(prep, b, blocks[b], shared_z, shared_log_pmf, settings, run.seed)) for b in todo)
               if scheduler is None else
               dask_blocks(scheduler, run, prep, blocks, todo, shared_z, shared_log_pmf, settings, log))
    try:
        for b, (arrays, rows) in results:  # stored as each block arrives (in any order from dask workers)
            store.save("block", b, arrays, rows)
            if bar is not None:
                bar.update(len(blocks[b]))
                bar.set_postfix_str(f"block {b + 1}/{len(blocks)}")
            else:
                log(f"block {b + 1}/{len(blocks)} done ({len(blocks[b])} genes)")
    finally:
        results.close()
        if bar is not None:
            bar.close()
    rows, draws = _collect(store, len(blocks))
    low = [i for i, r in enumerate(rows) if r["ess"] < settings.min_ess]
    if low and prep.nodes is not None:  # the per-gene ABC-SMC path has no per-cell capture
        log(f"{len(low)} gene(s) with ESS below {settings.min_ess:g} after refinement keep the batch posterior "
            "(flag low_ess): the ABC-SMC rerun does not model per-cell capture")
    elif low:
        names = [rows[i]["gene"] for i in low]
        log(f"{len(low)} gene(s) with ESS below {settings.min_ess:g} after refinement, rerun with ABC-SMC: "
            f"{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}")
        from .smc_rerun import rerun_smc

        rerun_smc(run, prep, store, low, rows, draws, smc, settings, out, per_gene_outputs, command, log)
    csv_path = write_genes_csv(rows, out / "genes.csv")
    from .outputs import write_gene_posterior, write_skipped

    write_gene_posterior(out / "posterior.nc", prep, rows, draws, run, command)
    write_skipped(out / "skipped.csv", prep.skipped)
    if anndata:
        from .anndata_io import batch_results

        batch_results(out, run, prep, csv_path, settings, command, h5ad_matrix)
    if plots:
        from .figure import plot_genes

        plot_genes(rows, out / "genes.png")
    if per_gene_outputs:
        from .outputs import write_gene_folders

        write_gene_folders(out, prep, rows, draws)
    summary = summarise(rows, prep, time.perf_counter() - t0)
    shown = rows if len(rows) <= PRINT_ROWS else rows[:PRINT_ROWS]
    table = format_genes(shown) + (f"\n... ({len(rows) - PRINT_ROWS} more genes in {csv_path})"
                                   if len(rows) > PRINT_ROWS else "")
    return BatchOutcome(csv_path, table + "\n" + summary, rows, draws, prep)


def _collect(store: BatchStore, n_blocks: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    rows, draws = [], []
    for b in range(n_blocks):
        arrays, r = store.load("block", b)
        rows += r
        draws.append(arrays["draws"])
    return rows, np.concatenate(draws)


def _manifest(run: TableRun, prep: Prepared, settings: BatchSettings) -> dict[str, Any]:
    from .anndata_io import input_stamp

    genes = hashlib.sha256("\n".join(prep.data.genes).encode()).hexdigest()
    return {"method": "batch", **input_stamp(run, prep.data), "emulator": prep.emulator.source,
            "emulator_sha256": prep.sha256,
            "layer": run.layer, **({"layers": list(run.layers)} if run.layers else {}), "capture": run.capture,
            "capture_prior": list(run.capture_prior) if run.capture_prior else None,
            "prior": {k: list(v) for k, v in sorted(dict(run.prior).items())}, "min_cells": run.min_cells,
            "size_factors": run.size_factors, **({} if run.fmt.default else {"table_format": run.fmt.options()}),
            "nodes": None if prep.nodes is None else [round(float(x), 12) for x in prep.nodes.scales],
            "seed": run.seed, "genes": genes, "settings": json.loads(json.dumps(dataclasses.asdict(settings))),
            **({} if run.cells is None else
               {"group": run.group, "cells": hashlib.sha256(np.packbits(run.cells).tobytes()).hexdigest()})}


def _bar(desc: str, unit: str, total: int | None = None, delay: float = 0.0):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "cell", dynamic_ncols=True, delay=delay)
