"""The emulator network types: one registry (EMULATOR_TYPES, name -> EmulatorType) that builds every network.

A network is described by an architecture dict, its `type` plus its constructor options: what each
module's architecture() returns and emulator files store. build_model makes a fresh network from such a
dict (io.load_emulator); a training config's [model] section is turned into one first
(config_architecture) and built the same way (build_from_config, behind training.build_network).
Type names are those of the files (MODEL_TYPES); training configs write "lstm" for "lstm_array"
(CONFIG_TYPES), and both spellings are keys of the registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from . import distributions
from .conditional import DEFAULT_HEAD, ConditionalMDN
from .ensemble import LSTMEnsemble, MDNEnsemble
from .layers import resolve_family
from .lstm import LSTMArray
from .mdn import MDN

LSTM_OPTIONS = ("bin_features", "hidden", "ar_order", "bidirectional", "cell")  # the [model.lstm] keys

Builder = Callable[[Mapping[str, Any], Any], nn.Module]
ConfigArchitecture = Callable[[Any, int, int], dict]


@dataclass(frozen=True)
class EmulatorType:
    """One kind of network: how to build it from its architecture dict, and from a training config."""

    name: str  # the `type` of its architecture() dict, as emulator files store it
    config_name: str  # the [model] type of training configs
    build: Builder  # (architecture without "type", binning) -> a freshly initialised network
    binned: bool = False  # needs the protocol's Binning (ensembles: when a member does)
    from_config: ConfigArchitecture | None = None  # ([model] section, d_in, n_out) -> architecture; None: members


def _mdn(arch: Mapping[str, Any], binning: Any) -> nn.Module:
    return MDN(arch["d_in"], resolve_family(arch["family"]), arch["components"], binning,
               hidden=arch["hidden"], activation=arch["activation"])


def _conditional(arch: Mapping[str, Any], binning: Any) -> nn.Module:
    net = ConditionalMDN(arch["d_in"], resolve_family(arch["family"]), arch["components"], binning,
                         hidden=arch["hidden"], activation=arch["activation"], head=arch.get("head", DEFAULT_HEAD))
    if arch.get("marginal") is not None:  # the first species' factor from its own 1-D network (set_marginal)
        first = distributions.Binning([binning.edges_np[0]], counts=binning.counts, species=binning.species[:1])
        net.set_marginal(build_model(arch["marginal"], first))
    return net


def _lstm(arch: Mapping[str, Any], binning: Any) -> nn.Module:
    return LSTMArray(**arch)


def _mdn_ensemble(arch: Mapping[str, Any], binning: Any) -> nn.Module:
    return MDNEnsemble([build_model(m, binning) for m in arch["members"]])


def _lstm_ensemble(arch: Mapping[str, Any], binning: Any) -> nn.Module:
    return LSTMEnsemble([build_model(m, binning) for m in arch["members"]], arch["n_bins_total"],
                        combiner=arch["combiner"])


def _mixture_config(kind: str) -> ConfigArchitecture:
    """[model] -> architecture of an MDN-like type: `hidden` is the dense trunk."""

    def architecture(spec: Any, d_in: int, n_out: int) -> dict:
        return {"type": kind, "d_in": d_in, "family": spec.family, "components": spec.components,
                "hidden": spec.hidden, "activation": spec.activation}

    return architecture


def _lstm_config(spec: Any, d_in: int, n_out: int) -> dict:
    """[model] -> LSTM array: `hidden` is the dense embedding, [model.lstm] holds the LSTM_OPTIONS."""
    bad = set(spec.lstm) - set(LSTM_OPTIONS)
    if bad:
        raise ValueError(f"unknown LSTM option {sorted(bad)[0]!r} in [model.lstm]; allowed: {', '.join(LSTM_OPTIONS)}")
    return {"type": "lstm_array", "d_in": d_in, "n_bins_total": n_out, "embed": spec.hidden,
            "activation": spec.activation, **dict(spec.lstm)}


_TYPES = (
    EmulatorType("mdn", "mdn", _mdn, binned=True, from_config=_mixture_config("mdn")),
    EmulatorType("mdn_conditional", "mdn_conditional", _conditional, binned=True,
                 from_config=_mixture_config("mdn_conditional")),
    EmulatorType("lstm_array", "lstm", _lstm, from_config=_lstm_config),
    EmulatorType("mdn_ensemble", "mdn_ensemble", _mdn_ensemble),  # training builds and combines the members
    EmulatorType("lstm_ensemble", "lstm_ensemble", _lstm_ensemble),
)
EMULATOR_TYPES: dict[str, EmulatorType] = {n: t for t in _TYPES for n in (t.name, t.config_name)}
MODEL_TYPES = tuple(t.name for t in _TYPES)  # the architecture (file) spellings
CONFIG_TYPES = tuple(t.config_name for t in _TYPES)  # the training-config spellings


def _lookup(name: Any) -> EmulatorType | None:
    return EMULATOR_TYPES.get(name) if isinstance(name, str) else None


def emulator_type(name: Any) -> EmulatorType:
    """The registry entry of a type name (either spelling); ValueError listing the known ones."""
    t = _lookup(name)
    if t is None:
        raise ValueError(f"unknown model type {name!r}; known: {', '.join(MODEL_TYPES)}")
    return t


def build_model(architecture: Mapping[str, Any], binning: Any = None) -> nn.Module:
    """A freshly initialised module with the given architecture (weights are loaded separately).

    `binning` (distributions.Binning) is needed by MDNs and MDN ensembles only."""
    arch = dict(architecture)
    return emulator_type(arch.pop("type", None)).build(arch, binning)


def needs_binning(architecture: Mapping[str, Any]) -> bool:
    """Whether build_model needs a Binning for this architecture (MDNs do, LSTM arrays do not)."""
    t = _lookup(architecture.get("type"))
    if t is not None and t.binned:
        return True
    return any(needs_binning(m) for m in architecture.get("members", ()))


def config_architecture(kind: str, spec: Any, d_in: int, n_out: int) -> dict:
    """The architecture dict of a network of type `kind` described by a training config's [model] section
    `spec` (family, components, hidden, activation, lstm), for d_in features and n_out categories."""
    t = emulator_type(kind)
    if t.from_config is None:
        raise ValueError(f"a {t.name} is combined from member networks; build its members' type instead")
    return t.from_config(spec, d_in, n_out)


def build_from_config(kind: str, spec: Any, protocol: Any, d_in: int, n_out: int) -> nn.Module:
    """A fresh network of type `kind` for a [model] section; the protocol gives the Binning where needed."""
    arch = config_architecture(kind, spec, d_in, n_out)
    return build_model(arch, make_binning(protocol) if needs_binning(arch) else None)


def make_binning(protocol: Any) -> Any:
    """The distributions.Binning of a protocol's histogram axes."""
    return distributions.Binning.from_protocol(protocol)
