"""`surrogate-abc infer TABLE --groupby COLUMN [--groups A,B]`: which genes changed burst frequency or burst size
between groups of cells.

Each group's cells are read as a table of their own (`TableRun.cells`) and every gene inferred there by the
batch method, with the same emulator, prior and seed (OUT/groups/<group>/: genes.csv, posterior.nc, ...). Per-cell
capture (--size-factors) is put on one scale for all groups: the size factors are divided by their mean over
every cell of the table, so a group captured less than another gets smaller efficiencies instead of smaller
burst sizes. Without size factors, groups whose mean total counts per cell differ by more than CAPTURE_RATIO
get a warning: a capture difference would show as a burst-size change in every gene.

For every pair of groups and every gene inferred in both, `foldchange` gives the posterior of the log2 fold
change of burst frequency and of burst size, and a call at the CallRule: OUT/differential.csv (one row per
gene, pair and variable), OUT/differential_<pair>.png, and the AnnData (bursting.h5ad, or adata.var in place).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...data.size_factors import cell_totals, gene_columns
from ...data.table_format import check_per_cell_options
from ...emulators.base import EmulatorLike
from ...emulators.resolve import resolve_models
from ...errors import UserError
from ...networks.bursts import burst_kinetics
from ...report import warn
from ..results_table import default_out_dir, dir_name, write_genes_csv
from ..settings import InferenceSettings
from ..transcriptome.layers import LAYER_SPECIES
from ..transcriptome.refine import BatchSettings
from ..transcriptome.run import BatchOutcome, TableRun, run_batch, table_size_factors, variables
from .foldchange import VARIABLES, CallRule, FoldChanges, fold_changes
from .groups import CellGroups, Groups, cell_groups

CAPTURE_RATIO = 1.1  # groups' mean total counts per cell differing by more than this: the capture warning


@dataclasses.dataclass
class DifferentialOutcome:
    """differential.csv, the printed summary, its rows, the groups and each group's batch run."""

    csv_path: Path
    text: str
    rows: list[dict[str, Any]]
    groups: Groups
    results: list[BatchOutcome]


def infer_differential(run: TableRun, groupby: str, groups: Sequence[str] | None = None, out_dir: Path | None = None,
                       rule: CallRule | None = None, settings: BatchSettings | None = None,
                       smc: InferenceSettings | None = None, plots: bool = True, command: str = "",
                       log: Callable[[str], None] = print, progress: bool = True, h5ad_matrix: bool = True,
                       scheduler: str | None = None) -> DifferentialOutcome:
    """Infer every gene in each group of `groupby` (or of `groups`, in that order) and compare the groups (see the
    module docstring). UserError before anything is written for a bad column, group or model."""
    rule = rule or CallRule()
    t0 = time.perf_counter()
    check_per_cell_options(run.fmt, run.size_factors, groupby)
    emulator = bursty_emulator(run)
    cg = cell_groups(run.source, groupby, groups)
    sizes = ", ".join(f"{n} ({c:,} cells)" for n, c in zip(cg.names, cg.sizes()))
    log(f"groups of {groupby!r}: {sizes}" + (f"; {cg.outside:,} cell(s) in no group compared" if cg.outside else ""))
    run = dataclasses.replace(run, groupby=groupby)
    if run.size_factors is None:
        _check_capture(run, cg, gene_columns(run.source, groupby))
    else:  # read once for every group
        run = dataclasses.replace(run, cell_size_factors=table_size_factors(run, emulator))
    out = Path(out_dir) if out_dir else default_out_dir(run.path)
    results = []
    for name, folder, mask in zip(cg.names, group_folders(cg.names), cg.masks):
        grun = dataclasses.replace(run, group=name, cells=mask)
        log(f"group {name!r}: inferring every gene into {out / 'groups' / folder}")
        results.append(run_batch(grun, out / "groups" / folder, settings, smc, plots=plots, command=command, log=log,
                                 progress=progress, scheduler=scheduler, anndata=False))
    done = write_comparison(out, cg, results, rule, run.seed, plots, t0)
    from .outputs import write_anndata

    write_anndata(out, run, cg, results, done.rows, rule, settings, command, h5ad_matrix, groupby)
    return done


def write_comparison(out: Path, groups: Groups, results: list[BatchOutcome], rule: CallRule, seed: int, plots: bool,
                     t0: float) -> DifferentialOutcome:
    """Every pair of `groups` compared from their batch runs: OUT/differential.csv, the plots and the summary."""
    rows, pairs = compare(groups, results, rule, seed)
    csv_path = write_genes_csv(rows, out / "differential.csv") if rows else _empty_csv(out / "differential.csv")
    from .outputs import summary_text

    if plots:
        from .figure import plot_pair

        for name, changes in pairs.items():
            plot_pair(name, changes, rule, out / f"differential_{dir_name(name)}.png")
    text = summary_text(groups, results, pairs, rule, csv_path, time.perf_counter() - t0)
    return DifferentialOutcome(csv_path, text, rows, groups, results)


