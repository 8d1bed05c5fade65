"""A joint emulator with its first species' factor taken from a marginal emulator of that species.

The conditional joint network (conditional.ConditionalMDN) factors p(m, p | theta) = p(m | theta) p(p | [m], theta).
Its own mRNA factor shares the trunk and the few mixture components of the protein head; a 1-D MDN trained on
the exact mRNA marginal alone (the Beta-Poisson closed form for the gene model: thousands of sets a minute,
no FSP) is far more accurate. `attach_marginal` puts that network in place of the first factor and keeps the
conditional head as trained, so the joint improves by the marginal's share of its error (the chain rule
splits KL(joint) into KL(marginal) + E KL(conditional)).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from ..data.schema import file_sha256
from ..errors import UserError
from .conditional import ConditionalMDN
from .emulator import Emulator
from .layers import architecture_of
from .mdn import MDN


def _check_pair(joint: Emulator, marginal: Emulator) -> None:
    """UserError (one line, naming the field) unless `marginal` can stand for `joint`'s first factor."""
    if not isinstance(joint.model, ConditionalMDN):
        raise UserError(f"{joint.source or 'the joint emulator'}: a marginal can replace the first factor of a "
                        f"conditional MDN (model type mdn_conditional) only, got {architecture_of(joint.model)['type']}")
    if not isinstance(marginal.model, MDN) or len(marginal.species) != 1:
        raise UserError(f"{marginal.source or 'the marginal emulator'}: needs a 1-D MDN (model type mdn) of one "
                        f"species, got {architecture_of(marginal.model)['type']} of {', '.join(marginal.species)}")
    src = marginal.source or "the marginal emulator"
    if marginal.species[0] != joint.species[0]:
        raise UserError(f"{src}: emulates {marginal.species[0]}, the joint emulator's first species is "
                        f"{joint.species[0]}")
    if list(marginal.param_names) != list(joint.param_names) or marginal.transforms != joint.transforms:
        raise UserError(f"{src}: its parameters {list(marginal.param_names)} ({', '.join(marginal.transforms)}) "
                        f"differ from the joint emulator's {list(joint.param_names)} ({', '.join(joint.transforms)}); "
                        f"train it on a protocol with the same [parameters]")
    if not np.array_equal(np.asarray(marginal.edges[0], float), np.asarray(joint.edges[0], float)):
        raise UserError(f"{src}: its {marginal.species[0]} edges differ from the joint emulator's; train it on a "
                        f"protocol with the same [histogram.{joint.species[0]}]")
    def prior(p: Any) -> list:
        return [(q.kind, q.names, q.bounds(), q.alpha) for q in p.priors]

    if prior(joint.protocol) != prior(marginal.protocol):
        raise UserError(f"{src}: its prior differs from the joint emulator's ({joint.protocol.name}); train it on a "
                        f"protocol with the same [parameters]")
    theta = joint.protocol.sample(16, seed=0)
    if joint.protocol.rate_names != marginal.protocol.rate_names or not np.allclose(
            joint.protocol.rates(theta), marginal.protocol.rates(theta), rtol=1e-12):
        raise UserError(f"{src}: its protocol maps parameters to other rates than {joint.protocol.name} does; use "
                        f"the same network, [fixed] and [derived]")


def attach_marginal(joint: Emulator, marginal: Emulator) -> Emulator:
    """A new Emulator: `joint` (a conditional MDN) with p(first species | theta) taken from `marginal` (an MDN of
    that species on the same parameters, prior and edges); UserError naming the mismatch otherwise. The
    inputs are mapped between the two feature scalings; metadata records the marginal's file and training."""
    _check_pair(joint, marginal)
    model = copy.deepcopy(joint.model).cpu()
    assert isinstance(model, ConditionalMDN)  # _check_pair checked it
    model.marginal = None
    scale = joint.scaling_std / marginal.scaling_std   # marginal features from the joint's: x * scale + shift
    shift = (joint.scaling_mean - marginal.scaling_mean) / marginal.scaling_std
    model.set_marginal(copy.deepcopy(marginal.model).cpu(), scale, shift)
    meta: dict[str, Any] = dict(joint.metadata)
    meta["marginal"] = {"file": Path(marginal.source).name if marginal.source else "",
                        "sha256": file_sha256(Path(marginal.source)) if Path(marginal.source or "").is_file() else "",
                        **{k: marginal.metadata[k] for k in ("training_config", "validation_metrics")
                           if k in marginal.metadata}}
    if "validation_metrics" in meta:  # they measured the joint's own first factor
        meta["joint_validation_metrics"] = meta.pop("validation_metrics")
    return Emulator(model.eval(), joint.protocol, joint.scaling_mean, joint.scaling_std, joint.transforms, meta,
                    source=joint.source)

