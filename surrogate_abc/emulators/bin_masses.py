"""Gamma-Poisson (negative binomial) mixtures evaluated only where a likelihood looks: selected bins and the tail.

A likelihood of observed cells needs the emulated probability of the categories that hold cells, nothing else.
For a mixture of negative binomials NB(mean mu, shape r) that is, per category (a bin [lo, lo + w) of counts):

    P(bin) = NB(lo) (1 + rho_0 (1 + rho_1 (1 + ... rho_{w-2}))),  rho_t = q (lo + t + r) / (lo + t + 1),

with q = mu / (mu + r): one log-pmf at the bin's first integer and w - 1 multiply-adds (Horner), instead of the
pmf on every integer from 0 up to the last bin asked. The log-pmf at lo needs lgamma(r + lo) - lgamma(r):
`log_rising` takes it from sums of logs for lo < 10 and Stirling's series above (no lgamma calls, and no
cancellation of two large lgammas when r is large).

The mass outside the bins (the overflow category) is a tail, P(X >= cap) = I_q(cap, r) (the regularised
incomplete beta function), computed in float64 from the components rather than as 1 - sum(bins) in float32,
whose rounding (~1e-7) swamps the tail masses a likelihood cares about.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

from .distributions import log_tiny
from .nb_walk import bin_ranges, nb_mixture_walk

_SHIFT = 10  # lgamma(r + lo) - lgamma(r): sums of logs for lo < _SHIFT, Stirling's series at x = r + _SHIFT above


@dataclass(frozen=True)
class BinPlan:
    """How to evaluate a list of C categories, each a bin of the second axis under a row (a bin of the first):
    `order` (C,) sorts them into contiguous slices of equal bin width and kind (lo below _SHIFT or not);
    `slices` (start, stop, width, near) over that order; `lo` (C,) first integer and `pos` (C,) row of each
    category, in that order."""

    order: torch.Tensor
    slices: tuple[tuple[int, int, int, bool], ...]
    lo: torch.Tensor
    pos: torch.Tensor
    log_factorial: torch.Tensor  # lgamma(lo + 1)


def _category_ranges(bins: np.ndarray, index: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) integer of each category's bin (nb_walk.bin_ranges), after checking that every bin is one
    of 0..n_bins-1 and holds integers of the support."""
    first, last = bin_ranges(index, n_bins)
    if bins.size and (int(bins.min()) < 0 or int(bins.max()) >= n_bins or np.any(first[bins] < 0)):
        raise ValueError(f"categories must name bins 0..{n_bins - 1} that hold integers of the support")
    return first[bins], last[bins]


def bin_plan(bins: np.ndarray, rows: np.ndarray, index: np.ndarray, n_bins: int, device: torch.device,
             dtype: torch.dtype) -> BinPlan:
    """BinPlan of categories (bin `bins[c]` under row `rows[c]`) on an axis of n_bins bins whose integers 0..S-1
    fall into the bins `index` (S,) (each bin a contiguous run of integers; n_bins means outside)."""
    bins, rows = np.asarray(bins, dtype=np.int64), np.asarray(rows, dtype=np.int64)
    lo, hi = _category_ranges(bins, index, n_bins)
    width = hi - lo + 1
    near = lo < _SHIFT
    order = np.lexsort((rows, ~near, width))  # by width, then near before far, then row
    w, nr = width[order], near[order]
    cuts = np.flatnonzero((np.diff(w) != 0) | (np.diff(nr) != 0)) + 1
    starts, stops = np.r_[0, cuts], np.r_[cuts, len(order)]
    slices = tuple((int(a), int(b), int(w[a]), bool(nr[a])) for a, b in zip(starts, stops) if b > a)
    return BinPlan(torch.as_tensor(order, device=device), slices, torch.as_tensor(lo[order], device=device, dtype=dtype),
                   torch.as_tensor(rows[order], device=device),
                   torch.as_tensor(special.gammaln(lo[order] + 1.0), device=device, dtype=dtype))


