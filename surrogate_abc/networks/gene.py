"""The two-state (telegraph) gene model of Shahrezaei & Swain (2008), and a birth-death process.

Gene model species: inactive promoter, active promoter, mRNA, protein. Reactions:
  gene_off -> gene_on        k0          (promoter switches on)
  gene_on  -> gene_off       k1          (promoter switches off)
  gene_on  -> gene_on + mrna v0          (transcription while active)
  mrna     -> 0              d0 * m      (mRNA decay)
  mrna     -> mrna + protein v1 * m      (translation)
  protein  -> 0              d1 * p      (protein decay)
"""
from __future__ import annotations

from .base import MassActionNetwork, Reaction

GENE = MassActionNetwork(
    name="gene",
    species=("gene_off", "gene_on", "mrna", "protein"),
    reactions=(
        Reaction("on", "k0", {"gene_off": 1}, {"gene_on": 1}),
        Reaction("off", "k1", {"gene_on": 1}, {"gene_off": 1}),
        Reaction("transcription", "v0", {"gene_on": 1}, {"gene_on": 1, "mrna": 1}),
        Reaction("mrna_decay", "d0", {"mrna": 1}, {}),
        Reaction("translation", "v1", {"mrna": 1}, {"mrna": 1, "protein": 1}),
        Reaction("protein_decay", "d1", {"protein": 1}, {}),
    ),
    conserved={"gene_off": ("gene_on", 1)},
)

BIRTH_DEATH = MassActionNetwork(
    name="birth_death",
    species=("x",),
    reactions=(
        Reaction("birth", "a", {}, {"x": 1}),
        Reaction("death", "b", {"x": 1}, {}),
    ),
)


def gene_means(k0, k1, v0, d0, v1, d1):
    """Closed-form stationary means (mRNA, protein) of the gene model; works on arrays."""
    mrna = v0 * k0 / (d0 * (k0 + k1))
    return mrna, v1 * mrna / d1
