"""Rebuild any emulator network from its `architecture()` dict (the inverse used by io.load_emulator)."""
from __future__ import annotations

from typing import Any

from torch import nn

MODEL_TYPES = ("mdn", "mdn_conditional", "lstm_array", "mdn_ensemble", "lstm_ensemble")


def resolve_family(family: Any) -> Any:
    """A family instance from an instance (returned as is) or a name such as 'gamma_poisson'."""
    if not isinstance(family, str):
        return family
    from .distributions import get_family

    return get_family(family)


def build_model(architecture: dict, binning: Any = None) -> nn.Module:
    """A freshly initialised module with the given architecture (weights are loaded separately).

    `binning` (distributions.Binning) is needed by MDNs and MDN ensembles only."""
    from .ensemble import LSTMEnsemble, MDNEnsemble
    from .lstm import LSTMArray
    from .mdn import MDN

    arch = dict(architecture)
    kind = arch.pop("type", None)
    if kind == "mdn":
        return MDN(arch["d_in"], resolve_family(arch["family"]), arch["components"], binning,
                   hidden=arch["hidden"], activation=arch["activation"])
    if kind == "mdn_conditional":
        from .conditional import ConditionalMDN

        return ConditionalMDN(arch["d_in"], resolve_family(arch["family"]), arch["components"], binning,
                              hidden=arch["hidden"], activation=arch["activation"], head=arch["head"])
    if kind == "lstm_array":
        return LSTMArray(**arch)
    if kind == "mdn_ensemble":
        return MDNEnsemble([build_model(m, binning) for m in arch["members"]])
    if kind == "lstm_ensemble":
        return LSTMEnsemble([build_model(m, binning) for m in arch["members"]], arch["n_bins_total"],
                            combiner=arch["combiner"])
    raise ValueError(f"unknown model type {kind!r}; known: {', '.join(MODEL_TYPES)}")


def needs_binning(architecture: dict) -> bool:
    """Whether build_model needs a Binning for this architecture (MDNs do, LSTM arrays do not)."""
    if architecture.get("type") in ("mdn", "mdn_conditional"):
        return True
    return any(needs_binning(m) for m in architecture.get("members", ()))


def make_binning(protocol: Any) -> Any:
    """The distributions.Binning of a protocol's histogram axes."""
    from . import distributions

    return distributions.Binning.from_protocol(protocol)
