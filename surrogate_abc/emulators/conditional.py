"""Conditional mixture-density network for joint (mRNA, protein) counts: p(m, p | theta) = p(m | theta) p(p | [m], theta).

The thesis' bivariate Dirichlet-multinomial Gamma-Poisson mixture ties both species to one latent intensity per
component, and it cannot represent the gene model's joint distribution closely even when fitted to one exact
target at a time (H2 0.002-0.075 with 6 components). Here the first species gets a univariate count mixture
on its integer support, and the second a univariate count mixture *per histogram bin [m] of the first*, whose
weights and parameters come from a small head on (trunk(theta), features of the bin's centre). Every m-bin
then has its own protein distribution. Conditioning on the bin rather than the integer keeps the cost at
(bins of m) x (integer support of p) per component, and the model is still a proper joint distribution
(sample m, then p from its bin's conditional); within a bin the protein law is taken not to depend on m.
Batched over rows and bins (broadcast adds, no Python loop).

The first factor can come from a separate network instead (`set_marginal`): a 1-D MDN of the first species
alone, trained on its exact marginal (for the gene model's mRNA the Beta-Poisson closed form, cheap to make in
any number), with a fixed affine map from this network's input features to that one's. The conditional head
is unchanged; the joint is then p_marginal(m | theta) p(p | [m], theta) (emulators.compose.attach_marginal).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .bin_masses import nb_mixture_category_masses, nb_mixture_outside
from .distributions import _sum_into, mixture_pmf_grid, thinned_params
from .layers import (
    DEFAULT_HIDDEN,
    BinningOnDevice,
    act_of_sum,
    architecture_of,
    dense_trunk,
    make_activation,
    resolve_family,
)

DEFAULT_HEAD = (128, 128)


def bin_features(edges: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(bins, 3) features of each count bin's centre c (mean of its integers): log1p(c), sqrt(c) and c, scaled
    to [0, 1] by the last edge."""
    lo, hi = np.ceil(edges[:-1]), np.ceil(edges[1:]) - 1.0  # integers lo..hi fall into the bin
    c = torch.as_tensor((lo + hi) / 2.0, device=device, dtype=dtype)
    top = float(max(edges[-1], 1.0))
    return torch.stack([torch.log1p(c) / math.log1p(top), torch.sqrt(c / top), c / top], dim=1)


