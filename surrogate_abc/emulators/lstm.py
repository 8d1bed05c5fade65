"""The thesis' LSTM array: an LSTM that runs over the output bins and emits one bin per step.

Architecture (input x: (n, d) scaled parameters; output: (n, C) probabilities, C = bins + overflow):
  1. dense embedding of x (n, E), shared by all steps;
  2. per-bin dense layer: step t gets [embedding, last p fed-back bin values] through its OWN weights,
     implemented as one (T, in, out) weight tensor and an einsum (PerBinLinear), not T modules;
  3. an LSTM over the T = C steps (all bins, then the overflow category as the last step);
     torch.nn.LSTM for standard cells, a small custom cell for peephole connections;
     optionally bidirectional;
  4. a dense layer (shared across steps) to one logit per step; then the output head.

Output head:
  * ar_order p == 0 (default): softmax over the T logits (the thesis' choice).
  * ar_order p > 0 (autoregressive): a softmax over all T logits depends on future steps, so a
    predicted bin value could not be fed back at the step it is made. Autoregressive models use
    the sequential form instead ("stick breaking"): step t takes the fraction sigmoid(z_t) of the
    mass not yet assigned, the overflow step takes the rest. Rows still sum to 1 exactly, and the
    value fed back at step t is the actual predicted probability of bin t.
  * Teacher forcing: forward(x, y_teacher=y) feeds the TRUE previous p bin probabilities (training).
    forward(x) runs free (each step is fed the model's own predictions; a Python loop over T).
    The training loop must pass y_teacher to get teacher forcing; forward(x) is what the Emulator
    uses at inference.
  * A bidirectional LSTM cannot be autoregressive over its own predictions: bidirectional=True
    requires ar_order == 0 (it is fed the embedding only).
2-D (joint) data: supported by running over the flattened Bm * Bp bins plus overflow (row-major,
as in the binned file); correct but slow for large grids (T in the tens of thousands).
"""
from __future__ import annotations

import math
from typing import Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from .layers import dense_trunk, make_activation

CELLS = ("standard", "peephole")


class PerBinLinear(nn.Module):
    """T independent dense layers applied to a (n, T, in) tensor in one einsum: (n, T, out)."""

    def __init__(self, n_bins: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_bins, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(n_bins, d_out))
        bound = 1.0 / math.sqrt(max(d_in, 1))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        """inp (n, T, in) -> (n, T, out); bin t uses weight[t], bias[t]."""
        return torch.einsum("nti,tio->nto", inp, self.weight) + self.bias

    def step(self, inp: torch.Tensor, t: int) -> torch.Tensor:
        """The layer of bin t alone: inp (n, in) -> (n, out)."""
        return inp @ self.weight[t] + self.bias[t]


