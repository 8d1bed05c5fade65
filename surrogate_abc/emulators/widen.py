"""Widening a trained mixture network to more components without changing what it computes (a warm start).

A mixture network's last layers give K logits and K x R raw parameters. Repeating them m times gives a network
of m K components whose mixture is the same: equal logits share their weight (log-softmax), so each copy of
component k weighs w_k / m, and the copies have the same parameters. The copies are then moved apart by a small
`jitter` on their raw location parameter (log mean for gamma_poisson, mu for poisson_lognormal: raw index 0),
since identical copies get identical gradients and would never part. `train --init` uses this when the
config's [model] asks for m times the components of the --init network and is otherwise the same.
"""
from __future__ import annotations

from typing import Any, Mapping

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
