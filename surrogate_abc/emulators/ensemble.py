"""Bagged ensembles of emulators (the training code does the bootstrap resampling; these are the modules).

* MDNEnsemble: k MDNs with the same family and binning, combined at the mixture level: the
  components of all members are concatenated with weights w / k (a mixture of mixtures), which
  equals the average of the members' probability vectors.
* LSTMEnsemble: k networks (usually LSTMArray) combined by a trained layer over the members'
  log-probabilities followed by a softmax. combiner="dense": one Linear(k*C -> C) (the thesis'
  dense layer; k*C*C weights, so only for modest C); combiner="per_bin": per-category weights
  (C, k) and bias (C). Both start as the normalised geometric mean of the members.
  Call freeze_members() before training the combiner alone.
Both expose member_probs(x) (k, n, C) and uncertainty(x) (n,): the mean Hellinger distance of the
members' predictions to the combined one.
"""
from __future__ import annotations

import math
from typing import Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import hellinger_distance
from . import distributions
from .layers import architecture_of
from .mdn import MDN

DENSE_COMBINER_MAX_C = 1024


class _Ensemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def k(self) -> int:
        return len(self.members)

    def work_per_row(self) -> int:
        """Intermediate size per input row, summed over members (sets the Emulator's chunk size)."""
        return sum(int(getattr(m, "work_per_row", lambda: 1024)()) for m in self.members)

    def member_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's probabilities, stacked: (k, n, C)."""
        return torch.stack([m(x) for m in self.members])

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) mean Hellinger distance between each member's prediction and the ensemble's."""
        return hellinger_distance(self.member_probs(x), self(x).unsqueeze(0)).mean(0)


class MDNEnsemble(_Ensemble):
    """Mixture of the members' mixtures; forward equals the mean of the members' probabilities."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__(members)
        fam = {m.family.name for m in self.mdns}
        if len(fam) != 1:
            raise ValueError(f"MDN ensemble members must share one component family, got {sorted(fam)}")
        self.family = self.mdns[0].family

    @property
    def mdns(self) -> list[MDN]:
        """The members, MDNs (the nn.ModuleList holding them types its items as nn.Module)."""
        return [cast(MDN, m) for m in self.members]

    def architecture(self) -> dict:
        """JSON-serialisable description; models.build_model rebuilds the module from it."""
        return {"type": "mdn_ensemble", "members": [architecture_of(m) for m in self.members]}

    def mixture(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_weights (n, k*K), params (n, k*K, raw_size)): all components, weights divided by k."""
        parts = [m.mixture(x) for m in self.mdns]
        log_w = torch.cat([lw for lw, _ in parts], dim=1) - math.log(self.k)
        return log_w, torch.cat([p for _, p in parts], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bin probabilities (n, C) of the combined mixture."""
        log_w, params = self.mixture(x)
        first = self.mdns[0]
        return distributions.mixture_probs(self.family, log_w, params, first._binning.on(x.device))

    def thinned(self, x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """forward(x) of the counts after binomial thinning with detection probability beta (n,)."""
        log_w, params = self.mixture(x)
        return distributions.thinned_mixture_probs(self.family, log_w, params, beta,
                                                   self.mdns[0]._binning.on(x.device))

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) mean Hellinger distance between each member and the combined (= mean) prediction."""
        mp = self.member_probs(x)
        return hellinger_distance(mp, mp.mean(0, keepdim=True)).mean(0)


class LSTMEnsemble(_Ensemble):
    """Members combined by a trained layer over their log-probabilities and a softmax."""

    def __init__(self, members: Sequence[nn.Module], n_bins_total: int, combiner: str | None = None):
        super().__init__(members)
        self.n_bins_total = int(n_bins_total)
        if combiner is None:
            combiner = "dense" if self.n_bins_total <= DENSE_COMBINER_MAX_C else "per_bin"
        if combiner not in ("dense", "per_bin"):
            raise ValueError(f"unknown combiner {combiner!r}; use 'dense' or 'per_bin'")
        self.combiner = combiner
        k, C = self.k, self.n_bins_total
        if combiner == "dense":
            self.combine = nn.Linear(k * C, C)
            with torch.no_grad():  # start at the geometric mean: logits = mean_j log p_j
                self.combine.weight.copy_(torch.eye(C).repeat(1, k) / k)
                self.combine.bias.zero_()
        else:
            self.combine_weight = nn.Parameter(torch.full((C, k), 1.0 / k))
            self.combine_bias = nn.Parameter(torch.zeros(C))

    def architecture(self) -> dict:
        """JSON-serialisable description; models.build_model rebuilds the module from it."""
        return {"type": "lstm_ensemble", "n_bins_total": self.n_bins_total, "combiner": self.combiner,
                "members": [architecture_of(m) for m in self.members]}

    def freeze_members(self, frozen: bool = True) -> None:
        """Stop (or restart) gradient flow into the members, to train the combiner alone."""
        for p in self.members.parameters():
            p.requires_grad_(not frozen)

    def combine_logits(self, member_probs: torch.Tensor) -> torch.Tensor:
        """Combiner logits (n, C) from members' probabilities (k, n, C)."""
        logp = torch.log(member_probs.clamp_min(1e-30))
        if self.combiner == "dense":
            return self.combine(logp.permute(1, 0, 2).reshape(logp.shape[1], -1))
        return torch.einsum("knc,ck->nc", logp, self.combine_weight) + self.combine_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Combined probabilities (n, C)."""
        return F.softmax(self.combine_logits(self.member_probs(x)), dim=-1)

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) mean Hellinger distance between each member and the combined prediction."""
        mp = self.member_probs(x)
        combined = F.softmax(self.combine_logits(mp), dim=-1)
        return hellinger_distance(mp, combined.unsqueeze(0)).mean(0)
