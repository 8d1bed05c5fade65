"""examples/distill_joint.py: the conditional rows it trains on, and a short run end to end."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from surrogate_abc.emulators.io import load_emulator
from surrogate_abc.emulators.resolve import resolve_emulator

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "distill_joint.py"


@pytest.fixture(scope="module")
def distill():
    spec = importlib.util.spec_from_file_location("distill_joint", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def teacher():
    em, _ = resolve_emulator(None, ("mrna", "protein"))
    return em


def test_rows_are_the_joint_over_its_mrna_bins(distill, teacher):
    """Row (theta, a) is p(protein bin | mRNA bin a, theta): times the mRNA bin's mass it is the joint pmf's row a
    (the forward pass of the teacher), and each row sums to 1 with the mass outside the bins last."""
    theta = teacher.protocol.sample(3, seed=5)
    x = torch.as_tensor(teacher.features(theta), dtype=torch.float32)
    A, B = teacher.model.binning.shape
    xa = torch.cat([x.repeat_interleave(A, dim=0), torch.arange(A).repeat(3)[:, None].float()], dim=1)
    rows = distill.rows_of(distill.ConditionalRows(teacher.model), xa).double().reshape(3, A, B + 1)
    np.testing.assert_allclose(rows.sum(dim=2).numpy(), 1.0, atol=1e-4)  # float32 sums
    with torch.no_grad():
        joint = teacher.model(x).double()[:, :-1].reshape(3, A, B)
        pa = teacher.model._a_bin_masses(x, *teacher.model.factors(x)[:2]).double()
    np.testing.assert_allclose((pa[:, :, None] * rows[:, :, :-1]).numpy(), joint.numpy(), atol=2e-6)


def test_pairs_draw_bins_where_the_mrna_mass_is(distill, teacher):
    xa = distill.pairs(teacher, 200, seed=3)
    assert xa.shape == (800, len(teacher.param_names) + 1)
    a = xa[:, -1].long().numpy().reshape(200, 4)
    x = xa[::4, :-1]
    with torch.no_grad():
        pa = teacher.model._a_bin_masses(x, *teacher.model.factors(x)[:2]).double().numpy()
    drawn = np.take_along_axis(pa, a[:, :3], axis=1)
    assert np.mean(drawn > 1e-3) > 0.95  # three of four rows follow p(a | theta)
    assert np.all(np.take_along_axis(pa, a[:, 3:], axis=1) > 1e-4)  # the fourth: any bin of mass > 1e-4


def test_short_run_writes_a_student_with_the_teacher_marginal(distill, teacher, tmp_path):
    out = tmp_path / "student.safetensors"
    assert distill.main(["--out", str(out), "--head", "16", "--theta", "60", "--validation", "20", "--epochs", "1",
                         "--threads", "1"]) == 0
    student = load_emulator(out)
    assert student.model.architecture()["head"] == [16]
    assert student.metadata["distilled"]["head"] == [16]
    theta = teacher.protocol.sample(4, seed=1)
    for name, a, b in ((n, p, q) for (n, p), q in zip(student.model.marginal.state_dict().items(),
                                                       teacher.model.marginal.state_dict().values())):
        assert torch.equal(a, b), name  # the mRNA factor is the teacher's, untouched
    x = torch.as_tensor(teacher.features(theta), dtype=torch.float32)
    with torch.no_grad():
        pa_s = student.model._a_bin_masses(x, *student.model.factors(x)[:2])
        pa_t = teacher.model._a_bin_masses(x, *teacher.model.factors(x)[:2])
    assert torch.equal(pa_s, pa_t)  # so the joint differs from the teacher's by the conditional only