def compare(cg: Groups, results: Sequence[BatchOutcome], rule: CallRule, seed: int
            ) -> tuple[list[dict[str, Any]], dict[str, dict[str, tuple[list[str], FoldChanges]]]]:
    """differential.csv's rows (pair, then gene in table order, then variable) and per pair and variable the
    genes compared and their FoldChanges."""
    rows: list[dict[str, Any]] = []
    pairs: dict[str, dict[str, tuple[list[str], FoldChanges]]] = {}
    for i, j in cg.pairs():
        a, b = results[i], results[j]
        index_b = {str(r["gene"]): k for k, r in enumerate(b.rows)}
        both = [(k, index_b[str(r["gene"])]) for k, r in enumerate(a.rows) if str(r["gene"]) in index_b]
        names = [str(a.rows[k]["gene"]) for k, _ in both]
        va = _variables(a, [k for k, _ in both])
        vb = _variables(b, [k for _, k in both])
        rng = np.random.default_rng([seed, 27, i, j])
        changes = {v: fold_changes(va[v], vb[v], rule, rng) for v in VARIABLES}
        pair = cg.pair_name(i, j)
        pairs[pair] = {v: (names, c) for v, c in changes.items()}
        for g, gene in enumerate(names):
            for v in VARIABLES:
                c = changes[v]
                rows.append({"gene": gene, "pair": pair, "variable": v, "log2fc_median": _digits(c.median[g]),
                             "log2fc_q05": _digits(c.q05[g]), "log2fc_q95": _digits(c.q95[g]),
                             "p_positive": _digits(c.p_positive[g]), "call": str(c.call[g])})
    return rows, pairs


def _variables(result: BatchOutcome, genes: list[int]) -> dict[str, np.ndarray]:
    """Burst frequency and size draws (genes, draws) of the genes at `genes` of one group's run."""
    draws = result.draws[genes]  # (g, D, d) natural scale
    g, d_draws, d = draws.shape
    values = variables(result.prep.space, result.prep.emulator, draws.reshape(-1, d))
    return {v: np.asarray(values[v], float).reshape(g, d_draws) for v in VARIABLES}


def _digits(x: float) -> float:
    """The value as differential.csv writes it (6 significant digits), so the AnnData holds the same numbers."""
    return float(f"{float(x):.6g}")


def bursty_emulator(run: TableRun) -> EmulatorLike:
    """The run's emulator; UserError when its model has no burst frequency and size to compare."""
    species = LAYER_SPECIES if run.layers else ("mrna",)
    (emulator, _), = resolve_models([run.emulator], species, run.capture, run.capture_prior)
    if not burst_kinetics(emulator.protocol, np.ones((1, len(emulator.param_names)))):
        raise UserError(f"--groupby compares burst frequency and burst size; emulator {emulator.source} models no "
                        "bursts (its species has no bursty law); use a telegraph or bursty model")
    return emulator


def _check_capture(run: TableRun, cg: CellGroups, genes: Sequence[str] | None) -> None:
    """Warn when the groups' mean total counts per cell (over `genes`, default all) differ by more than
    CAPTURE_RATIO (no size factors)."""
    totals = cell_totals(run.source, run.layers[1] if run.layers else run.layer, genes)  # mature RNA with --layers
    means = np.array([totals[m].mean() if m.any() else 0.0 for m in cg.masks])
    low, high = float(means.min()), float(means.max())
    if high <= low * CAPTURE_RATIO:
        return
    each = ", ".join(f"{n}: {m:,.1f}" for n, m in zip(cg.names, means))
    shift = f"log2 {np.log2(high / low):.2f}" if low > 0 else "any size"
    warn(f"the groups' mean total counts per cell differ ({each}); a difference in capture shows as a change of "
         f"burst size in every gene (here up to {shift}); give --size-factors total (or a column of size factors) "
         "with --capture or --capture-prior to model each cell's capture")


def group_folders(names: Sequence[str]) -> list[str]:
    """A folder name per group, distinct even where two names differ only in characters folders cannot hold."""
    out: list[str] = []
    for n in names:
        base = f = dir_name(n)
        k = 2
        while f in out:
            f, k = f"{base}-{k}", k + 1
        out.append(f)
    return out


def _empty_csv(path: Path) -> Path:
    from .foldchange import COLUMNS

    path.write_text(",".join(COLUMNS) + "\n")
    return path
