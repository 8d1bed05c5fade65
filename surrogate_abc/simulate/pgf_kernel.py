"""Numba kernels of the gene model's stationary generating function G(z, w) (the method: pgf.py).

In the age a of the mRNAs alive now, with c = v1 (w - 1) / d1 and I(a) = -d0 a - c expm1(-d1 a):
  one mRNA's generating function F(a) - 1 = z A(a) + K(a) - 1, A = exp(I) (the mRNA itself alive), and
  K(t) = exp(I(t) - I(s)) K(s) + d0 int_s^t exp(I(t) - I(u)) du, K(0) = 0 (`k_step`, Gauss-Legendre; at tail
  ages, where K has settled, the collocation below applied to K' = -d0 (K - 1) + v1 (w - 1) e^(-d1 t) K);
  the promoter row vector (x, y) = (off, on) solves x' = -k0 x + k1 y, y' = k0 x + (V - k1) y, V = v0 (F - 1),
  from (k1, k0) / (k0 + k1); G = x + y at a = inf.
V reaches v0 |F - 1| ~ 1e5, so (x, y) is stepped by Radau IIA collocation (L-stable, order 2s - 1): the off
stages are eliminated with pair-independent matrices and each step solves one s x s complex system for the on
stages, (E - z F) Y = rhs, affine in z: per w and step the pencil is reduced once to Hessenberg-triangular form
(`pencil`), so each z costs O(s^2) (`head_sweep`). Ages up to `head[-1]` depend on z; beyond, V does not, so
the propagator to `tail[-1]` is computed once per w. Both grids are shared by every (z, w), which makes the
discretisation error an analytic function of z and w.
"""
from __future__ import annotations

import math

import numba
import numpy as np

KSUB = 2.0   # K sub-steps span at most this many units of the rate at which K varies


def radau(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Radau IIA collocation on [0, 1]: nodes c (zeros of P_s - P_{s-1} in 2c - 1; c_s = 1) and the matrix
    a_ij = int_0^{c_i} l_j of the nodes' Lagrange basis l_j."""
    coef = np.zeros(s + 1)
    coef[s], coef[s - 1] = 1.0, -1.0
    c = np.sort((np.polynomial.legendre.legroots(coef).real + 1.0) / 2.0)
    c[-1] = 1.0
    xq, wq = np.polynomial.legendre.leggauss(s + 2)
    xq, wq = (xq + 1.0) / 2.0, wq / 2.0
    a = np.empty((s, s))
    for j in range(s):
        others = np.delete(c, j)
        for i in range(s):
            t = c[i] * xq
            a[i, j] = c[i] * np.sum(wq * np.prod((t[:, None] - others) / (c[j] - others), axis=1))
    return c, a


def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-point Gauss-Legendre nodes and weights on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1.0) / 2.0, w / 2.0


@numba.njit(cache=True)
def step_grid(a0, a1, rate0, rate1, d1, cstep, hmin, grade):
    """Step edges from a0 to a1: h = cstep / (rate0 + rate1 exp(-d1 a)), at most hmin + grade (a - a0)."""
    n = 0
    a = a0
    while a < a1:
        a += min(cstep / (rate0 + rate1 * math.exp(-d1 * a)), hmin + grade * (a - a0))
        n += 1
    edges = np.empty(n + 1)
    edges[0] = a0
    a = a0
    for i in range(1, n + 1):
        a = min(a + min(cstep / (rate0 + rate1 * math.exp(-d1 * a)), hmin + grade * (a - a0)), a1)
        edges[i] = a
    edges[n] = a1
    return edges


@numba.njit(cache=True)
def k_step(kv, t0, t1, d0, d1, c, xs, ws):
    """K(t1) from K(t0) = kv: the exact factor exp(I(t1) - I(t0)) and Gauss-Legendre for the source integral."""
    h = t1 - t0
    e1 = math.exp(-d1 * t1)
    acc = 0.0j
    for q in range(xs.shape[0]):
        u = h * (1.0 - xs[q])  # t1 - s
        acc += ws[q] * np.exp(-d0 * u + c * (e1 * math.expm1(d1 * u)))
    return np.exp(-d0 * h + c * (e1 * math.expm1(d1 * h))) * kv + d0 * h * acc


@numba.njit(cache=True)
def k_nodes(kv, t0, h, rc, d0, d1, c, xs, ws, out):
    """K at the nodes t0 + rc_j h (increasing, the last at the step's end) from K(t0) = kv; returns K(t0 + h)."""
    t = t0
    for j in range(rc.shape[0]):
        tgt = t0 + rc[j] * h
        nsub = int(math.ceil((tgt - t) * (d0 + abs(c) * d1 * math.exp(-d1 * t)) / KSUB)) + 1
        dt = (tgt - t) / nsub
        for _ in range(nsub):
            kv = k_step(kv, t, t + dt, d0, d1, c, xs, ws)
            t += dt
        t = tgt
        out[j] = kv
    return kv


