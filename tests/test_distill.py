"""examples/distill_joint.py: the conditional rows it trains on, and a short run end to end."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from surrogate_abc.emulators.io import load_emulator
from surrogate_abc.emulators.resolve import resolve_emulator
from surrogate_abc.simulate.marginal_bins import beta_poisson_bins

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


def test_exact_pairs_divide_each_row_by_its_exact_mrna_mass(distill, teacher, tmp_path):
    """A binned file whose protein law is the same in every mRNA bin (P(a) x Poisson(550), so ~2% lies beyond the
    last protein edge): every exact row is that Poisson law on the protein bins, the mass beyond them last."""
    from scipy import stats
    theta = teacher.protocol.sample(6, seed=12)
    e_m, e_p = (teacher.model.binning.edges_np[k] for k in (0, 1))
    pa = beta_poisson_bins(teacher.protocol, theta, e_m)
    cdf = stats.poisson.cdf(e_p - 1, 550.0)
    pp = np.append(np.diff(cdf), 1.0 - cdf[-1])                       # protein bins, then beyond the last edge
    with h5py.File(tmp_path / "exact.h5", "w") as f:
        f["theta"], f["hist"], f["edges/mrna"] = theta, pa[:, :, None] * pp[None, None, :-1], e_m
    xa, y, owner = distill.exact_pairs(teacher, [tmp_path / "exact.h5"], 8, seed=0)
    assert xa.shape == (48, len(teacher.param_names) + 1) and y.shape == (48, len(pp))
    np.testing.assert_array_equal(owner.numpy(), np.repeat(np.arange(6), 8))
    np.testing.assert_allclose(xa[:, :-1].numpy(), np.repeat(teacher.features(theta), 8, axis=0), rtol=1e-6)
    np.testing.assert_allclose(y.numpy(), np.broadcast_to(pp, y.shape), rtol=1e-4, atol=1e-7)
    assert np.all(np.take_along_axis(pa, xa[:, -1].long().numpy().reshape(6, 8), axis=1) > 1e-4)


def test_exact_run_goes_on_from_a_teacher_of_the_same_head(distill, teacher, tmp_path):
    """--exact with the teacher's own head widths: the student starts as the teacher (fine-tuning), held-out
    exact sets drive early stopping, and the files used are recorded."""
    theta = teacher.protocol.sample(10, seed=13)
    e_m = teacher.model.binning.edges_np[0]
    pa = beta_poisson_bins(teacher.protocol, theta, e_m)
    with h5py.File(tmp_path / "exact.h5", "w") as f:
        f["theta"], f["hist"], f["edges/mrna"] = theta, pa[:, :, None] * np.full(150, 1 / 150)[None, None], e_m
    student = distill.student_of(teacher.model, teacher.model.head)
    for (name, a), b in zip(student.state_dict().items(), teacher.model.state_dict().values()):
        assert torch.equal(a, b), name
    out = tmp_path / "tuned.safetensors"
    assert distill.main(["--out", str(out), "--head", *map(str, teacher.model.head), "--theta", "20",
                         "--validation", "10", "--epochs", "1", "--threads", "1", "--exact", str(tmp_path / "exact.h5"),
                         "--exact-rows", "4", "--lr", "1e-5", "--loss", "kld"]) == 0
    meta = load_emulator(out).metadata["distilled"]
    assert meta["exact"] == ["exact.h5"] and meta["exact_rows"] == 4 and meta["lr"] == 1e-5 and meta["loss"] == "kld"
    assert meta["teacher_distilled"] == teacher.metadata["distilled"]  # the stage before kept


def test_focus_repeats_the_rows_of_the_sets_fitted_worst(distill):
    """--focus: a set's KL is the mean of its rows' KL(exact || model); every row of a set above the threshold comes
    `repeat` times, the others once."""
    q = torch.tensor([[0.5, 0.5]])

    class Fixed(torch.nn.Module):  # the model's rows: 1/2, 1/2 whatever the input
        def forward(self, xa):
            return q.expand(len(xa), 2)

    y = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.5, 0.5], [0.9, 0.1], [0.9, 0.1]])
    owner = torch.tensor([0, 0, 1, 1, 2, 2])
    kl_far = 0.9 * np.log(1.8) + 0.1 * np.log(0.2)
    pick, per_set, hard = distill.focus_rows(Fixed(), torch.zeros(6, 3), y, owner, 0.3, 3)
    np.testing.assert_allclose(per_set.numpy(), [0.0, kl_far / 2, kl_far], rtol=1e-5)
    assert hard.tolist() == [False, False, True]  # kl_far / 2 = 0.184 < 0.3 < kl_far = 0.368
    assert sorted(pick.tolist()) == [0, 1, 2, 3, 4, 4, 4, 5, 5, 5]


def test_widen_starts_from_the_teachers_law_with_a_wider_head(distill, teacher):
    """--widen: a student of wider head widths starts as the teacher's law (its head widened, trunk and marginal
    copied); without it the wider head starts fresh (another law)."""
    wider = tuple(w + 8 for w in teacher.model.head)
    x = torch.as_tensor(teacher.features(teacher.protocol.sample(5, seed=14)), dtype=torch.float32)
    with torch.no_grad():
        ref = teacher.model(x)
        widened = distill.student_of(teacher.model, wider, widen=True, seed=2)
        assert widened.head == wider
        assert (widened(x) - ref).abs().max().item() < 1e-5
        assert (distill.student_of(teacher.model, wider)(x) - ref).abs().max().item() > 1e-3


def test_validate_writes_the_students_heldout_metrics(distill, teacher, tmp_path, monkeypatch):
    """--validate: the file's validation_metrics are the student's held-out figures (the teacher's kept beside
    them), not the ones it inherited from the teacher; without --validate neither is kept."""
    def compare(before, after, binned, max_tail_mass=1e-3):
        assert before is teacher or before.metadata == teacher.metadata
        return {"KLD": 2.0}, {"KLD": 1.0}, {"file": Path(binned).name, "sets": 3}, "KLD 2 -> 1"
    monkeypatch.setattr(distill, "compare_on_heldout", compare)
    common = ["--head", "8", "--theta", "20", "--validation", "10", "--epochs", "1", "--threads", "1"]
    assert distill.main(["--out", str(tmp_path / "a.safetensors"), *common, "--validate", str(tmp_path / "t.h5")]) == 0
    meta = load_emulator(tmp_path / "a.safetensors").metadata
    assert meta["validation_metrics"] == {"KLD": 1.0} and meta["teacher_validation_metrics"] == {"KLD": 2.0}
    assert meta["validation_data"] == {"file": "t.h5", "sets": 3}
    assert distill.main(["--out", str(tmp_path / "b.safetensors"), *common]) == 0
    meta = load_emulator(tmp_path / "b.safetensors").metadata
    assert not {"validation_metrics", "validation_data", "teacher_validation_metrics"} & set(meta)


def test_components_factor_starts_near_the_teachers_law_with_twice_the_components(distill, teacher):
    """--components-factor 2: each component copied twice (their means jittered apart by 2%), so the student's joint
    law starts within a small distance of the teacher's; with other head widths it is refused in one line."""
    x = torch.as_tensor(teacher.features(teacher.protocol.sample(5, seed=14)), dtype=torch.float32)
    with torch.no_grad():
        ref = teacher.model(x)
        doubled = distill.student_of(teacher.model, teacher.model.head, factor=2)
        assert doubled.n_components == 2 * teacher.model.n_components
        got = doubled(x)
        assert got.shape == ref.shape and (got - ref).abs().max().item() < 2e-3
        assert (got - ref).abs().max().item() > 0  # the copies moved apart
    with pytest.raises(SystemExit, match="--components-factor"):
        distill.student_of(teacher.model, tuple(w + 8 for w in teacher.model.head), factor=2)
