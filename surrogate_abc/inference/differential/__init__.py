"""Did bursting change? Burst frequency and burst size compared between groups of cells, gene by gene
(`surrogate-abc infer TABLE --groupby COLUMN [--groups A,B]`).

`groups` reads the cells' groups; `run.infer_differential` infers every gene in each group with the batch method
(independent priors; per-cell capture on one scale for all groups); `foldchange` turns the two posteriors into
the posterior of the log2 fold change and a call; `outputs` writes differential.csv and the AnnData; `figure` the
plots. Exports are lazy.
"""
from __future__ import annotations

from ...lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"CallRule": "foldchange", "infer_differential": "run",
                                               "DifferentialOutcome": "run", "cell_groups": "groups",
                                               "infer_table_pair": "tables"})
