"""Stationary vectors of CTMC generators: a sparse direct solve (SuperLU, one state fixed) and block
elimination over the levels of a block tri-diagonal generator (a numba kernel). Used by `fsp`."""
from __future__ import annotations

from typing import Sequence

import numba
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

PERMC_SPEC = "MMD_AT_PLUS_A"  # SuperLU column ordering for wide boxes: least fill among SuperLU's on 2-D grids

def stationary(q: sp.spmatrix, fixed: int = 0, permc_spec: str = PERMC_SPEC) -> np.ndarray:
    """Normalised stationary vector p of an irreducible generator q (Q^T p = 0, sum p = 1).

    p[fixed] is set to 1 and the other N-1 equations of Q^T p = 0 (row `fixed` dropped) are solved
    with SuperLU; no dense normalisation row, so the sparsity is kept. A = Q^T is column diagonally
    dominant, so the diagonal pivots are always acceptable and the column ordering alone decides the
    fill. Tiny negative round-off is clipped; a large negative entry or residual raises RuntimeError.
    """
    n = q.shape[0]
    if n == 1:
        return np.ones(1)
    # If p[fixed] is negligible next to other states the factor can be singular to round-off or the
    # solution overflow: re-fix at the largest finite entry, or else at the middle or first state.
    p = np.full(n, np.nan)
    for k in (fixed, None, n // 2, 0):
        if k is None:
            finite = np.isfinite(p)
            if not finite.any():
                continue
            k = int(np.argmax(np.where(finite, p, -np.inf)))
        try:
            p = _solve_fixed(q, k, permc_spec)
        except RuntimeError:  # SuperLU: "Factor is exactly singular"
            p = np.full(n, np.nan)
            continue
        if np.isfinite(p).all() and np.abs(p).max() < 1e200:
            break
    p = _normalised(p, "stationary solve")
    resid = np.abs(q.T @ p).sum() / max(np.abs(q.diagonal()) @ p, 1e-300)
    if not resid < 1e-8:
        raise RuntimeError(f"FSP stationary solve failed: relative residual {resid:.3g}")
    return p


def _normalised(p: np.ndarray, what: str) -> np.ndarray:
    """p scaled to sum 1 with round-off negatives clipped; RuntimeError for a failed solve."""
    total = p.sum()
    if not np.isfinite(total) or total <= 0:
        raise RuntimeError(f"FSP {what} failed: non-finite or non-positive solution")
    p = p / total
    if p.min() < -1e-9:
        raise RuntimeError(f"FSP {what} failed: negative probability {p.min():.3g}")
    np.clip(p, 0.0, None, out=p)
    return p / p.sum()


def _solve_fixed(q: sp.spmatrix, fixed: int, permc_spec: str) -> np.ndarray:
    """Unnormalised solution of Q^T p = 0 with p[fixed] = 1 (row and column `fixed` eliminated)."""
    n = q.shape[0]
    a = q.T.tocoo()
    keep = (a.row != fixed) & (a.col != fixed)
    m = sp.csc_matrix((a.data[keep], (_drop(a.row[keep], fixed), _drop(a.col[keep], fixed))), shape=(n - 1, n - 1))
    incol = (a.col == fixed) & (a.row != fixed)
    rhs = np.zeros(n - 1)
    np.add.at(rhs, _drop(a.row[incol], fixed), -a.data[incol])
    with np.errstate(over="ignore", invalid="ignore"):
        y = spla.splu(m, permc_spec=permc_spec).solve(rhs)
    return np.insert(y, fixed, 1.0)


def _drop(i: np.ndarray, fixed: int) -> np.ndarray:
    """Index map after removing index `fixed`."""
    return i - (i > fixed)


def level_stationary(props: Sequence[np.ndarray], offsets: Sequence[int], block: int,
                     level_shifts: Sequence[int] | None = None) -> np.ndarray:
    """Normalised stationary vector of a block tri-diagonal generator by block elimination over levels.

    Q is given per reaction r by its propensities props[r] (state k moves to k + offsets[r]); state k
    lies on level k // block and no reaction moves more than one level. With Q_{p,q} the blocks, the
    top levels are eliminated one by one: T_top = Q_{top,top}, R_{p-1} = Q_{p-1,p} (-T_p)^{-1},
    T_{p-1} = Q_{p-1,p-1} + R_{p-1} Q_{p,p-1} (T_p: the chain censored to levels >= p, restricted to
    level p). pi_0 T_0 = 0 is solved subtraction-free (GTH), then pi_p = pi_{p-1} R_{p-1}. -T_p is a
    row diagonally dominant M-matrix, inverted without pivoting; all R are non-negative, so the
    recursion is stable. O(levels * block^3) flops, levels * block^2 floats. Raises RuntimeError when
    the solve fails (singular block, negative or non-finite values, relative residual >= 1e-8).
    """
    p_all = np.ascontiguousarray(np.stack(props)) if len(props) else np.zeros((0, 0))
    n = p_all.shape[1]
    off = np.asarray(offsets, dtype=np.int64)
    if n % block:
        raise ValueError("level_stationary: block does not divide the number of states")
    if level_shifts is not None:  # a reaction that moves the outer and an inner coordinate at once
        lshift = np.asarray(level_shifts, dtype=np.int64)
    else:
        lshift = np.floor_divide(off + block // 2, block) if block > 1 else off  # level move of each reaction
    inner = off - lshift * block
    if np.any(np.abs(lshift) > 1) or np.any(np.abs(inner) >= block):
        raise ValueError("level_stationary: a reaction moves more than one level")
    diag = -p_all.sum(axis=0)
    try:
        pi = _level_kernel(n // block, block, p_all, lshift, inner, diag)
    except np.linalg.LinAlgError as e:
        raise RuntimeError(f"FSP level solve failed: {e}") from None
    p = _normalised(pi.ravel(), "level solve")
    res = diag * p  # (Q^T p)
    for prop, o in zip(p_all, off):
        flow = prop * p
        if o >= 0:
            res[o:] += flow[:n - o]
        else:
            res[:o] += flow[-o:]
    resid = np.abs(res).sum() / max(np.abs(diag) @ p, 1e-300)
    if not resid < 1e-8:
        raise RuntimeError(f"FSP level solve failed: relative residual {resid:.3g}")
    return p


@numba.njit(cache=True)
def _level_kernel(nlev, b, props, lshift, inner, diag):  # pragma: no cover - compiled
    """pi (nlev, b), unnormalised, of the block tri-diagonal generator (see `level_stationary`).

    Kept as one function (~95 lines): numba compiles it into one loop nest; splitting the elimination and
    the back substitution into calls would only add overhead inside the hot loops."""
    nr = props.shape[0]
    r_all = np.empty((max(nlev - 1, 1), b, b))
    t = np.zeros((b, b))
    inv = np.empty((b, b))
    rowk = np.empty(b)
    top = nlev - 1
    _same_level(t, top, b, props, lshift, inner, diag)
    _set_diagonal(t, top, b, props, lshift)
    for lev in range(nlev - 1, 0, -1):
        # inv = (-T_lev)^{-1} by Gauss-Jordan without pivoting (row diagonally dominant M-matrix)
        for i in range(b):
            for j in range(b):
                inv[i, j] = -t[i, j]
        for k in range(b):
            piv = inv[k, k]
            if not piv > 0.0:
                raise np.linalg.LinAlgError("singular level block")
            rp = 1.0 / piv
            inv[k, k] = 1.0
            for j in range(b):
                inv[k, j] *= rp
                rowk[j] = inv[k, j]
            for i in range(b):
                if i != k:
                    f = inv[i, k]
                    if f != 0.0:
                        inv[i, k] = 0.0
                        for j in range(b):
                            inv[i, j] -= f * rowk[j]
        r = r_all[lev - 1]
        r[:, :] = 0.0
        base = (lev - 1) * b
        for q in range(nr):  # R = Q_{lev-1,lev} inv (up moves from level lev-1)
            if lshift[q] == 1:
                for i in range(b):
                    v = props[q, base + i]
                    if v > 0.0:
                        jj = i + inner[q]
                        for j in range(b):
                            r[i, j] += v * inv[jj, j]
        for i in range(b):
            for j in range(b):
                if r[i, j] < 0.0:
                    r[i, j] = 0.0  # R >= 0 exactly; clip round-off
        t[:, :] = 0.0
        _same_level(t, lev - 1, b, props, lshift, inner, diag)
        base = lev * b
        for q in range(nr):  # + R Q_{lev,lev-1} (down moves from level lev)
            if lshift[q] == -1:
                for i in range(b):
                    v = props[q, base + i]
                    if v > 0.0:
                        jj = i + inner[q]
                        for k in range(b):
                            t[k, jj] += r[k, i] * v
        _set_diagonal(t, lev - 1, b, props, lshift)
    # GTH on the censored generator t (off-diagonal part only): pi0 t = 0, subtraction-free.
    g = t.copy()
    for k in range(b - 1, 0, -1):
        s = 0.0
        for j in range(k):
            s += g[k, j]
        if s <= 0.0:
            raise np.linalg.LinAlgError("level 0 censored chain is reducible")
        for i in range(k):
            f = g[i, k] / s
            for j in range(k):
                if j != i:
                    g[i, j] += f * g[k, j]
        g[k, k] = s
    pi = np.zeros((nlev, b))
    pi[0, 0] = 1.0
    for k in range(1, b):
        acc = 0.0
        for i in range(k):
            acc += pi[0, i] * g[i, k]
        pi[0, k] = acc / g[k, k]
    for lev in range(1, nlev):
        r = r_all[lev - 1]
        big = 0.0
        for j in range(b):
            acc = 0.0
            for i in range(b):
                acc += pi[lev - 1, i] * r[i, j]
            pi[lev, j] = acc
            if acc > big:
                big = acc
        if big > 1e200:  # rescale everything so far; the low levels may underflow harmlessly
            for l2 in range(lev + 1):
                for j in range(b):
                    pi[l2, j] /= big
    return pi


@numba.njit(cache=True)
def _same_level(t, lev, b, props, lshift, inner, diag):  # pragma: no cover - compiled
    """t += off-diagonal part of Q_{lev,lev} (moves within level `lev`)."""
    base = lev * b
    for q in range(props.shape[0]):
        if lshift[q] == 0:
            for i in range(b):
                v = props[q, base + i]
                if v > 0.0:
                    t[i, i + inner[q]] += v


@numba.njit(cache=True)
def _set_diagonal(t, lev, b, props, lshift):  # pragma: no cover - compiled
    """Diagonal of T_lev without cancellation: T_lev's rows sum to minus the down-rates of level lev."""
    base = lev * b
    for i in range(b):
        s = 0.0
        for j in range(b):
            if j != i:
                s += t[i, j]
        for q in range(props.shape[0]):
            if lshift[q] == -1:
                s += props[q, base + i]
        t[i, i] = -s