def _stirling_tail(y: torch.Tensor) -> torch.Tensor:
    """lgamma(y) - [(y - 1/2) log y - y + log(2 pi)/2] for y >= 10. float32: 1 / (12 y), to 2.8e-6 (the series'
    next term, 1 / (360 y^3)), below the rounding of the log-pmf's other terms (~1e-4 at counts of hundreds);
    float64: four terms, to 1e-12."""
    z = torch.reciprocal(y)
    if y.dtype != torch.float64:
        return z.mul_(1.0 / 12)
    z2 = z * z
    return z * (1.0 / 12 - z2 * (1.0 / 360 - z2 * (1.0 / 1260 - z2 / 1680)))


def _log_horner(rows: torch.Tensor, lo: torch.Tensor, w: int) -> torch.Tensor:
    """log(1 + rho_0 (1 + rho_1 (... rho_{w-2}))), rho_t = q + q (r - 1) / (lo + t + 1): log P(bin) / NB(lo) for
    rows (n, C, 2K) of [q, q (r - 1)]. Where the product of ratios passes the float range (a wide bin far below
    the mode), again in log space: h_t = log(1 + exp(log rho_t + h_{t+1}))."""
    K = rows.shape[-1] // 2
    qs, qrs = rows[..., :K], rows[..., K:]
    inv = torch.reciprocal(lo[:, None] + torch.arange(1, w, device=lo.device, dtype=lo.dtype))[None, :, :, None]
    horner = torch.ones_like(qs)
    for t in range(w - 2, -1, -1):
        horner = torch.addcmul(qs, qrs, inv[:, :, t]).mul_(horner).add_(1.0)
    if bool(torch.isfinite(horner).all()):
        return torch.log(horner)
    log_h = torch.zeros_like(qs)
    for t in range(w - 2, -1, -1):
        log_h = torch.logaddexp(torch.zeros_like(log_h), torch.log(torch.addcmul(qs, qrs, inv[:, :, t])) + log_h)
    return log_h


def nb_mixture_bin_masses(log_w: torch.Tensor, mu: torch.Tensor, r: torch.Tensor, plan: BinPlan) -> torch.Tensor:
    """(n, C) masses of the plan's categories (in the order they were given) under mixtures of negative
    binomials: weights exp(log_w), means mu and shapes r (n, U, K) per row.

    log w NB(lo) = log w - r s + lo log q + [lgamma(r + lo) - lgamma(r)] - lgamma(lo + 1), s = -log(1 - q); the
    bracket is sum_{j < lo} log(r + j) for lo < _SHIFT and, above, that sum to _SHIFT plus Stirling's series
    (y - 1/2) log1p(k / x) + k log x - k + tail(y) - tail(x) at x = r + _SHIFT, k = lo - _SHIFT, y = x + k. What
    depends on the row only is computed per row; each slice of categories takes its rows with one index_select
    and a handful of passes, then the bin's other integers by Horner's rule."""
    n, U, K = mu.shape
    log_mu, log_r = torch.log(mu), torch.log(r)
    s = torch.nn.functional.softplus(log_mu - log_r)                              # -log(1 - q)
    log_q = log_mu - log_r - s
    j = torch.arange(_SHIFT, device=r.device, dtype=r.dtype)
    sums = torch.cumsum(torch.log(r[..., None] + j), dim=-1)                    # (n, U, K, _SHIFT): j < 1.._SHIFT
    base = log_w - r * s
    x = r + _SHIFT
    log_x1 = torch.log(x) - 1.0
    inv_x = torch.reciprocal(x)
    q = torch.exp(log_q)
    # per row, K wide each: near [base, log q, sum_{j < l} log(r + j) for l = 0.._SHIFT-1], far [x, 1 / x, base +
    # sum to _SHIFT - tail(x) - _SHIFT (log x - 1), log q + log x - 1], Horner [q, q (r - 1)]
    near_rows = torch.cat([base, log_q, torch.zeros_like(base), sums[..., :-1].transpose(-1, -2).reshape(n, U, -1)],
                          dim=2)
    far_rows = torch.cat([x, inv_x, base + sums[..., -1] - _stirling_tail(x) - _SHIFT * log_x1, log_q + log_x1], dim=2)
    horner_rows = torch.cat([q, q * (r - 1.0)], dim=2)
    out = mu.new_empty((n, plan.lo.numel()))
    for a, b, w, near in plan.slices:
        lo, pos = plan.lo[a:b], plan.pos[a:b]
        lo3 = lo[None, :, None]
        if near:
            g = near_rows.index_select(1, pos).reshape(n, b - a, 2 + _SHIFT, K)
            part = g[:, :, 2:].gather(2, lo.long()[None, :, None, None].expand(n, b - a, 1, K))[:, :, 0]
            log_head = torch.addcmul(g[:, :, 0], g[:, :, 1], lo3).add_(part)
        else:
            g = far_rows.index_select(1, pos)
            xs, ixs, gs, ms = g[..., :K], g[..., K:2 * K], g[..., 2 * K:3 * K], g[..., 3 * K:]
            k = lo3 - _SHIFT
            y = xs + k
            log_head = torch.addcmul(gs, ms, lo3).addcmul_(y - 0.5, torch.log1p(ixs * k)).add_(_stirling_tail(y))
        log_head.sub_(plan.log_factorial[None, a:b, None])                      # log w NB(lo): (n, b - a, K)
        if w > 1:  # the bin's other integers, added as a log before exp (a head below the float range is not
            # clamped up first and then multiplied)
            log_head.add_(_log_horner(horner_rows.index_select(1, pos), lo, w))
        out[:, a:b] = log_head.clamp_(min=log_tiny(mu.dtype)).exp_().sum(dim=-1)
    return out.index_select(1, torch.argsort(plan.order))