class PeepholeLSTMCell(nn.Module):
    """LSTM cell with peephole connections (Gers & Schmidhuber): gates also see the cell state."""

    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.ih = nn.Linear(d_in, 4 * hidden)
        self.hh = nn.Linear(hidden, 4 * hidden, bias=False)
        self.peep = nn.Parameter(torch.zeros(3, hidden))  # input, forget, output peepholes

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x (n, in), state (h, c) each (n, H) -> new (h, c)."""
        h, c = state
        gi, gf, gg, go = (self.ih(x) + self.hh(h)).chunk(4, dim=-1)
        i = torch.sigmoid(gi + self.peep[0] * c)
        f = torch.sigmoid(gf + self.peep[1] * c)
        c_new = f * c + i * torch.tanh(gg)
        o = torch.sigmoid(go + self.peep[2] * c_new)
        return o * torch.tanh(c_new), c_new


class LSTMArray(nn.Module):
    """LSTM over the output categories; forward(x (n, d)) -> probabilities (n, n_bins_total)."""

    def __init__(self, d_in: int, n_bins_total: int, embed: Sequence[int] = (64, 64), bin_features: int = 16,
                 hidden: int = 32, ar_order: int = 0, bidirectional: bool = False, cell: str = "standard",
                 activation: str = "elu"):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown LSTM cell {cell!r}; use one of {', '.join(CELLS)}")
        if bidirectional and ar_order > 0:
            raise ValueError("a bidirectional LSTM cannot feed back its own predictions; use ar_order=0")
        if n_bins_total < 2 or ar_order < 0:
            raise ValueError(f"need n_bins_total >= 2 and ar_order >= 0, got {n_bins_total}, {ar_order}")
        self.d_in, self.n_bins_total = int(d_in), int(n_bins_total)
        self.embed_sizes, self.bin_features, self.hidden = tuple(int(h) for h in embed), int(bin_features), int(hidden)
        self.ar_order, self.bidirectional, self.cell, self.activation = int(ar_order), bool(bidirectional), cell, activation
        self.embed, prev = dense_trunk(self.d_in, self.embed_sizes, activation)
        self.per_bin = PerBinLinear(self.n_bins_total, prev + self.ar_order, self.bin_features)
        dirs = 2 if self.bidirectional else 1
        if cell == "standard":
            self.lstm = nn.LSTM(self.bin_features, self.hidden, batch_first=True, bidirectional=self.bidirectional)
        else:
            self.cells = nn.ModuleList(PeepholeLSTMCell(self.bin_features, self.hidden) for _ in range(dirs))
        self.out = nn.Linear(dirs * self.hidden, 1)
        self.act = make_activation(activation)

    def architecture(self) -> dict:
        """JSON-serialisable description; models.build_model rebuilds the module from it."""
        return {"type": "lstm_array", "d_in": self.d_in, "n_bins_total": self.n_bins_total,
                "embed": list(self.embed_sizes), "bin_features": self.bin_features, "hidden": self.hidden,
                "ar_order": self.ar_order, "bidirectional": self.bidirectional, "cell": self.cell,
                "activation": self.activation}

    def work_per_row(self) -> int:
        """Intermediate size per input row (steps x LSTM width); sets the Emulator's chunk size."""
        return self.n_bins_total * max(self.hidden * (2 if self.bidirectional else 1) * 4, self.bin_features)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, y_teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities (n, C). With ar_order > 0: teacher forcing if y_teacher (n, C) is given, else free-running."""
        return self.log_probs(x, y_teacher).exp()

    def log_probs(self, x: torch.Tensor, y_teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities (n, C) (see forward)."""
        e = self.embed(x)
        n, T = x.shape[0], self.n_bins_total
        if self.ar_order == 0 or y_teacher is not None:
            parts = [e.unsqueeze(1).expand(n, T, e.shape[-1])]
            if self.ar_order > 0 and y_teacher is not None:  # (the branch condition: ar_order > 0 has y_teacher)
                parts.append(self._lagged(y_teacher.to(e.dtype)))
            z = self.act(self.per_bin(torch.cat(parts, dim=-1)))
            logits = self.out(self._run_lstm(z)).squeeze(-1)
            return F.log_softmax(logits, dim=-1) if self.ar_order == 0 else _stick_breaking_log(logits)
        return self._free_running(e)

    def _lagged(self, y: torch.Tensor) -> torch.Tensor:
        """(n, T, p): at step t the values y[t-p .. t-1] (zeros before the first bin), oldest first."""
        p = self.ar_order
        padded = F.pad(y, (p, 0))
        return torch.stack([padded[:, j:j + self.n_bins_total] for j in range(p)], dim=-1)

    def _run_lstm(self, z: torch.Tensor) -> torch.Tensor:
        if self.cell == "standard":
            return self.lstm(z)[0]
        outs = [self._run_cell(self._cell(0), z)]
        if self.bidirectional:
            outs.append(self._run_cell(self._cell(1), z.flip(1)).flip(1))
        return torch.cat(outs, dim=-1)

    def _cell(self, direction: int) -> PeepholeLSTMCell:
        """The peephole cell of a direction (the nn.ModuleList holding them types its items as nn.Module)."""
        return cast(PeepholeLSTMCell, self.cells[direction])

    def _run_cell(self, cell: PeepholeLSTMCell, z: torch.Tensor) -> torch.Tensor:
        h = z.new_zeros(z.shape[0], self.hidden)
        c = torch.zeros_like(h)
        hs = []
        for t in range(z.shape[1]):
            h, c = cell(z[:, t], (h, c))
            hs.append(h)
        return torch.stack(hs, dim=1)

    def _free_running(self, e: torch.Tensor) -> torch.Tensor:
        """Autoregressive inference: step t is fed the model's own probabilities of bins t-p .. t-1."""
        n, p, T = e.shape[0], self.ar_order, self.n_bins_total
        hist = e.new_zeros(n, p)
        h = e.new_zeros(n, self.hidden)
        c = torch.zeros_like(h)
        state = (h.unsqueeze(0), c.unsqueeze(0))
        log_rest = e.new_zeros(n)  # log of the mass not yet assigned
        out = []
        for t in range(T):
            zt = self.act(self.per_bin.step(torch.cat([e, hist], dim=-1), t))
            if self.cell == "standard":
                ht, state = self.lstm(zt.unsqueeze(1), state)
                ht = ht[:, 0]
            else:
                h, c = self._cell(0)(zt, (h, c))
                ht = h
            logit = self.out(ht).squeeze(-1)
            if t == T - 1:
                lp = log_rest
            else:
                lp = log_rest + F.logsigmoid(logit)
                log_rest = log_rest + F.logsigmoid(-logit)
            out.append(lp)
            hist = torch.cat([hist[:, 1:], lp.exp().unsqueeze(-1)], dim=-1)
        return torch.stack(out, dim=-1)


def _stick_breaking_log(logits: torch.Tensor) -> torch.Tensor:
    """log p (n, T): p_t = sigmoid(z_t) * prod_{j<t} (1 - sigmoid(z_j)); the last step takes the rest."""
    take = F.logsigmoid(logits[:, :-1])
    rest = torch.cumsum(F.logsigmoid(-logits[:, :-1]), dim=-1)
    before = F.pad(rest, (1, 0))  # log mass left before step t
    return torch.cat([before[:, :-1] + take, before[:, -1:]], dim=-1)
