"""Whole transcriptomes: every gene of a count table inferred together (`surrogate-abc infer TABLE --method batch`).

`run.infer_transcriptome` reads the table once into per-gene histograms, infers the genes in resumable blocks
(`refine`: shared prior sets, then per-gene adaptive importance sampling, `importance`), checks each gene's fit
(`checks`) and writes genes.csv, posterior.nc with a `gene` dimension and genes.png (`outputs`, `figure`).
The method itself needs no pyabc (only the ABC-SMC fallback does); exports are lazy.
"""
from __future__ import annotations

from ...lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"BatchSettings": "refine", "TableRun": "run",
                                               "infer_transcriptome": "run"})
