"""emulators.widen: more mixture components, same mixture (the warm start behind `train --init`); a conditional
MDN's head widened in its hidden units, same law (examples/distill_joint.py --widen)."""
from __future__ import annotations

import pytest
import torch

from surrogate_abc import parse_protocol
from surrogate_abc.emulators.conditional import ConditionalMDN
from surrogate_abc.emulators.distributions import Binning, get_family
from surrogate_abc.emulators.mdn import MDN
from surrogate_abc.emulators.models import build_model
from surrogate_abc.emulators.widen import widen_head_state, widen_state, widening_factor

from conftest import GENE_JOINT_TOML, GENE_TEST_PARAMS

MDN_TOML = 'name = "mrna_test"\n' + GENE_TEST_PARAMS


def _nets():
    fam = get_family("gamma_poisson")
    torch.manual_seed(0)
    joint = ConditionalMDN(3, fam, 3, Binning.from_protocol(parse_protocol(GENE_JOINT_TOML, "j.toml")),
                           hidden=(8, 8), head=(8, 8))
    one = MDN(3, fam, 3, Binning.from_protocol(parse_protocol(MDN_TOML, "m.toml")), hidden=(8, 8))
    return joint, one


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("factor", [2, 3])
def test_widened_network_computes_the_same_mixture(which, factor):
    net = _nets()[which].double()
    arch = net.architecture()
    wide_arch = dict(arch, components=arch["components"] * factor)
    assert widening_factor(arch, wide_arch) == factor
    x = torch.randn(16, 3, dtype=torch.float64)
    for jitter, tol in ((0.0, 1e-12), (0.02, 5e-3)):
        wide = build_model(wide_arch, net.binning).double()
        wide.load_state_dict(widen_state(net.state_dict(), arch, factor, net.family.raw_size, jitter))
        with torch.no_grad():
            diff = (wide(x) - net(x)).abs().max().item()
        assert diff < tol
        assert jitter == 0.0 or diff > 0.0  # the copies are moved apart


def test_only_a_multiple_of_the_components_of_the_same_network():
    arch = _nets()[0].architecture()
    for new, msg in ((dict(arch, components=5), "not a multiple"), (dict(arch, components=3), "not a multiple"),
                     (dict(arch, components=6, head=[16, 8]), r"more than their components \(head\)")):
        with pytest.raises(ValueError, match=msg):
            widening_factor(arch, new)
    with pytest.raises(ValueError, match="only mdn"):
        widening_factor({"type": "lstm_array", "components": 2}, {"type": "lstm_array", "components": 4})


@pytest.mark.parametrize("new_head", [(13, 8), (8, 11), (16, 12)])
def test_widened_head_computes_the_same_law_and_its_copies_part(new_head):
    net = _nets()[0].double()
    wide = ConditionalMDN(3, net.family, 3, net.binning, hidden=(8, 8), head=new_head).double()
    wide.load_state_dict(widen_head_state(net.state_dict(), net.head, new_head, seed=3))
    x = torch.randn(16, 3, dtype=torch.float64)
    with torch.no_grad():
        assert (wide(x) - net(x)).abs().max().item() < 1e-12
    p = wide(x)
    (p.clamp(min=1e-300).log() * torch.rand(p.shape, dtype=p.dtype)).sum().backward()
    for layer, (old, new) in enumerate(zip(net.head, new_head)):
        rows = (wide.head_theta if layer == 0 else wide.head_rest[1]).weight.grad
        for extra in range(old, new):  # each added unit repeats one of the first `old`: its gradient differs
            assert min((rows[extra] - rows[j]).abs().max().item() for j in range(old)) > 0.0


def test_a_head_is_widened_only_to_its_depth_and_at_least_its_widths():
    state = _nets()[0].state_dict()
    for new in ((8,), (8, 8, 8), (6, 8)):
        with pytest.raises(ValueError, match="same depth and at least"):
            widen_head_state(state, (8, 8), new)
