"""The shipped gene model and birth-death process (network files in configs/networks), bound to the
conservation totals the shipped protocols use, and the gene model's closed-form means.

Gene model species: inactive promoter, active promoter, mRNA, protein. Reactions:
  gene_off -> gene_on        k0          (promoter switches on)
  gene_on  -> gene_off       k1          (promoter switches off)
  gene_on  -> gene_on + mrna v0          (transcription while active)
  mrna     -> 0              d0 * m      (mRNA decay)
  mrna     -> mrna + protein v1 * m      (translation)
  protein  -> 0              d1 * p      (protein decay)
"""
from __future__ import annotations

from .registry import get_network

GENE = get_network("gene").with_totals({"gene_on": 1})
BIRTH_DEATH = get_network("birth_death").with_totals({})


def gene_means(k0, k1, v0, d0, v1, d1):
    """Closed-form stationary means (mRNA, protein) of the gene model; works on arrays."""
    mrna = v0 * k0 / (d0 * (k0 + k1))
    return mrna, v1 * mrna / d1
