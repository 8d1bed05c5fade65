"""The `infer` subcommand's options (cli.py parses, the library runs)."""
from __future__ import annotations

from typing import Callable

from .argtypes import (
    capture_values,
    interval,
    layer_pair,
    name_list,
    non_negative_int,
    positive_int,
    species_map,
)


def add_infer_parser(sub, handler: Callable) -> None:
    """The `infer` subcommand's options, run by `handler`."""
    from .inference.settings import Algorithm, ExactFollowups, Execution, add_options

    i = sub.add_parser("infer", help="ABC-SMC posterior of a protocol's parameters given observed counts (observed.h5)")
    i.add_argument("observed", help="counts.csv / .tsv / .h5ad: a count table, one column per gene (mRNA counts; "
                   "every gene is inferred); or observed.h5: per-cell counts, one dataset per observed species of the "
                   "emulator's protocol (e.g. 'protein', 'mrna'), or 'histogram' + 'edges'")
    i.add_argument("--emulator", default=None,
                   help="emulator .safetensors, a protocol name (its shipped emulator, else its exact model), or "
                        "exact:<protocol name or .toml>; default: the shipped emulator for the data's species "
                        "(mRNA: telegraph_mrna, protein: gene_protein, both: gene_joint, --layers: telegraph_splicing)")
    i.add_argument("--genes", type=name_list, default=None, metavar="A,B,...",
                   help="count tables: the columns (genes) to infer (default: all)")
    i.add_argument("--layout", choices=("cells-by-genes", "genes-by-cells"), default=None,
                   help="CSV/TSV: cells-by-genes (default: a header of gene names, one row per cell) or genes-by-cells "
                        "(txburst's allele tables: one row per gene, its name in the first column, a header of cell "
                        "ids)")
    i.add_argument("--missing", choices=("error", "drop"), default=None,
                   help="CSV/TSV: a missing value (an empty field, NaN, NA) is an error (default) or, with drop, left "
                        "out of that gene's data only (each gene keeps every cell it has; genes.csv gains cells_used)")
    i.add_argument("--compare-table", default=None, metavar="TABLE",
                   help="--method batch: a second table of the same genes (e.g. the other allele), read with the same "
                        "options; both are inferred and OUT/differential.csv gives the log2 fold change of burst "
                        "frequency and size per gene (name the two with --groups A,B; default: the file names)")
    i.add_argument("--layer", default=None, help=".h5ad: the layer holding raw counts (default: X)")
    i.add_argument("--layers", type=layer_pair, default=None, metavar="NASCENT,MATURE",
                   help=".h5ad: two layers inferred jointly per gene, nascent first (e.g. unspliced,spliced), with "
                        "a two-species emulator (default: telegraph_splicing)")
    i.add_argument("--species", type=species_map, default=None, metavar="mrna=COL,protein=COL",
                   help="count tables with a two-species emulator: the column of each species (one data set)")
    i.add_argument("--capture", type=capture_values, default=None, metavar="BETA",
                   help="detection probability of each molecule (binomial thinning, applied exactly); default 1. "
                        "With --layers one for both layers, or NASCENT,MATURE (e.g. 0.3,0.2): one per layer")
    i.add_argument("--capture-prior", type=interval, default=None, metavar="LOW:HIGH",
                   help="infer the detection probability (parameter 'capture', uniform prior on LOW:HIGH)")
    i.add_argument("--size-factors", default=None, metavar="total|COLUMN",
                   help="--method batch: per-cell capture. Each cell's efficiency is the capture (of the mean cell: "
                        "--capture or --capture-prior) times its size factor: `total` (its total count over all "
                        "genes, of both layers with --layers, / the mean total; cells with none are left out) or an obs column (.h5ad) / a named "
                        "column (CSV/TSV, then not a gene) of size factors")
    i.add_argument("--compare", type=name_list, default=None, metavar="MODEL,MODEL,...",
                   help="model selection in one ABC-SMC over these protocols or emulator files, e.g. "
                        "telegraph_mrna,poisson,negbin; reports posterior model probabilities")
    i.add_argument("--jobs", type=positive_int, default=None,
                   help="count tables, --method smc: genes run in parallel (default: the cores; the batch method uses all cores in one process)")
    i.add_argument("--quiet", action="store_true", help="count tables: no progress bar")
    i.add_argument("--method", choices=("batch", "smc"), default=None,
                   help="count tables: batch (default: all genes together, shared parameter sets and per-gene "
                   "importance sampling; one species per gene) or smc (one ABC-SMC per gene; the default with "
                   "--compare, --species or --mode simulator)")
    i.add_argument("--min-cells", type=non_negative_int, default=None, metavar="N",
                   help="--method batch: skip genes with fewer than N non-zero cells (default 10; all-zero genes always)")
    i.add_argument("--ess", type=positive_int, default=None, metavar="N",
                   help="--method batch: refine each gene until its effective sample size reaches N (default 500)")
    i.add_argument("--draws", type=positive_int, default=None, metavar="N",
                   help="--method batch: equally weighted posterior draws per gene in posterior.nc (default 1000)")
    i.add_argument("--block-size", type=positive_int, default=None, metavar="N",
                   help="--method batch: genes per block, the unit stored as it finishes and resumed (default 256)")
    i.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT|local:N",
                   help="--method batch: run the blocks of genes on dask.distributed workers: a running scheduler's "
                        "address (e.g. a dask-jobqueue SLURM/PBS cluster's) or local:N (N worker processes here, "
                        "1 thread each); the same results as without")
    i.add_argument("--groupby", default=None, metavar="COLUMN",
                   help="--method batch: compare groups of cells: the obs column (.h5ad) or named column (CSV/TSV, "
                        "then not a gene) of each cell's group; every gene is inferred in each group and "
                        "OUT/differential.csv gives the log2 fold change of burst frequency and size per pair")
    i.add_argument("--groups", type=name_list, default=None, metavar="A,B,...",
                   help="--groupby: the groups to compare, in order (B_vs_A is log2 of B over A; default: all); "
                        "--compare-table: the names of the table and of the compared table")
    i.add_argument("--lfc-threshold", type=float, default=None, metavar="T",
                   help="--groupby, --compare-table: call up/down when P(log2 fold change beyond +-T) >= the call probability (and "
                        "a discovery at FDR 1 - it), unchanged when P(|log2 fold change| <= T) >= it (default 0.5)")
    i.add_argument("--call-probability", type=float, default=None, metavar="P",
                   help="--groupby, --compare-table: the posterior probability a call needs; 1 - P is the false discovery rate of "
                        "the up/down calls (default 0.95)")
    i.add_argument("--per-gene-outputs", action="store_true",
                   help="--method batch: also write OUT/<gene>/ (posterior.nc, summary.csv) for every gene")
    i.add_argument("--no-matrix", action="store_true",
                   help=".h5ad: write OUT/bursting.h5ad (the input AnnData with each gene's results as var columns "
                        "and the run's settings in uns) without X and layers")
    i.add_argument("--no-plots", action="store_true",
                   help="skip the PNGs (faster for many genes); `surrogate-abc report posterior.nc` draws them later")
    for group in (Algorithm, Execution, ExactFollowups):  # the settings' options, stated in inference/settings.py
        add_options(i, group)
    i.add_argument("--out", default=None, help="output folder (default: ./surrogate-abc-<observed file stem>/)")
    i.set_defaults(func=handler)