def nb_mixture_category_masses(log_w: torch.Tensor, mu: torch.Tensor, r: torch.Tensor, rows: np.ndarray,
                               bins: np.ndarray, index: np.ndarray, n_bins: int,
                               row_weight: torch.Tensor | None = None) -> torch.Tensor:
    """float64 (n, C) masses of categories c = bin bins[c] under row rows[c] (log_w, mu, r: (n, U, K)) of an
    axis whose integers fall into the bins `index` (S,), times row_weight[:, rows[c]] when given (n, U). On the
    CPU without gradients: one float64 walk along each row's integers (nb_walk); elsewhere (an accelerator, or
    training) the per-category path above."""
    bins, rows = np.asarray(bins, dtype=np.int64), np.asarray(rows, dtype=np.int64)
    if mu.device.type != "cpu" or (torch.is_grad_enabled() and (mu.requires_grad or r.requires_grad)):
        plan = bin_plan(bins, rows, index, n_bins, mu.device, mu.dtype)
        masses = nb_mixture_bin_masses(log_w, mu, r, plan).to(torch.float64)
        return masses if row_weight is None else row_weight[:, torch.as_tensor(rows, device=mu.device)] * masses
    lo, hi = _category_ranges(bins, index, n_bins)
    floor = float(np.exp(log_tiny(mu.dtype)))  # as the per-category path: the mixture's mass, before row_weight
    weight = None if row_weight is None else row_weight.detach().to(torch.float64).numpy()
    out = nb_mixture_walk(log_w.detach().numpy(), mu.detach().numpy(), r.detach().numpy(), rows, lo, hi, floor,
                          weight)
    return torch.from_numpy(out)


def nb_mixture_outside(log_w: torch.Tensor, mu: torch.Tensor, r: torch.Tensor, first: int, cap: int) -> torch.Tensor:
    """float64 mass of the mixtures (log_w, mu, r: (..., K)) outside the integers first..cap-1: P(X < first) +
    P(X >= cap), each component's tail by the regularised incomplete beta function (scipy, on the CPU)."""
    w = torch.exp(log_w.detach().to(torch.float64)).cpu().numpy()
    m = mu.detach().to(torch.float64).cpu().numpy()
    s = r.detach().to(torch.float64).cpu().numpy()
    q = m / (m + s)
    outside = special.betainc(float(cap), s, q)            # P(X >= cap)
    if first > 0:
        outside = outside + (1.0 - special.betainc(float(first), s, q))  # P(X <= first - 1)
    return torch.as_tensor((w * outside).sum(axis=-1), device=mu.device)
