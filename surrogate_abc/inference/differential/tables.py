"""`surrogate-abc infer A.csv --compare-table B.csv --groups a,b`: two tables of the same genes compared, e.g. the
two alleles of allele-resolved scRNA-seq (txburst's c57.csv and cast.csv, Larsson et al. 2019).

Each table is one group: every gene is inferred in each by the batch method, with the same emulator, prior, seed
and table options (--layout, --missing; OUT/groups/<name>/), and the genes inferred in both are compared as
groups of cells are (run.py): OUT/differential.csv (log2 fold change of burst frequency and size, `b_vs_a`,
and a call per gene), OUT/differential_<pair>.png and the summary. The two alleles of a cell share its capture,
so no capture check is made; two tables of different cells should have similar counts per cell.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Sequence

from ...errors import UserError
from ..results_table import default_out_dir
from ..settings import InferenceSettings
from ..transcriptome.refine import BatchSettings
from ..transcriptome.run import TableRun, run_batch
from .foldchange import CallRule
from .groups import Groups
from .run import DifferentialOutcome, bursty_emulator, group_folders, write_comparison


def table_groups(first: str | Path, other: str | Path, groups: Sequence[str] | None = None) -> Groups:
    """The two tables' group names: `groups` (two distinct names), else the files' stems; UserError otherwise."""
    if groups is None:
        names = [Path(first).stem, Path(other).stem]
        if names[0] == names[1]:
            raise UserError(f"--compare-table: both tables are named {names[0]!r}; give --groups A,B to name them")
    else:
        names = [str(g) for g in groups]
        if len(names) != 2 or names[0] == names[1]:
            raise UserError(f"--groups {','.join(names)}: with --compare-table name the two tables, the table first "
                            "and the --compare-table second (e.g. --groups c57,cast)")
    return Groups((names[0], names[1]))


def infer_table_pair(run: TableRun, other: str | Path, groups: Sequence[str] | None = None,
                     out_dir: Path | None = None, rule: CallRule | None = None,
                     settings: BatchSettings | None = None, smc: InferenceSettings | None = None, plots: bool = True,
                     command: str = "", log: Callable[[str], None] = print, progress: bool = True,
                     scheduler: str | None = None) -> DifferentialOutcome:
    """Infer every gene of `run`'s table and of `other` (read with the same options) and compare them (see the
    module docstring). UserError before anything is written for a bad name, option or model."""
    rule = rule or CallRule()
    t0 = time.perf_counter()
    if run.adata is not None or run.groupby is not None:
        raise UserError("--compare-table compares two table files; it excludes --groupby")
    if not Path(other).is_file():
        raise UserError(f"--compare-table {other}: file not found")
    names = table_groups(run.path, other, groups)
    bursty_emulator(run)
    out = Path(out_dir) if out_dir else default_out_dir(run.path)
    results = []
    for name, folder, path in zip(names.names, group_folders(names.names), (run.path, str(other))):
        log(f"table {path} as {name!r}: inferring every gene into {out / 'groups' / folder}")
        results.append(run_batch(dataclasses.replace(run, path=str(path), group=name), out / "groups" / folder,
                                 settings, smc, plots=plots, command=command, log=log, progress=progress,
                                 scheduler=scheduler, anndata=False))
    return write_comparison(out, names, results, rule, run.seed, plots, t0)