class ConditionalMDN(nn.Module):
    """p(a, b | theta) = p(a | theta) p(b | a, theta) on a 2-D count binning; forward gives bin masses + overflow.

    `family`: a univariate count family (gamma_poisson or poisson_lognormal) used for both factors;
    `components`: mixture components of each factor; `hidden`: the theta trunk; `head`: widths of the
    conditional head, whose first layer adds a projection of the trunk output to one of the m features."""

    marginal_scale: torch.Tensor  # buffers registered by set_marginal
    marginal_shift: torch.Tensor

    def __init__(self, d_in: int, family: Any, n_components: int, binning: Any,
                 hidden: Sequence[int] = DEFAULT_HIDDEN, activation: str = "elu", head: Sequence[int] = DEFAULT_HEAD):
        super().__init__()
        self.family = resolve_family(family)
        if self.family.event_dim != 1 or not getattr(self.family, "discrete", True):
            raise ValueError(f"a conditional MDN needs a univariate count family (gamma_poisson, poisson_lognormal), "
                             f"got {self.family.name}")
        if binning is None or getattr(binning, "ndim", 0) != 2 or not binning.counts:
            raise ValueError("a conditional MDN needs a 2-D count Binning (e.g. mrna x protein)")
        if n_components < 1 or not head:
            raise ValueError("n_components must be >= 1 and head a non-empty list of widths")
        self.d_in, self.n_components = int(d_in), int(n_components)
        self.hidden, self.activation, self.head = tuple(int(h) for h in hidden), activation, tuple(int(h) for h in head)
        K, R = self.n_components, self.family.raw_size
        self.trunk, width = dense_trunk(self.d_in, self.hidden, activation)
        self.a_weights = nn.Linear(width, K)
        self.a_params = nn.Linear(width, K * R)
        self.head_theta = nn.Linear(width, self.head[0])
        self.head_m = nn.Linear(3, self.head[0], bias=False)
        layers: list[nn.Module] = [make_activation(activation)]
        for prev, h in zip(self.head[:-1], self.head[1:]):
            layers += [nn.Linear(prev, h), make_activation(activation)]
        self.head_rest = nn.Sequential(*layers)
        self.b_weights = nn.Linear(self.head[-1], K)
        self.b_params = nn.Linear(self.head[-1], K * R)
        self._binning = BinningOnDevice(binning)
        self.marginal: nn.Module | None = None
        n_a, n_b = binning.support
        with torch.no_grad():  # start near typical counts (a quarter of the support), components spread apart
            spread = torch.linspace(-0.5, 0.5, K)
            second = math.log(5.0) if self.family.name == "gamma_poisson" else math.log(0.5)  # shape r / sigma
            for lin, n in ((self.a_params, n_a), (self.b_params, n_b)):
                bias = torch.full((K, R), second)
                bias[:, 0] = math.log(max(n / 4.0, 1.0)) + spread  # log mean (GP: exp-constrained; PLN: identity)
                lin.bias.copy_(bias.reshape(-1))

    @property
    def binning(self) -> Any:
        return self._binning.binning

    def architecture(self) -> dict:
        """JSON-serialisable description; models.build_model rebuilds the module from it."""
        arch = {"type": "mdn_conditional", "d_in": self.d_in, "family": self.family.name,
                "components": self.n_components, "hidden": list(self.hidden), "activation": self.activation,
                "head": list(self.head)}
        if self.marginal is not None:
            arch["marginal"] = architecture_of(self.marginal)
        return arch

    def set_marginal(self, marginal: nn.Module, scale: Any = None, shift: Any = None) -> None:
        """Take p(a | theta) from `marginal` (a 1-D module whose forward gives a's bin masses + overflow on this
        network's first axis) at inputs x * scale + shift; buffers marginal_scale / marginal_shift (d_in,)."""
        bins = getattr(marginal, "binning", None)
        if bins is None or bins.ndim != 1 or not np.array_equal(bins.edges_np[0], self.binning.edges_np[0]):
            raise ValueError("the marginal network needs a 1-D binning with the first axis' edges of the joint one")
        if getattr(marginal, "d_in", self.d_in) != self.d_in:
            raise ValueError(f"the marginal network takes {marginal.d_in} inputs, the joint one {self.d_in}")
        ref = next(self.parameters())
        one = torch.ones(self.d_in, dtype=ref.dtype, device=ref.device)
        self.marginal = marginal.to(ref.device)
        self.register_buffer("marginal_scale", one if scale is None else torch.as_tensor(scale, dtype=ref.dtype).to(ref.device))
        self.register_buffer("marginal_shift", 0 * one if shift is None else torch.as_tensor(shift, dtype=ref.dtype).to(ref.device))

    def _a_bin_masses(self, x: torch.Tensor, log_wa: torch.Tensor, pa: torch.Tensor,
                      rows: torch.Tensor | None = None) -> torch.Tensor:
        """(n, A) probability of each bin of a (n, U: only the bins `rows`, sorted, when given): this network's
        own factor, or the marginal network's (its pmf computed only as far as the last bin asked)."""
        b = self._binning.on(x.device)
        marginal: Any = self.marginal  # a 1-D MDN (set_marginal)
        if marginal is not None:
            xm = x * self.marginal_scale + self.marginal_shift
            if rows is not None and hasattr(marginal, "category_probs"):
                return marginal.category_probs(xm, rows)
            out = marginal(xm)[:, :-1]
        else:
            n_sup = b.support[0] if rows is None else int(torch.nonzero(b.index[0] <= rows.max()).max()) + 1
            p_a = mixture_pmf_grid(self.family, log_wa, pa, (n_sup,))              # (n, n_sup) integers
            out = _sum_into(p_a, b.index[0][:n_sup], b.shape[0], dim=1)[:, :-1]
        return out if rows is None else out[:, rows]

    def work_per_row(self) -> int:
        """Largest intermediate per input row: components x (bins of a) x (integer support of b)."""
        return self.n_components * self.binning.shape[0] * self.binning.support[1]

    def factors(self, x: torch.Tensor, a_bins: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log w_a (n, K), params_a (n, K, R), log w_b (n, A, K), params_b (n, A, K, R)); A = bins of a (only
        those listed in `a_bins` when given)."""
        n = x.shape[0]
        K, R = self.n_components, self.family.raw_size
        b = self._binning.on(x.device)
        h = self.trunk(x)
        log_wa = F.log_softmax(self.a_weights(h), dim=-1)
        pa = self.family.constrain(self.a_params(h).reshape(n, K, R))
        feats = bin_features(b.edges_np[0], x.device, x.dtype)
        if a_bins is not None:
            feats = feats[a_bins]
        first = act_of_sum(self.head_rest[0], self.head_theta(h), self.head_m(feats))  # (n, A, H): every pair
        log_wb, pb = self._head_output(first)                                           # (n, A, .)
        return log_wa, pa, log_wb, pb

    def head_mixture(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The second species' mixture (log w (..., K), params (..., K, R)) from the head's first-layer input z
        (..., H): head_theta(trunk(x)) + head_m(bin features), for any batch shape (one a-bin per row for a caller
        that pairs them; factors takes every (row, a-bin) pair)."""
        return self._head_output(self.head_rest[0](z))

    def _head_output(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """head_mixture after the head's first activation g (..., H). The weights' and the parameters' layers run
        as one (their weights stacked: one product of K (R + 1) columns, ~40% faster than two narrow ones)."""
        for layer in list(self.head_rest)[1:]:
            g = layer(g)
        K, R = self.n_components, self.family.raw_size
        out = F.linear(g, torch.cat([self.b_weights.weight, self.b_params.weight]),
                       torch.cat([self.b_weights.bias, self.b_params.bias]))
        logits, raw = out.split([K, K * R], dim=-1)
        log_w = logits - torch.logsumexp(logits, dim=-1, keepdim=True)  # log_softmax; 4x faster over K on the CPU
        return log_w, self.family.constrain(raw.reshape(*g.shape[:-1], K, R))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bin probabilities (n, C), last column the overflow mass; rows sum to 1."""
        return self._joint(x)

    def _joint(self, x: torch.Tensor, beta_b: torch.Tensor | None = None) -> torch.Tensor:
        """forward(x), of the second species' counts thinned with detection probability beta_b (n,) when given."""
        b = self._binning.on(x.device)
        n_b = b.support[1]
        log_wa, pa, log_wb, pb = self.factors(x)
        if beta_b is not None:
            pb = thinned_params(self.family, pb, beta_b[:, None].to(pb.dtype))
        a_bins = self._a_bin_masses(x, log_wa, pa)                                  # (n, A) mass per m-bin
        # p(b-bin | a-bin): sum the conditional pmf into b's bins first, then weight by the a-bin masses, so the
        # (n, A, n_b) grid is touched once (pmf terms are >= ~1e-38, so products stay normal numbers or 0).
        b_bins = _sum_into(mixture_pmf_grid(self.family, log_wb, pb, (n_b,)), b.index[1], b.shape[1], dim=2)
        bins = (a_bins[:, :, None] * b_bins[:, :, :-1]).reshape(x.shape[0], -1)
        over = (1.0 - bins.sum(dim=1)).clamp(min=0.0)
        return torch.cat([bins, over[:, None]], dim=1)

    @property
    def thins(self) -> bool:
        """Whether `thinned` applies: the first factor is this network's own count mixture (not a marginal's)."""
        return self.marginal is None

    def thinned(self, x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """forward(x) of the counts after binomial thinning: each molecule of the first species seen with
        probability beta[:, 0], of the second with beta[:, -1] (beta (n,) or (n, 2)). Exact for this model's law
        on the integers: the first factor's integer pmf goes through a binomial kernel (each true count keeps its
        bin's conditional law of the second species), the second factor's components thin within their family.
        Mass beyond the first species' integer support (in the overflow) is not brought back onto the grid."""
        if not self.thins:
            raise UserError("a conditional MDN whose first factor comes from a marginal network cannot be thinned; "
                            "give one efficiency within the emulator's range")
        q = beta.reshape(x.shape[0], -1)
        whole = q[:, 0] >= 1.0  # rows whose first species loses nothing: the second's components alone thin
        if bool(whole.all()):
            return self._joint(x, q[:, -1])
        A, B = self.binning.shape
        out = x.new_zeros((x.shape[0], A * B + 1))
        if bool(whole.any()):
            out[whole] = self._joint(x[whole], q[whole, -1])
        out[~whole] = self._thinned_both(x[~whole], q[~whole])
        return out

    def _thinned_both(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """thinned(x, q) through the first species' binomial kernel, on the integers where its pmf is not 0."""
        b = self._binning.on(x.device)
        n_a, n_b = b.support
        A, B = b.shape
        n = x.shape[0]
        log_wa, pa, _, _ = self.factors(x, torch.arange(1, device=x.device))
        p_a = mixture_pmf_grid(self.family, log_wa, pa, (n_a,))                     # (n, n_a) true first counts
        held = torch.nonzero(p_a.amax(dim=0) > 0)
        size = int(held.max()) + 1 if held.numel() else 1  # the integers that hold mass (float32 underflows to 0)
        top = int(b.index[0][size - 1]) + 1                 # the bins they fall into
        onehot = F.one_hot(b.index[0][:size], A + 1)[:, :top].to(p_a.dtype)         # (size, top)
        kern = binomial_kernel(size, q[:, 0]).to(p_a.dtype)                         # (n, observed, true)
        seen = onehot.T @ (kern * p_a[:, None, :size]) @ onehot                     # (n, observed bin, true bin)
        _, _, log_wb, pb = self.factors(x, torch.arange(top, device=x.device))
        pb = thinned_params(self.family, pb, q[:, -1:].to(pb.dtype))
        b_bins = _sum_into(mixture_pmf_grid(self.family, log_wb, pb, (n_b,)), b.index[1], B, dim=2)[:, :, :-1]
        bins = x.new_zeros((n, A, B))
        bins[:, :top] = torch.bmm(seen, b_bins).to(bins.dtype)
        flat = bins.reshape(n, -1)
        over = (1.0 - flat.sum(dim=1)).clamp(min=0.0)
        return torch.cat([flat, over[:, None]], dim=1)

    def thinned_category_probs(self, x: torch.Tensor, beta: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        """thinned(x, beta)[:, categories]: where no molecule of the first species is lost (beta[:, 0] = 1), only
        what the categories need (category_probs with the second species' components thinned)."""
        q = beta.reshape(x.shape[0], -1)
        whole = q[:, 0] >= 1.0
        if bool(whole.all()):
            return self.category_probs(x, categories, q[:, -1])
        cats = categories.to(device=x.device, dtype=torch.long)
        out = torch.zeros((x.shape[0], cats.numel()), dtype=torch.float64, device=x.device)
        if bool(whole.any()):
            out[whole] = self.category_probs(x[whole], categories, q[whole, -1])
        out[~whole] = self._thinned_both(x[~whole], q[~whole])[:, cats].to(torch.float64)
        return out

    @property
    def exact_overflow(self) -> bool:
        """Whether category_probs takes the overflow category (in float64, from the components' tails): for
        Gamma-Poisson components (and a Gamma-Poisson marginal network, if one is attached)."""
        marginal = self.marginal
        return self.family.name == "gamma_poisson" and (
            marginal is None or getattr(getattr(marginal, "family", None), "name", None) == "gamma_poisson")

    def category_work(self, categories: np.ndarray) -> int:
        """Work per input row of category_probs(x, categories), in float32 values: the head on the a-bins listed
        (all of them with the overflow; two layers' activations alive at once) or the categories' masses: off the
        CPU components x categories, on the CPU their float64 walk (bin_masses.nb_mixture_category_masses) with
        the copies on its way out, ~12 values per category (measured: 12 makes chunks of ~260 parameter sets for
        the joint example's 669 categories, 10-15% faster than twice that for a head of 48)."""
        A, B = self.binning.shape
        cats = np.asarray(categories, dtype=np.int64)
        if not self.exact_overflow:
            return self.work_per_row()
        rows = A if np.any(cats == A * B) else len(np.unique(cats // B))
        per_category = 12 if self.a_weights.weight.device.type == "cpu" else 2 * self.n_components
        return max(2 * rows * max(self.head), per_category * len(cats), 1)

    def category_probs(self, x: torch.Tensor, categories: torch.Tensor,
                       beta_b: torch.Tensor | None = None) -> torch.Tensor:
        """forward(x)[:, categories] for flat categories (a_bin * bins_b + b_bin; A * B the overflow), computing
        only what they need: the conditional head on the a-bins listed, and for Gamma-Poisson components each
        category's mass (bin_masses.nb_mixture_category_masses); the overflow in float64 from
        the components' tails (exact_overflow). An observed data set touches a small part of the grid, so a
        likelihood costs that part of a forward pass. `beta_b` (n,): of the second species' counts thinned with
        that detection probability. float64 (n, k)."""
        b = self._binning.on(x.device)
        A, B = b.shape
        categories = categories.to(device=x.device, dtype=torch.long)
        top = A * B if self.exact_overflow else A * B - 1
        if categories.numel() and (int(categories.min()) < 0 or int(categories.max()) > top):
            raise ValueError(f"categories must be bin indices in [0, {top}]"
                             + ("" if self.exact_overflow else " (the overflow needs forward())"))
        if not self.exact_overflow:
            return self._category_probs_grid(x, categories, beta_b).to(torch.float64)
        over = categories == A * B
        ia, ib = categories[~over] // B, categories[~over] % B
        rows = torch.arange(A, device=x.device) if bool(over.any()) else torch.unique(ia)
        pos = torch.searchsorted(rows, ia)
        log_wa, pa, log_wb, pb = self.factors(x, rows)
        if beta_b is not None:  # the second species thinned: its components stay in their family
            pb = thinned_params(self.family, pb, beta_b[:, None].to(pb.dtype))
        if bool(over.any()):
            a_bins, a_out = self._a_masses_and_outside(x, log_wa, pa, rows)        # (n, A), (n,)
        else:
            a_bins = self._a_bin_masses(x, log_wa, pa, rows)                        # (n, U)
        masses = nb_mixture_category_masses(log_wb, pb[..., 0], pb[..., 1], pos.cpu().numpy(), ib.cpu().numpy(),
                                            b.index[1].cpu().numpy(), B, a_bins.to(torch.float64))
        if not bool(over.any()):
            return masses
        out = torch.zeros((x.shape[0], categories.numel()), dtype=torch.float64, device=x.device)
        out[:, ~over] = masses
        b_out = nb_mixture_outside(log_wb, pb[..., 0], pb[..., 1], int(math.ceil(b.edges_np[1][0])), b.support[1])
        out[:, over] = (a_out + (a_bins.to(torch.float64) * b_out).sum(dim=1))[:, None]  # b outside, per a-bin
        return out

    def _a_masses_and_outside(self, x: torch.Tensor, log_wa: torch.Tensor, pa: torch.Tensor,
                              rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first species' masses in its bins `rows` (n, U) and, float64 (n,), outside its bins, from its
        Gamma-Poisson components (exact_overflow): the marginal network's, in one pass of it, or this network's."""
        marginal: Any = self.marginal  # a Gamma-Poisson MDN (exact_overflow)
        if marginal is not None:
            both = marginal.category_probs(x * self.marginal_scale + self.marginal_shift,
                                           torch.cat([rows, rows.new_tensor([self.binning.shape[0]])]))
            return both[:, :-1], both[:, -1]
        b = self._binning.on(x.device)
        outside = nb_mixture_outside(log_wa, pa[..., 0], pa[..., 1], int(math.ceil(b.edges_np[0][0])), b.support[0])
        return self._a_bin_masses(x, log_wa, pa, rows), outside

    def _category_probs_grid(self, x: torch.Tensor, categories: torch.Tensor,
                             beta_b: torch.Tensor | None = None) -> torch.Tensor:
        """category_probs of bin categories for any count family: the conditional pmf on the b integers up to
        the last b-bin listed, summed into bins."""
        b = self._binning.on(x.device)
        B = b.shape[1]
        ia, ib = categories // B, categories % B
        rows, pos = torch.unique(ia, return_inverse=True)
        idx_b = b.index[1]
        n_sup = int(torch.nonzero(idx_b <= ib.max()).max()) + 1 if categories.numel() else 1
        log_wa, pa, log_wb, pb = self.factors(x, rows)
        if beta_b is not None:
            pb = thinned_params(self.family, pb, beta_b[:, None].to(pb.dtype))
        a_bins = self._a_bin_masses(x, log_wa, pa, rows)                            # (n, U)
        b_bins = _sum_into(mixture_pmf_grid(self.family, log_wb, pb, (n_sup,)), idx_b[:n_sup], B, dim=2)
        return a_bins[:, pos] * b_bins[:, pos, ib]


def binomial_kernel(size: int, q: torch.Tensor) -> torch.Tensor:
    """(n, size, size) float64 kernels K[i, k, m] = Binom(k; m, q_i) (observed k of m molecules, each seen with
    probability q_i (n,)), 0 where k > m."""
    q = q.to(torch.float64).clamp(1e-300, 1.0)[:, None, None]
    k = torch.arange(size, dtype=torch.float64, device=q.device)[:, None]
    m = torch.arange(size, dtype=torch.float64, device=q.device)[None, :]
    below = k <= m
    gone = (m - k).clamp(min=0.0)
    logc = torch.lgamma(m + 1) - torch.lgamma(k + 1) - torch.lgamma(gone + 1)
    miss = torch.where(gone > 0, gone * torch.log1p(-q.clamp(max=1.0)), torch.zeros_like(q))  # q = 1: none missed
    out = torch.exp(logc + k * torch.log(q) + miss)
    return torch.where(below, torch.nan_to_num(out, nan=0.0), torch.zeros_like(out))
