"""Widening a trained mixture network to more components without changing what it computes (a warm start).

A mixture network's last layers give K logits and K x R raw parameters. Repeating them m times gives a network
of m K components whose mixture is the same: equal logits share their weight (log-softmax), so each copy of
component k weighs w_k / m, and the copies have the same parameters. The copies are then moved apart by a small
`jitter` on their raw location parameter (log mean for gamma_poisson, mu for poisson_lognormal: raw index 0),
since identical copies get identical gradients and would never part. `train --init` uses this when the
config's [model] asks for m times the components of the --init network and is otherwise the same.

`widen_head_state` widens a conditional MDN's head the same way in its hidden units (more capacity, the same
function to start from): examples/distill_joint.py --widen fine-tunes the shipped joint emulator that way.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

# Per model type: the (weights layer, parameters layer) pairs that carry the mixture components.
MIXTURE_LAYERS: dict[str, tuple[tuple[str, str], ...]] = {
    "mdn": (("weight_head", "param_head"),),
    "mdn_conditional": (("a_weights", "a_params"), ("b_weights", "b_params")),
}
DEFAULT_JITTER = 0.02


def widening_factor(old: Mapping[str, Any], new: Mapping[str, Any]) -> int:
    """m such that architecture `new` is `old` with m times the components (m >= 2); ValueError otherwise."""
    kind = old.get("type")
    if kind not in MIXTURE_LAYERS:
        raise ValueError(f"only {', '.join(MIXTURE_LAYERS)} networks can be widened, not {kind!r}")
    rest_old = {k: v for k, v in old.items() if k != "components"}
    rest_new = {k: v for k, v in new.items() if k != "components"}
    if rest_old != rest_new:
        diff = sorted(k for k in set(rest_old) | set(rest_new) if rest_old.get(k) != rest_new.get(k))
        raise ValueError(f"the networks differ in more than their components ({', '.join(diff)})")
    k_old, k_new = int(old["components"]), int(new["components"])
    if k_new <= k_old or k_new % k_old:
        raise ValueError(f"{k_new} components are not a multiple (>= 2x) of the {k_old} of the --init network")
    return k_new // k_old


def widen_state(state: Mapping[str, torch.Tensor], arch: Mapping[str, Any], factor: int, raw_size: int,
                jitter: float = DEFAULT_JITTER) -> dict[str, torch.Tensor]:
    """State dict of network `arch` (type in MIXTURE_LAYERS) with `factor` times its components; see the module
    docstring. Copy j of every component gets (j - (factor - 1) / 2) * jitter added to its raw location bias."""
    out = {k: v.clone() for k, v in state.items()}
    offsets = [(j - (factor - 1) / 2.0) * jitter for j in range(factor)]
    for w_name, p_name in MIXTURE_LAYERS[str(arch["type"])]:
        for part in ("weight", "bias"):
            w = state[f"{w_name}.{part}"]
            out[f"{w_name}.{part}"] = torch.cat([w] * factor, dim=0)
            p = state[f"{p_name}.{part}"]
            per_comp = p.reshape(-1, raw_size, *p.shape[1:])                   # (K, R[, H])
            copies = []
            for off in offsets:
                c = per_comp.clone()
                if part == "bias":
                    c[:, 0] += off
                copies.append(c)
            out[f"{p_name}.{part}"] = torch.cat(copies, dim=0).reshape(-1, *p.shape[1:])
    return out


def widen_head_state(state: Mapping[str, torch.Tensor], head: Sequence[int], new_head: Sequence[int],
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """State dict of a conditional MDN (mdn_conditional) whose conditional head has the wider layers `new_head`
    (same depth as `head`, each at least as wide), computing the same mixture: each added unit repeats a unit of
    its layer (incoming weights and bias), and the outgoing weights of a unit and its copies split its own among
    them in random shares that sum to 1, so that the copies get different gradients and part in training
    (equal shares would keep them identical). Widens the head_theta/head_m -> head_rest -> b_weights/b_params
    chain (Net2Net's function-preserving widening); everything else is copied."""
    if len(new_head) != len(head) or any(n < o for o, n in zip(head, new_head)):
        raise ValueError(f"a head of widths {list(head)} can be widened to the same depth and at least its widths, "
                         f"not {list(new_head)}")
    rng = np.random.default_rng(seed)
    out = {k: v.clone() for k, v in state.items()}
    # (incoming weights/biases, outgoing weights) of each hidden layer of the head
    incoming = [["head_theta.weight", "head_theta.bias", "head_m.weight"]]
    incoming += [[f"head_rest.{2 * i - 1}.weight", f"head_rest.{2 * i - 1}.bias"] for i in range(1, len(head))]
    outgoing = [[f"head_rest.{2 * i - 1}.weight"] for i in range(1, len(head))] + [["b_weights.weight",
                                                                                    "b_params.weight"]]
    for layer, (old, new) in enumerate(zip(head, new_head)):
        if new == old:
            continue
        idx = np.concatenate([np.arange(old), rng.integers(0, old, new - old)])
        share = rng.uniform(0.5, 1.5, new)
        share /= np.bincount(idx, weights=share, minlength=old)[idx]            # each unit's shares sum to 1
        for name in incoming[layer]:
            out[name] = out[name][torch.as_tensor(idx)]
        for name in outgoing[layer]:
            w = out[name][:, torch.as_tensor(idx)]
            out[name] = w * torch.as_tensor(share, dtype=w.dtype)[None, :]
    return out
