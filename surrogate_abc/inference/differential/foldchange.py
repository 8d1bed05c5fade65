"""The posterior of a log2 fold change between two groups, and the call made from it.

Each group's gene was inferred with its own prior, so the two posteriors are independent and every pair of an
equally weighted draw of A and one of B is a draw of the joint posterior: log2(B) - log2(A) over all D x D
pairs is the posterior of the log2 fold change, whose probabilities (of > 0, > t, < -t, |.| <= t) are counted
exactly over those pairs (sorted draws, no sampling error beyond the draws'; resolution 1 / D^2). Its median,
5% and 95% quantiles are those of D pairs taken at random.

The call at threshold t and probability p, over the genes compared for one pair and variable:

* `up` when P(log2fc > t) >= p and the gene is among the discoveries of the Benjamini-Hochberg procedure at a
  false discovery rate of 1 - p on the posterior probabilities of the opposite sign, 2 min(P(<= 0), P(>= 0))
  (a two-sided p-value of "no change": with many genes and most unchanged, P >= p gene by gene would still
  call a few unchanged genes, since per-gene probabilities do not know that most genes do not change);
  `down` likewise;
* `unchanged` when P(|log2fc| <= t) >= p (no discovery: no multiplicity to control);
* `undecided` otherwise (too few cells, or a change near t).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError

VARIABLES = ("burst_frequency", "burst_size")
COLUMNS = ("gene", "pair", "variable", "log2fc_median", "log2fc_q05", "log2fc_q95", "p_positive", "call")
STATS = ("log2fc_median", "log2fc_q05", "log2fc_q95", "p_positive", "call")
CALLS = ("up", "down", "unchanged", "undecided")
CHUNK = 2048  # genes per block of draws (memory: CHUNK x draws x 8 bytes a few times)


@dataclass(frozen=True)
class CallRule:
    """Call a change when P(|log2 fold change| > threshold, in one direction) >= probability."""

    threshold: float = 0.5  # |log2 fold change|: 0.5 is a fold change of 1.41
    probability: float = 0.95

    def __post_init__(self) -> None:
        if not (np.isfinite(self.threshold) and self.threshold >= 0):
            raise UserError(f"--lfc-threshold {self.threshold}: give a log2 fold change >= 0 (e.g. 0.5, a fold change "
                            "of 1.41)")
        if not 0.5 < self.probability < 1:
            raise UserError(f"--call-probability {self.probability}: give a posterior probability between 0.5 and 1 "
                            "(e.g. 0.95)")

    @classmethod
    def of(cls, threshold: float | None = None, probability: float | None = None) -> CallRule:
        """The rule with the values given (None: the default)."""
        given = {"threshold": threshold, "probability": probability}
        return cls(**{k: float(v) for k, v in given.items() if v is not None})

    def text(self) -> str:
        t, p = f"{self.threshold:g}", f"{self.probability:g}"
        q = f"{1 - self.probability:.3g}"
        return (f"up/down: P(log2 fold change > {t} / < -{t}) >= {p} and a discovery at a false discovery rate of {q} "
                f"(Benjamini-Hochberg on P(opposite sign)); unchanged: P(|log2 fold change| <= {t}) >= {p}; else "
                "undecided")


@dataclass(frozen=True)
class FoldChanges:
    """Per gene: the log2 fold change's median, q05, q95, P(> 0), the call, the posterior probability of the
    call's event (nan for undecided) and the sign p-value 2 min(P(<= 0), P(>= 0))."""

    median: np.ndarray
    q05: np.ndarray
    q95: np.ndarray
    p_positive: np.ndarray
    call: np.ndarray
    p_call: np.ndarray
    p_sign: np.ndarray


def fold_changes(a: np.ndarray, b: np.ndarray, rule: CallRule, rng: np.random.Generator) -> FoldChanges:
    """From equally weighted positive draws a, b (genes, draws) of a variable in groups A and B: the posterior
    summary of log2(B / A) per gene and its call (see the module docstring)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"draws of shapes {a.shape} and {b.shape}; give (genes, draws) for both")
    t = rule.threshold
    cols: list[list[np.ndarray]] = [[] for _ in range(7)]
    for s in range(0, len(a), CHUNK):
        la, lb = np.log2(a[s:s + CHUNK]), np.log2(b[s:s + CHUNK])
        lfc = np.log2(rng.permuted(b[s:s + CHUNK], axis=1)) - la
        q05, median, q95 = np.quantile(lfc, [0.05, 0.5, 0.95], axis=1)
        above = exceed(la, lb, np.array([0.0, t, -t]))  # P(lfc > 0), P(lfc > t), P(lfc > -t)
        at_most_zero = 1.0 - above[:, 0]
        at_least_zero = 1.0 - exceed(-la, -lb, np.zeros(1))[:, 0]  # 1 - P(lfc < 0)
        for k, x in enumerate((median, q05, q95, above[:, 0], above[:, 1], 1.0 - above[:, 2],
                               2.0 * np.minimum(at_most_zero, at_least_zero))):
            cols[k].append(x)
    median, q05, q95, positive, up, down, p_sign = (np.concatenate(c) if c else np.zeros(0) for c in cols)
    p_sign = np.clip(p_sign, 1.0 / max(a.shape[1], 1) ** 2, 1.0)
    call, p_call = _calls(up, down, 1.0 - up - down, p_sign, rule)
    return FoldChanges(median, q05, q95, positive, call, p_call, p_sign)


def exceed(la: np.ndarray, lb: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(genes, len(x)): the share of all D x D pairs (i, j) with lb[g, j] - la[g, i] > x[k], for each gene g, by
    sorting: for each j, the draws of la below lb[g, j] - x[k] (rows made one sorted array by offsets)."""
    g, d = la.shape
    if g == 0:
        return np.zeros((0, len(x)))
    reach = float(np.max(np.abs(x))) + 1.0
    lo = float(min(la.min(), lb.min())) - reach
    span = float(max(la.max(), lb.max())) + reach - lo  # every value and query of a row lies in [0, span)
    offset = (np.arange(g) * 2.0 * span)[:, None]
    flat = (np.sort(la, axis=1) - lo + offset).ravel()
    out = np.empty((g, len(x)))
    for k, xk in enumerate(x):
        pos = np.searchsorted(flat, (lb - xk - lo + offset).ravel(), side="left").reshape(g, d)
        out[:, k] = (pos - np.arange(g)[:, None] * d).sum(axis=1) / float(d * d)
    return out


def _calls(up: np.ndarray, down: np.ndarray, same: np.ndarray, p_sign: np.ndarray, rule: CallRule
           ) -> tuple[np.ndarray, np.ndarray]:
    p = rule.probability
    call = np.full(len(up), "undecided", dtype=object)
    p_call = np.full(len(up), np.nan)
    hit = same >= p
    call[hit], p_call[hit] = "unchanged", same[hit]
    found = benjamini_hochberg(p_sign, 1.0 - p)
    for name, prob in (("down", down), ("up", up)):
        hit = found & (prob >= p)
        call[hit], p_call[hit] = name, prob[hit]
    return call, p_call


def benjamini_hochberg(p: np.ndarray, alpha: float) -> np.ndarray:
    """Boolean mask of the p-values the Benjamini-Hochberg procedure rejects at false discovery rate alpha."""
    m = len(p)
    if m == 0:
        return np.zeros(0, bool)
    order = np.argsort(p, kind="stable")
    passed = np.flatnonzero(p[order] <= alpha * np.arange(1, m + 1) / m)
    out = np.zeros(m, bool)
    if len(passed):
        out[order[: passed[-1] + 1]] = True
    return out
