"""Conservation laws of a reaction network, found from its stoichiometry (nothing is declared).

A vector c with c . S_r = 0 for every reaction's state change S_r keeps c . x constant along every path,
so with the initial counts x0 the law c . x = c . x0 holds for all time. A basis of these vectors (the
left null space of the stoichiometry matrix, exact rational arithmetic) in reduced row-echelon form
names one species per law that the others determine (the law's pivot): FSP and the moment equations
work in the coordinates that remain, where the chain is irreducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class ConservationLaw:
    """sum_s coefficients[s] * x_s == total; `eliminated` is the species it determines."""

    coefficients: tuple[tuple[str, int], ...]
    eliminated: str
    total: int = 0

    @property
    def nonnegative(self) -> bool:
        """All coefficients >= 0: every species in the law is bounded by total / coefficient."""
        return all(c >= 0 for _, c in self.coefficients)

    def describe(self) -> str:
        terms = " + ".join(f"{c} {s}" if c != 1 else s for s, c in self.coefficients)
        return f"{terms} = {self.total}"


def _rref(rows: list[list[Fraction]], ncols: int) -> tuple[list[list[Fraction]], list[int]]:
    """Reduced row-echelon form and pivot columns (exact)."""
    rows = [list(r) for r in rows]
    pivots: list[int] = []
    r = 0
    for c in range(ncols):
        piv = next((i for i in range(r, len(rows)) if rows[i][c] != 0), None)
        if piv is None:
            continue
        rows[r], rows[piv] = rows[piv], rows[r]
        lead = rows[r][c]
        rows[r] = [v / lead for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][c] != 0:
                f = rows[i][c]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r])]
        pivots.append(c)
        r += 1
        if r == len(rows):
            break
    return rows[:r], pivots


def _integer_row(row: Sequence[Fraction]) -> list[int]:
    den = math.lcm(*(v.denominator for v in row)) if row else 1
    ints = [int(v * den) for v in row]
    g = math.gcd(*ints) or 1
    return [v // g for v in ints]


def conservation_laws(species: Sequence[str], stoichiometry: np.ndarray, prefer_kept: Sequence[str] = ()
                      ) -> list[tuple[dict[str, int], str]]:
    """Independent integer laws (coefficients, eliminated species) of a stoichiometry matrix (species x reactions).

    Each eliminated species is the first species (in network order, those in `prefer_kept` last) that its law
    contains; no other law contains it, so it is a function of the species that are kept."""
    order = [s for s in species if s not in prefer_kept] + [s for s in species if s in prefer_kept]
    idx = [list(species).index(s) for s in order]
    st = np.asarray(stoichiometry, dtype=np.int64)[idx]  # species (reordered) x reactions
    # null space of S^T (reactions x species): solve S^T c = 0
    rows = [[Fraction(int(v)) for v in st[:, r]] for r in range(st.shape[1])]
    red, pivots = _rref(rows, len(order)) if rows else ([], [])
    free = [c for c in range(len(order)) if c not in pivots]
    basis = []
    for f in free:
        vec = [Fraction(0)] * len(order)
        vec[f] = Fraction(1)
        for row, p in zip(red, pivots):
            vec[p] = -row[f]
        basis.append(vec)
    if not basis:
        return []
    laws, lead = _rref(basis, len(order))
    out = []
    for row, p in zip(laws, lead):
        ints = _integer_row(row)
        if ints[p] < 0:
            ints = [-v for v in ints]
        coeffs = {order[j]: v for j, v in enumerate(ints) if v != 0}
        out.append(({s: coeffs[s] for s in species if s in coeffs}, order[p]))
    return out


def bind_totals(laws: Sequence[tuple[Mapping[str, int], str]], initial: Mapping[str, int]) -> tuple[ConservationLaw, ...]:
    """The laws with their totals c . x0 from the initial counts (species not listed start at 0)."""
    return tuple(ConservationLaw(tuple(c.items()), e, int(sum(v * int(initial.get(s, 0)) for s, v in c.items())))
                 for c, e in laws)
