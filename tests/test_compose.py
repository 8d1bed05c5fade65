"""attach_marginal: a conditional joint emulator whose first factor comes from a 1-D MDN of that species."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogate_abc import parse_protocol
from surrogate_abc.emulators.compose import attach_marginal
from surrogate_abc.emulators.conditional import ConditionalMDN
from surrogate_abc.emulators.distributions import Binning, get_family
from surrogate_abc.emulators.emulator import Emulator
from surrogate_abc.emulators.io import load_emulator, save_emulator
from surrogate_abc.emulators.mdn import MDN
from surrogate_abc.errors import UserError

from conftest import GENE_JOINT_TOML, GENE_TEST_PARAMS

torch.set_num_threads(1)

JOINT = GENE_JOINT_TOML
MARGINAL = 'name = "mrna_test"\n' + GENE_TEST_PARAMS


def _emulator(toml: str, seed: int, shift: float = 0.0) -> Emulator:
    protocol = parse_protocol(toml, source="test.toml")
    binning = Binning.from_protocol(protocol)
    torch.manual_seed(seed)
    fam = get_family("gamma_poisson")
    model = (ConditionalMDN(3, fam, 2, binning, hidden=(8, 8), head=(8, 8)) if binning.ndim == 2
             else MDN(3, fam, 3, binning, hidden=(8, 8)))
    theta = protocol.sample(200, seed=1)
    z = np.where(np.array([t == "log10" for t in protocol.transforms()]), np.log10(theta), theta)
    meta = {"validation_metrics": {"KLD": 0.01 + shift}}
    return Emulator(model, protocol, z.mean(0) + shift, z.std(0) * (1 + shift), protocol.transforms(), meta,
                    source=f"{protocol.name}.safetensors")


def test_first_factor_is_the_marginal_and_the_conditional_is_kept(tmp_path):
    joint, marginal = _emulator(JOINT, 0), _emulator(MARGINAL, 1, shift=0.3)  # other feature scalings
    both = attach_marginal(joint, marginal)
    theta = joint.protocol.sample(6, seed=3)
    old, _ = joint.pmf(theta)
    new, over = both.pmf(theta)
    np.testing.assert_allclose(new.sum((1, 2)) + over, 1.0, atol=1e-6)
    assert np.all(over >= 0)
    x = torch.as_tensor(joint.features(theta), dtype=torch.float32)
    with torch.no_grad():
        old_a = joint.model._a_bin_masses(x, *joint.model.factors(x)[:2]).numpy()
        new_a = both.model._a_bin_masses(x, *both.model.factors(x)[:2]).numpy()
    marg, _ = marginal.pmf(theta)  # on the marginal's own feature scaling
    np.testing.assert_allclose(new_a, marg, rtol=1e-5, atol=1e-9)
    # p(protein bin | mRNA bin) is unchanged: new / old = new_a / old_a in every protein bin
    np.testing.assert_allclose(new, old * (new_a / old_a)[:, :, None], rtol=1e-4, atol=1e-9)
    assert both.metadata["marginal"]["file"] == "mrna_test.safetensors"
    assert "validation_metrics" not in both.metadata and both.metadata["joint_validation_metrics"]["KLD"] == 0.01
    back = load_emulator(save_emulator(both, tmp_path / "both.safetensors"))
    np.testing.assert_array_equal(back.pmf(theta)[0], new)
    assert back.model.architecture()["marginal"]["type"] == "mdn"
    cats = np.array([0, 5, 7, 11])
    np.testing.assert_allclose(back.category_probs(theta, cats), new.reshape(6, -1)[:, cats], rtol=1e-5, atol=1e-9)
    # with the overflow asked (the marginal's bins and outside mass from one pass of its network)
    cats = np.array([0, 5, 7, 11, new[0].size])
    full = np.concatenate([new.reshape(6, -1), over[:, None]], axis=1)
    np.testing.assert_allclose(back.category_probs(theta, cats), full[:, cats], rtol=1e-5, atol=1e-9)


def test_mismatched_pairs_are_refused_naming_the_field():
    joint, marginal = _emulator(JOINT, 0), _emulator(MARGINAL, 1)
    with pytest.raises(UserError, match="edges differ"):
        attach_marginal(joint, _emulator(MARGINAL.replace("width = 3", "width = 4"), 1))
    with pytest.raises(UserError, match="prior differs"):
        attach_marginal(joint, _emulator(MARGINAL.replace("high = 1.0", "high = 0.9"), 1))
    with pytest.raises(UserError, match="other rates"):
        attach_marginal(joint, _emulator(MARGINAL.replace("v0 = 10.0", "v0 = 11.0"), 1))
    with pytest.raises(UserError, match="conditional MDN"):
        attach_marginal(marginal, marginal)
    with pytest.raises(UserError, match="1-D MDN"):
        attach_marginal(joint, joint)


def test_cli_writes_the_emulator_and_refuses_a_bad_pair_in_one_line(tmp_path, capsys):
    from surrogate_abc.cli import main

    joint = save_emulator(_emulator(JOINT, 0), tmp_path / "joint.safetensors")
    marginal = save_emulator(_emulator(MARGINAL, 1), tmp_path / "mrna.safetensors")
    assert main(["attach-marginal", str(joint), str(marginal), "--out", str(tmp_path / "both.safetensors")]) == 0
    assert "first factor (mrna) from mrna.safetensors" in capsys.readouterr().out
    both = load_emulator(tmp_path / "both.safetensors")
    assert both.metadata["marginal"]["sha256"] and both.model.marginal is not None
    assert main(["attach-marginal", str(marginal), str(joint), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("surrogate-abc: error:") and "conditional MDN" in err and "\n" not in err
    assert not (tmp_path / "x.safetensors").exists()
