"""The outputs of a comparison besides differential.csv: the printed summary and the AnnData.

AnnData `var` (bursting.h5ad for an .h5ad table, or adata.var in place for `sa.tl.bursting(groupby=)`):
* per group G, every column of its genes.csv as `G_<column>` (e.g. `ctrl_burst_size_median`) and `G_skipped`
  (why the gene was not inferred in G; "" where it was);
* per pair P and variable V, differential.csv's values as `P_V_<column>`: `treated_vs_ctrl_burst_size_log2fc_median`,
  `..._log2fc_q05`, `..._log2fc_q95`, `..._p_positive`, `..._call` ("" for genes not compared);
* `skipped`: why a gene was inferred in no group.
`uns["surrogate_abc"]` records the run (anndata_io.run_uns) with the groups and the call rule.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..transcriptome.anndata_io import (
    OUT_NAME,
    annotate,
    is_h5ad,
    read_results,
    run_uns,
    table_options,
    write_bursting_h5ad,
)
from .foldchange import CALLS, STATS, VARIABLES, CallRule, FoldChanges
from .groups import CellGroups, Groups

if TYPE_CHECKING:
    import pandas as pd

    from ..transcriptome.refine import BatchSettings
    from ..transcriptome.run import BatchOutcome, TableRun

SHOWN = 20  # called genes printed per pair and variable at most


def results_table(cg: CellGroups, results: Sequence[BatchOutcome], rows: Sequence[Mapping[str, Any]]
                  ) -> tuple[pd.DataFrame, dict[str, str]]:
    """The var columns (a DataFrame indexed by gene) and, for genes inferred in no group, why ("G: reason; ...")."""
    import pandas as pd

    tables = [read_results(res.csv_path) for res in results]
    order = list(dict.fromkeys(g for t in tables for g in t.index))
    out = pd.concat([t.add_prefix(f"{n}_").reindex(order) for n, t in zip(cg.names, tables)], axis=1)
    for name, table, res in zip(cg.names, tables, results):
        out[f"{name}_skipped"] = ["" if g in table.index else res.prep.skipped.get(g, "not selected") for g in order]
    wide: dict[str, dict[str, Any]] = {}
    for r in rows:
        for stat in STATS:
            wide.setdefault(f"{r['pair']}_{r['variable']}_{stat}", {})[str(r["gene"])] = r[stat]
    for col, values in wide.items():
        missing = "" if col.endswith("_call") else np.nan
        out[col] = [values.get(g, missing) for g in order]
    none: dict[str, str] = {}
    for name, res in zip(cg.names, results):
        for gene, why in res.prep.skipped.items():
            if gene not in out.index:
                none[gene] = f"{none[gene]}; " if gene in none else ""
                none[gene] += f"{name}: {why}"
    return out, none


def write_anndata(out: Path, run: TableRun, cg: CellGroups, results: Sequence[BatchOutcome],
                  rows: Sequence[Mapping[str, Any]], rule: CallRule, settings: BatchSettings | None, command: str,
                  matrix: bool, groupby: str) -> Path | None:
    """run.adata's var and uns filled in place, or OUT/bursting.h5ad for an .h5ad table (None otherwise)."""
    if run.adata is None and not is_h5ad(run.path):
        return None
    table, skipped = results_table(cg, results, rows)
    prep = results[0].prep
    options = {**table_options(run), "groupby": groupby, "groups": list(cg.names),
               "lfc_threshold": rule.threshold, "call_probability": rule.probability}
    uns = run_uns("batch", prep.emulator.source, prep.sha256 or "", command, options, settings, len(table),
                  len(skipped))
    if run.adata is not None:
        annotate(run.adata, table, skipped, uns)
        return None
    return write_bursting_h5ad(Path(run.path), out / OUT_NAME, table, skipped, uns, matrix)


def summary_text(cg: Groups, results: Sequence[BatchOutcome], pairs: Mapping[str, Mapping[str, tuple[list[str],
                 FoldChanges]]], rule: CallRule, csv_path: Path, seconds: float) -> str:
    """Per pair: genes compared, the calls per variable, and the genes called (up to SHOWN per variable, most
    probable first)."""
    lines = [f"call rule: {rule.text()}"]
    for pair, by_var in pairs.items():
        n = len(next(iter(by_var.values()))[0])
        lines.append(f"\n{pair}: {n} gene(s) inferred in both groups")
        lines.append(f"  {'variable':<16}" + "".join(f"{c:>11}" for c in CALLS))
        for v in VARIABLES:
            _, c = by_var[v]
            lines.append(f"  {v:<16}" + "".join(f"{int(np.sum(c.call == k)):>11}" for k in CALLS))
        for v in VARIABLES:
            names, c = by_var[v]
            hit = np.flatnonzero(np.isin(c.call, ("up", "down")))
            hit = hit[np.argsort(-c.p_call[hit], kind="stable")][:SHOWN]
            if len(hit):
                shown = ", ".join(f"{names[k]} ({c.call[k]} {c.median[k]:+.2f})" for k in hit)
                more = f", ... ({int(np.isin(c.call, ('up', 'down')).sum()) - len(hit)} more)" \
                    if len(hit) == SHOWN else ""
                lines.append(f"  {v} changed: {shown}{more}")
    groups = ", ".join(f"{n}: {r.csv_path.parent}" for n, r in zip(cg.names, results))
    lines.append(f"\neach group's genes.csv and posterior.nc: {groups}")
    lines.append(f"{len(results)} group(s) in {seconds:.1f} s; comparisons in {csv_path}")
    return "\n".join(lines)
