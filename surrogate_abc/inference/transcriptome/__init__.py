"""Whole transcriptomes: every gene of a count table inferred together (`surrogate-abc infer TABLE --method batch`).

`run.infer_transcriptome` reads the table once into per-gene histograms, infers the genes in resumable blocks
(`refine`: shared prior sets, then per-gene adaptive importance sampling, `importance`), checks each gene's fit
(`checks`) and writes genes.csv, posterior.nc with a `gene` dimension and genes.png (`outputs`, `figure`).
"""
from .refine import BatchSettings
from .run import TableRun, infer_transcriptome

__all__ = ["BatchSettings", "TableRun", "infer_transcriptome"]
