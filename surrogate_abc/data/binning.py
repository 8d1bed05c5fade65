"""Histogram kernels (numba): bin counts of values, and re-bin per-integer support grids.

Semantics: a value x falls in bin i when edges[i] <= x < edges[i+1] (every bin half-open, the last
one too, unlike numpy.histogram whose last bin is closed). Values outside [edges[0], edges[-1]),
and NaN, are counted separately as overflow. In 2-D a pair overflows when either coordinate does.

Batched inputs (n, ...) are processed with one numba thread per row (prange over sets); a single
long 1-D input is split into one segment per thread. Bin indices are found with an equal-width
formula when the edges are uniform, corrected against the edge values themselves (so values lying
exactly on edges such as 0.3 * k land where the comparisons say), or otherwise by a binary search
narrowed by a guide table over a uniform grid of 4 x (number of bins) cells.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

__all__ = [
    "bin_indices",
    "bin_values",
    "bin_values_2d",
    "bin_weighted",
    "rebin_grid",
    "rebin_grid_2d",
]


# ----------------------------------------------------------------------------------- kernels
@njit(cache=True, inline="always")
def _index(x, edges, uniform, e0, inv_w, guide):
    """Bin index of x, or -1 when x is outside [edges[0], edges[-1]) or NaN.

    Uniform edges: i = floor((x - e0) / w). Otherwise inv_w = 1 / (width of a guide cell) and
    guide[j] is the bin holding the start of guide cell j (a uniform grid over the edges' range),
    which narrows the binary search to the few bins that cell overlaps.
    """
    nb = edges.shape[0] - 1
    if not (x >= edges[0] and x < edges[nb]):
        return -1
    if uniform:
        i = int(math.floor((x - e0) * inv_w))
        if i < 0:
            i = 0
        elif i > nb - 1:
            i = nb - 1
        # Guard against floating round-off: the edge values decide, not the formula.
        while x < edges[i]:
            i -= 1
        while x >= edges[i + 1]:
            i += 1
        return i
    g = guide.shape[0] - 1
    j = int((x - e0) * inv_w)
    if j < 0:
        j = 0
    elif j > g - 1:
        j = g - 1
    lo = guide[j]
    while lo > 0 and x < edges[lo]:  # round-off at the cell boundary
        lo -= 1
    hi = guide[j + 1] + 1
    if hi > nb:
        hi = nb
    while x >= edges[hi]:
        hi += 1
    while hi - lo > 1:  # invariant: edges[lo] <= x < edges[hi]
        mid = (lo + hi) >> 1
        if edges[mid] <= x:
            lo = mid
        else:
            hi = mid
    return lo


@njit(parallel=True, cache=True)
def _indices_kernel(values, edges, uniform, e0, inv_w, guide):
    out = np.empty(values.shape[0], np.int64)
    for k in prange(values.shape[0]):
        out[k] = _index(values[k], edges, uniform, e0, inv_w, guide)
    return out


@njit(parallel=True, cache=True)
def _count_segments(flat, starts, stops, edges, uniform, e0, inv_w, guide):
    """Counts per segment [starts[r], stops[r]) of flat; column B holds the overflow."""
    nb = edges.shape[0] - 1
    out = np.zeros((starts.shape[0], nb + 1), np.int64)
    for r in prange(starts.shape[0]):
        for k in range(starts[r], stops[r]):
            i = _index(flat[k], edges, uniform, e0, inv_w, guide)
            if i < 0:
                out[r, nb] += 1
            else:
                out[r, i] += 1
    return out


@njit(parallel=True, cache=True)
def _count_segments_2d(fx, fy, starts, stops, ex, ux, x0, ix, gx, ey, uy, y0, iy, gy):
    """Joint counts per segment, flattened (bx * by); the last column holds the overflow."""
    bx = ex.shape[0] - 1
    by = ey.shape[0] - 1
    out = np.zeros((starts.shape[0], bx * by + 1), np.int64)
    for r in prange(starts.shape[0]):
        for k in range(starts[r], stops[r]):
            i = _index(fx[k], ex, ux, x0, ix, gx)
            j = _index(fy[k], ey, uy, y0, iy, gy)
            if i < 0 or j < 0:
                out[r, bx * by] += 1
            else:
                out[r, i * by + j] += 1
    return out


@njit(parallel=True, cache=True)
def _weighted_rows(weights, idx, nb):
    """out[r, idx[k]] += weights[r, k]; entries with idx -1 go to column nb (overflow)."""
    out = np.zeros((weights.shape[0], nb + 1), np.float64)
    for r in prange(weights.shape[0]):
        for k in range(weights.shape[1]):
            b = idx[k]
            if b < 0:
                out[r, nb] += weights[r, k]
            else:
                out[r, b] += weights[r, k]
    return out


@njit(parallel=True, cache=True)
def _weighted_rows_2d(grid, ix, iy, bx, by):
    """Re-bin (n, Km, Kp) onto (n, bx, by) through index maps; overflow returned separately."""
    n = grid.shape[0]
    out = np.zeros((n, bx, by), np.float64)
    over = np.zeros(n, np.float64)
    for r in prange(n):
        o = 0.0
        for a in range(grid.shape[1]):
            i = ix[a]
            if i < 0:
                for b in range(grid.shape[2]):
                    o += grid[r, a, b]
                continue
            for b in range(grid.shape[2]):
                j = iy[b]
                if j < 0:
                    o += grid[r, a, b]
                else:
                    out[r, i, j] += grid[r, a, b]
        over[r] = o
    return out, over


# ----------------------------------------------------------------------------------- helpers
def _edges(edges) -> tuple[np.ndarray, bool, float, float, np.ndarray]:
    """Validated float64 edges, whether they are (numerically) uniform, first edge, 1/width of a bin
    (uniform) or of a guide cell (otherwise), and the guide table (see _index)."""
    e = np.ascontiguousarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.shape[0] < 2:
        raise ValueError(f"edges must be 1-D with at least 2 entries, got shape {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise ValueError("edges must be finite and strictly increasing")
    nb = e.shape[0] - 1
    span = e[-1] - e[0]
    w = span / nb
    if np.all(np.abs(np.diff(e) - w) <= 1e-9 * w):
        return e, True, float(e[0]), float(1.0 / w), np.zeros(1, np.int64)
    cells = int(min(max(4 * nb, 64), 1 << 20))
    starts = e[0] + (span / cells) * np.arange(cells + 1)
    guide = np.clip(np.searchsorted(e, starts, side="right") - 1, 0, nb - 1).astype(np.int64)
    return e, False, float(e[0]), float(cells / span), guide


def _values(values) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype.kind not in "iuf":
        raise TypeError(f"values must be integer or float, got dtype {v.dtype}")
    if v.dtype.kind == "u":
        v = v.astype(np.int64)
    return np.ascontiguousarray(v)


def _segments(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Segment bounds over the flattened values: one per row (batched) or one per thread (1-D)."""
    if len(shape) == 1:
        n = shape[0]
        parts = max(1, min(numba.get_num_threads(), n // 65536))
        bounds = np.linspace(0, n, parts + 1).astype(np.int64)
        return bounds[:-1].copy(), bounds[1:].copy(), False
    if len(shape) == 2:
        n, s = shape
        starts = np.arange(n, dtype=np.int64) * s
        return starts, starts + s, True
    raise ValueError(f"values must be 1-D (one set) or 2-D (sets, samples), got shape {shape}")


# ----------------------------------------------------------------------------------- public API
def bin_indices(values, edges) -> np.ndarray:
    """Bin index of every value of a 1-D array (int64), -1 for values outside [edges[0], edges[-1])."""
    e, uni, e0, inv_w, guide = _edges(edges)
    v = _values(values)
    if v.ndim != 1:
        raise ValueError(f"bin_indices takes 1-D values, got shape {v.shape}")
    return _indices_kernel(v, e, uni, e0, inv_w, guide)


def bin_values(values, edges) -> tuple[np.ndarray, np.ndarray | int]:
    """Histogram counts of values: (counts, overflow).

    values (S,) gives counts (B,) and an int overflow; values (n, S), one set per row, gives
    counts (n, B) and overflow (n,). Bin i holds edges[i] <= x < edges[i+1].
    """
    e, uni, e0, inv_w, guide = _edges(edges)
    v = _values(values)
    starts, stops, batched = _segments(v.shape)
    out = _count_segments(v.reshape(-1), starts, stops, e, uni, e0, inv_w, guide)
    if not batched:
        out = out.sum(axis=0)
        return out[:-1], int(out[-1])
    return out[:, :-1], out[:, -1].copy()


def bin_values_2d(x, y, edges_x, edges_y) -> tuple[np.ndarray, np.ndarray | int]:
    """Joint histogram of pairs (x, y): (counts, overflow).

    x, y (S,) give counts (Bx, By) and an int overflow; x, y (n, S) give (n, Bx, By) and (n,).
    A pair overflows when either coordinate is outside its edges.
    """
    ex, ux, x0, ix, gx = _edges(edges_x)
    ey, uy, y0, iy, gy = _edges(edges_y)
    vx, vy = _values(x), _values(y)
    if vx.shape != vy.shape:
        raise ValueError(f"x and y must have the same shape, got {vx.shape} and {vy.shape}")
    starts, stops, batched = _segments(vx.shape)
    out = _count_segments_2d(vx.reshape(-1), vy.reshape(-1), starts, stops, ex, ux, x0, ix, gx, ey, uy, y0, iy, gy)
    bx, by = ex.shape[0] - 1, ey.shape[0] - 1
    if not batched:
        out = out.sum(axis=0)
        return out[:-1].reshape(bx, by), int(out[-1])
    return out[:, :-1].reshape(-1, bx, by), out[:, -1].copy()


def bin_weighted(values, weights, edges) -> tuple[np.ndarray, np.ndarray | float]:
    """Weighted histogram: value k contributes weights[..., k] to its bin. Returns (sums, overflow).

    values (K,) is shared by all rows; weights (K,) gives sums (B,) and a float overflow,
    weights (n, K) gives (n, B) and (n,). Used to re-bin a per-integer support grid (values = 0..K-1).
    """
    e = _edges(edges)[0]
    idx = bin_indices(values, e)
    w = np.asarray(weights)
    single = w.ndim == 1
    w2 = np.ascontiguousarray(w.reshape(1, -1) if single else w)
    if w2.ndim != 2 or w2.shape[1] != idx.shape[0]:
        raise ValueError(f"weights must be (K,) or (n, K) with K = len(values) = {idx.shape[0]}, got {w.shape}")
    out = _weighted_rows(w2, idx, e.shape[0] - 1)
    if single:
        return out[0, :-1], float(out[0, -1])
    return out[:, :-1], out[:, -1].copy()


def rebin_grid(grid, edges) -> tuple[np.ndarray, np.ndarray]:
    """Re-bin per-integer grids (n, K) (mass of count k in column k) into (n, B); returns (hist, overflow (n,))."""
    g = np.asarray(grid)
    if g.ndim != 2:
        raise ValueError(f"grid must be (n, K), got shape {g.shape}")
    hist, overflow = bin_weighted(np.arange(g.shape[1], dtype=np.int64), g, edges)
    return hist, np.asarray(overflow)  # (n, K) weights: the overflow is already an (n,) array


def rebin_grid_2d(grid, edges_x, edges_y) -> tuple[np.ndarray, np.ndarray]:
    """Re-bin joint per-integer grids (n, Km, Kp) into (n, Bx, By); returns (hist, overflow (n,))."""
    g = np.ascontiguousarray(grid)
    if g.ndim != 3:
        raise ValueError(f"grid must be (n, Km, Kp), got shape {g.shape}")
    ex, ey = _edges(edges_x)[0], _edges(edges_y)[0]
    ix = bin_indices(np.arange(g.shape[1], dtype=np.int64), ex)
    iy = bin_indices(np.arange(g.shape[2], dtype=np.int64), ey)
    return _weighted_rows_2d(g, ix, iy, ex.shape[0] - 1, ey.shape[0] - 1)