def step_mats(edges: np.ndarray, k0: float, k1: float, ra: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pair-independent parts of every Radau step of a grid (numpy, stacked over steps): h a, the on-stage
    matrix without V, the off initial value's weight in the on stages, and x's end value from (x0, on stages)."""
    s = ra.shape[0]
    ha = np.diff(edges)[:, None, None] * ra[None]
    eye = np.eye(s)[None]
    p = np.linalg.inv(eye + k0 * ha)  # the off stages: X = p (x0 1 + k1 ha Y)
    cm = eye + k1 * ha - k0 * k1 * (ha @ p @ ha)
    r1 = k0 * (ha @ p.sum(axis=2)[..., None])[..., 0]
    q1 = p[:, s - 1].sum(axis=1)
    q2 = k1 * np.einsum("nj,nji->ni", p[:, s - 1], ha)
    return (np.ascontiguousarray(ha), np.ascontiguousarray(cm), np.ascontiguousarray(r1), q1,
            np.ascontiguousarray(q2))


@numba.njit(cache=True)
def solve_small(m, b):
    """b <- m^-1 b for a small dense complex m (Gaussian elimination with partial pivoting; m is overwritten)."""
    s = m.shape[0]
    for k in range(s):
        piv = k
        best = m[k, k].real ** 2 + m[k, k].imag ** 2
        for i in range(k + 1, s):
            mag = m[i, k].real ** 2 + m[i, k].imag ** 2
            if mag > best:
                best = mag
                piv = i
        if piv != k:
            for j in range(k, s):
                m[k, j], m[piv, j] = m[piv, j], m[k, j]
            b[k], b[piv] = b[piv], b[k]
        for i in range(k + 1, s):
            fct = m[i, k] / m[k, k]
            for j in range(k + 1, s):
                m[i, j] -= fct * m[k, j]
            b[i] -= fct * b[k]
    for k in range(s - 1, -1, -1):
        acc = b[k]
        for j in range(k + 1, s):
            acc -= m[k, j] * b[j]
        b[k] = acc / m[k, k]


@numba.njit(cache=True)
def k_radau(kv, t0, h, rc, ra, d0, d1, c, out, mbuf):
    """K at the Radau nodes of [t0, t0 + h] by the same collocation (K' = (beta - d0) K + d0,
    beta = c d1 exp(-d1 t)): for tail ages, where K has settled on its slowly varying course."""
    s = rc.shape[0]
    for j in range(s):
        acc = 0.0
        for col in range(s):
            beta = c * d1 * math.exp(-d1 * (t0 + rc[col] * h))
            mbuf[j, col] = (1.0 if j == col else 0.0) - h * ra[j, col] * (beta - d0)
            acc += ra[j, col]
        out[j] = kv + d0 * h * acc
    solve_small(mbuf, out)
    return out[s - 1]


@numba.njit(cache=True)
def radau_step(x0, y0, vs, ha, cm, r1, q1, q2, mbuf, rbuf):
    """(x, y) after one Radau IIA step with V = vs at the nodes: solve (cm - ha diag(vs)) Y = y0 + x0 r1
    (Gaussian elimination, partial pivoting); y = Y_s, x = x0 q1 + q2 . Y."""
    s = vs.shape[0]
    for i in range(s):
        for j in range(s):
            mbuf[i, j] = cm[i, j] - ha[i, j] * vs[j]
        rbuf[i] = y0 + x0 * r1[i]
    solve_small(mbuf, rbuf)
    x1 = x0 * q1
    for j in range(s):
        x1 += q2[j] * rbuf[j]
    return x1, rbuf[s - 1]


@numba.njit(cache=True)
def _rot_rows(m, i, c, sn):
    """Rows (i - 1, i) of m <- [[c, sn], [-conj(sn), c]] applied from the left."""
    for j in range(m.shape[1]):
        a, b = m[i - 1, j], m[i, j]
        m[i - 1, j] = c * a + sn * b
        m[i, j] = -np.conj(sn) * a + c * b


@numba.njit(cache=True)
def _rot_cols(m, i, c, sn):
    """Columns (i - 1, i) of m <- times [[c, sn], [-conj(sn), c]] from the right."""
    for j in range(m.shape[0]):
        a, b = m[j, i - 1], m[j, i]
        m[j, i - 1] = c * a - np.conj(sn) * b
        m[j, i] = sn * a + c * b


@numba.njit(cache=True)
def _givens(a, b):
    """(c, sn) with -conj(sn) a + c b = 0 and c >= 0 (zeroes b against a, from the left)."""
    r = math.hypot(abs(a), abs(b))
    if r == 0.0:
        return 1.0, 0.0j
    if a == 0:
        return 0.0, np.conj(b) / abs(b)
    return abs(a) / r, (a / abs(a)) * np.conj(b) / r


@numba.njit(cache=True)
def pencil(e, f, vecs, rows):
    """Reduce the pencil E - z F to upper Hessenberg H - z T (T upper triangular) by unitary rotations
    L (E - z F) R, in place: the columns of `vecs` become L vecs and the rows of `rows` become rows R."""
    s = e.shape[0]
    for j in range(s - 1):            # F -> triangular (left rotations)
        for i in range(s - 1, j, -1):
            c, sn = _givens(f[i - 1, j], f[i, j])
            _rot_rows(f, i, c, sn)
            _rot_rows(e, i, c, sn)
            _rot_rows(vecs, i, c, sn)
    for j in range(s - 2):            # E -> Hessenberg, F kept triangular
        for i in range(s - 1, j + 1, -1):
            c, sn = _givens(e[i - 1, j], e[i, j])
            _rot_rows(e, i, c, sn)
            _rot_rows(f, i, c, sn)
            _rot_rows(vecs, i, c, sn)
            # zero the fill f[i, i - 1] by a rotation of columns i - 1, i
            c, sn = _givens(f[i, i], f[i, i - 1])
            _rot_cols(f, i, c, sn)
            _rot_cols(e, i, c, sn)
            _rot_cols(rows, i, c, sn)


@numba.njit(cache=True)
def head_sweep(zs, xz, yz, hm, tm, vc, rw, q1, w, g, f, sw):
    """One head step for every z at once: solve (H - z T) u = y0 g1 + x0 g2 (Gaussian elimination, pivoting
    between adjacent rows), then y = zrow . u, x = x0 q1 + qrow . u, with (g1, g2) the columns of `vc` and
    (zrow, qrow) the rows of `rw` (`pencil`). z is the innermost loop and the pivoting branch-free, so it
    vectorises."""
    s, nz = hm.shape[0], zs.shape[0]
    for r in range(s):
        for c in range(max(r - 1, 0), s):
            h_, t_ = hm[r, c], tm[r, c]
            for jz in range(nz):
                w[r, c, jz] = h_ - zs[jz] * t_
        g1, g2 = vc[r, 0], vc[r, 1]
        for jz in range(nz):
            g[r, jz] = yz[jz] * g1 + xz[jz] * g2
    for k in range(s - 1):
        for jz in range(nz):
            a, b = w[k, k, jz], w[k + 1, k, jz]
            swap = (b.real * b.real + b.imag * b.imag) > (a.real * a.real + a.imag * a.imag)
            piv = b if swap else a
            oth = a if swap else b
            sw[jz] = swap
            w[k, k, jz] = piv
            f[jz] = oth * np.conj(piv) / (piv.real * piv.real + piv.imag * piv.imag)
        for j in range(k + 1, s):
            for jz in range(nz):
                lo, hi = w[k, j, jz], w[k + 1, j, jz]
                top = hi if sw[jz] else lo
                bot = lo if sw[jz] else hi
                w[k, j, jz] = top
                w[k + 1, j, jz] = bot - f[jz] * top
        for jz in range(nz):
            lo, hi = g[k, jz], g[k + 1, jz]
            top = hi if sw[jz] else lo
            bot = lo if sw[jz] else hi
            g[k, jz] = top
            g[k + 1, jz] = bot - f[jz] * top
    for jz in range(nz):
        xz[jz] = xz[jz] * q1
        yz[jz] = 0.0
    for k in range(s - 1, -1, -1):
        for j in range(k + 1, s):
            for jz in range(nz):
                g[k, jz] -= w[k, j, jz] * g[j, jz]
        r0, r1 = rw[0, k], rw[1, k]
        for jz in range(nz):
            d = w[k, k, jz]
            u = g[k, jz] * np.conj(d) / (d.real * d.real + d.imag * d.imag)
            g[k, jz] = u
            yz[jz] += r0 * u
            xz[jz] += r1 * u


def pgf_grid(zs: np.ndarray, ws_: np.ndarray, rates: np.ndarray, head: np.ndarray, tail: np.ndarray,
             rc: np.ndarray, ra: np.ndarray, xs: np.ndarray, wq: np.ndarray) -> np.ndarray:
    """G(z_j, w_k) for all j, k: (len(zs), len(ws_)) complex; rates = (k0, k1, v0, d0, v1, d1)."""
    k0, k1 = float(rates[0]), float(rates[1])
    hh, hc, hr, hq1, hq2 = step_mats(head, k0, k1, ra)
    th, tc, tr, tq1, tq2 = step_mats(tail, k0, k1, ra)
    return _pgf_grid(zs, ws_, rates, head, tail, rc, ra, hh, hc, hr, hq1, hq2, th, tc, tr, tq1, tq2, xs, wq)


@numba.njit(cache=True)
def _pgf_grid(zs, ws_, rates, head, tail, rc, ra, hh, hc, hr, hq1, hq2, th, tc, tr, tq1, tq2, xs, wq):
    k0, k1, v0, d0, v1, d1 = rates[0], rates[1], rates[2], rates[3], rates[4], rates[5]
    nz, nw, s = zs.shape[0], ws_.shape[0], rc.shape[0]
    out = np.empty((nz, nw), dtype=np.complex128)
    nh, nt = head.shape[0] - 1, tail.shape[0] - 1
    hms = np.empty((nh, s, s), dtype=np.complex128)
    tms = np.empty((nh, s, s), dtype=np.complex128)
    vecs = np.empty((nh, s, 2), dtype=np.complex128)
    rows = np.empty((nh, 2, s), dtype=np.complex128)
    xz = np.empty(nz, dtype=np.complex128)
    yz = np.empty(nz, dtype=np.complex128)
    wz = np.zeros((s, s, nz), dtype=np.complex128)
    gz = np.empty((s, nz), dtype=np.complex128)
    fz = np.empty(nz, dtype=np.complex128)
    swz = np.empty(nz, dtype=np.bool_)
    kn = np.empty(s, dtype=np.complex128)
    vs = np.empty(s, dtype=np.complex128)
    mbuf = np.empty((s, s), dtype=np.complex128)
    rbuf = np.empty(s, dtype=np.complex128)
    for kk in range(nw):
        c = v1 * (ws_[kk] - 1.0) / d1
        kv = 0.0j
        for i in range(nh):
            t0, h = head[i], head[i + 1] - head[i]
            kv = k_nodes(kv, t0, h, rc, d0, d1, c, xs, wq, kn)
            # the on stages solve (E - z F) Y = y0 1 + x0 r1 with E = cm - v0 ha diag(K - 1), F = v0 ha diag(A)
            for j in range(s):
                t = t0 + rc[j] * h
                aj = v0 * np.exp(-d0 * t - c * math.expm1(-d1 * t))
                bj = v0 * (kn[j] - 1.0)
                for r in range(s):
                    hms[i, r, j] = hc[i, r, j] - hh[i, r, j] * bj
                    tms[i, r, j] = hh[i, r, j] * aj
                vecs[i, j, 0] = 1.0
                vecs[i, j, 1] = hr[i, j]
                rows[i, 0, j] = 1.0 if j == s - 1 else 0.0
                rows[i, 1, j] = hq2[i, j]
            pencil(hms[i], tms[i], vecs[i], rows[i])
        # ages beyond the head: V = v0 (K - 1) for every z; propagate the rows (1, 0) and (0, 1)
        f00, f01, f10, f11 = 1.0 + 0.0j, 0.0j, 0.0j, 1.0 + 0.0j
        for i in range(nt):
            t0, h = tail[i], tail[i + 1] - tail[i]
            kv = k_radau(kv, t0, h, rc, ra, d0, d1, c, kn, mbuf)
            for j in range(s):
                vs[j] = v0 * (kn[j] - 1.0)
            f00, f01 = radau_step(f00, f01, vs, th[i], tc[i], tr[i], tq1[i], tq2[i], mbuf, rbuf)
            f10, f11 = radau_step(f10, f11, vs, th[i], tc[i], tr[i], tq1[i], tq2[i], mbuf, rbuf)
        u0, u1 = f00 + f01, f10 + f11
        xz[:] = k1 / (k0 + k1)
        yz[:] = k0 / (k0 + k1)
        for i in range(nh):  # step by step over all z
            head_sweep(zs, xz, yz, hms[i], tms[i], vecs[i], rows[i], hq1[i], wz, gz, fz, swz)
        for jz in range(nz):
            out[jz, kk] = xz[jz] * u0 + yz[jz] * u1
    return out


@numba.njit(cache=True)
def beta_poisson_tail_max(a, b, v, n0):
    """max_{n >= n0} of the Beta-Poisson pmf (Poisson(v x), x ~ Beta(a, b)): the pmf's ratios by the backward
    continued fraction of its three-term recurrence (Miller), normalised in log space."""
    n_max = int(max(n0 + 1, v + 50.0 * math.sqrt(v + 1.0) + 100.0))
    logrho = np.zeros(n_max)
    rho = 0.0
    for m in range(n_max - 1, 0, -1):
        rho = v * (m - 1 + a) / (m * (m - 1 + a + b + v) - m * (m + 1) * rho)
        logrho[m] = math.log(rho) if rho > 0.0 else -745.0
    logp = np.cumsum(logrho)
    top = logp.max()
    norm = top + math.log(np.sum(np.exp(logp - top)))
    if n0 >= n_max:
        return 0.0
    return math.exp(logp[n0:].max() - norm)
