"""Losses and metrics (surrogate_abc.losses) against hand-computed values and basic properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst
from hypothesis.extra.numpy import arrays

from surrogate_abc.errors import UserError
from surrogate_abc.losses import LOSSES, get_loss, l1, mdd_ed, mdd_kld, metrics, metrics_rows, mse
from surrogate_abc.losses import thesis_h2 as hellinger

# Row 0 differs, row 1 is identical. x = y_true, y = y_pred.
Y_PRED = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], dtype=torch.float64)
Y_TRUE = torch.tensor([[0.25, 0.25, 0.5], [0.2, 0.3, 0.5]], dtype=torch.float64)
# Row 0, by hand:
#   KL(x||y) = .25 ln(.25/.5) + .25 ln(.25/.3) + .5 ln(.5/.2)      = 0.2392781815986026
#   KL(y||x) = .5 ln(.5/.25) + .3 ln(.3/.25) + .2 ln(.2/.5)        = 0.2180119109433280
#   ED(x,y)  = .25 ln(.5)^2 + .25 ln(.25/.3)^2 + .5 ln(2.5)^2      = 0.5482178936567306
#   ED(y,x)  = .5 ln(2)^2 + .3 ln(1.2)^2 + .2 ln(.4)^2             = 0.4181165930443270
#   H2       = 2 [(sqrt.5 - .5)^2 + (sqrt.3 - .5)^2 + (sqrt.2 - sqrt.5)^2] = 0.2254302585492211
#   |y - x|  = (.25, .05, .3);  squares (.0625, .0025, .09)
# Batch averages halve the row-0 values (row 1 contributes 0); L1 and MSE average over all 6 entries.
EXPECTED = {
    "hellinger": 0.2254302585492211 / 2,
    "mdd_kld": 0.2392781815986026 / 2,
    "kld": 0.2392781815986026 / 2,
    "mdd_ed": 0.5482178936567306 / 2,
    "l1": 0.6 / 6,
    "mse": 0.155 / 6,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_losses_match_hand_computed_values(name):
    value = get_loss(name)(Y_PRED, Y_TRUE)
    assert value.ndim == 0
    assert value.item() == pytest.approx(EXPECTED[name], rel=1e-9)


def test_metrics_match_hand_computed_values_torch_and_numpy():
    expected = {"H2": 0.2254302585492211 / 2, "MSE": 0.155 / 6, "KLD": 0.2392781815986026 / 2,
                "L1max": 0.3 / 2, "L1": 0.1}
    for args in ((Y_PRED, Y_TRUE), (Y_PRED.numpy(), Y_TRUE.numpy()), (Y_PRED.float(), Y_TRUE.float())):
        got = metrics(*args)
        assert set(got) == set(expected) and all(isinstance(v, float) for v in got.values())
        for k, v in expected.items():
            assert got[k] == pytest.approx(v, rel=1e-6), k
    rows = metrics_rows(Y_PRED.numpy(), Y_TRUE.numpy())
    np.testing.assert_allclose(rows["L1max"], [0.3, 0.0])
    np.testing.assert_allclose(rows["KLD"], [0.2392781815986026, 0.0], atol=1e-12)


def test_zero_entries_use_eps_clamp():
    y = torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)
    x = torch.tensor([[0.25, 0.25, 0.5]], dtype=torch.float64)
    eps = 1e-12
    # KL(x||y) = 2 * .25 ln(.25/.5) + .5 ln(.5/eps); KL(y||x) = ln 2 (the 0 * log 0 term is 0)
    kl_xy = 0.5 * math.log(0.5) + 0.5 * (math.log(0.5) - math.log(eps))
    assert mdd_kld(y, x, eps=eps).item() == pytest.approx(max(kl_xy, math.log(2.0)), rel=1e-12)
    # H2 with sqrt(eps) standing in for sqrt(0)
    h2 = 2 * (2 * (math.sqrt(0.5) - 0.5) ** 2 + (math.sqrt(eps) - math.sqrt(0.5)) ** 2)
    assert hellinger(y, x, eps=eps).item() == pytest.approx(h2, rel=1e-12)
    assert hellinger(y, x, eps=1e-300).item() == pytest.approx(4 - 2 * math.sqrt(2), rel=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_zero_for_identical_inputs_including_zeros(name):
    x = torch.tensor([[0.0, 0.2, 0.8, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    assert get_loss(name)(x, x.clone()).item() == pytest.approx(0.0, abs=1e-15)
    assert all(v == pytest.approx(0.0, abs=1e-15) for v in metrics(x, x).values())


@pytest.mark.parametrize("name", sorted(set(LOSSES) - {"kld"}))
def test_symmetric_losses(name):
    # all but kld are symmetric in (y_pred, y_true): the MDDs by their max of both directions
    gen = torch.Generator().manual_seed(1)
    a = torch.softmax(torch.randn(4, 7, generator=gen, dtype=torch.float64), 1)
    b = torch.softmax(torch.randn(4, 7, generator=gen, dtype=torch.float64), 1)
    f = get_loss(name)
    assert f(a, b).item() == pytest.approx(f(b, a).item(), rel=1e-12)
    assert f(a, b).item() > 0


def test_kld_loss_is_the_metric_direction():
    """kld trains toward the held-out figures' KLD(target || prediction), not its mirror."""
    assert get_loss("kld")(Y_PRED, Y_TRUE).item() == pytest.approx(metrics(Y_PRED, Y_TRUE)["KLD"], rel=1e-12)
    assert get_loss("kld")(Y_TRUE, Y_PRED).item() == pytest.approx(0.2180119109433280 / 2, rel=1e-9)


def test_kld_metric_is_directional():
    kl_true_pred = metrics(Y_PRED, Y_TRUE)["KLD"]
    kl_pred_true = metrics(Y_TRUE, Y_PRED)["KLD"]
    assert kl_true_pred == pytest.approx(0.2392781815986026 / 2, rel=1e-9)
    assert kl_pred_true == pytest.approx(0.2180119109433280 / 2, rel=1e-9)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_finite_at_zeros(name, dtype):
    y_true = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.5, 0.0, 0.5, 0.0]], dtype=dtype)
    logits = torch.tensor([[-30.0, 0.0, 5.0, -200.0], [0.0, 0.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
    y_pred = torch.softmax(logits, 1)
    y_pred = torch.cat([y_pred[:, :3], torch.zeros(2, 1, dtype=dtype)], 1)  # an exact zero in both
    loss = get_loss(name)(y_pred, y_true)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(logits.grad))
    # and directly with respect to probabilities that are exactly 0
    p = torch.tensor([[0.0, 0.3, 0.7]], dtype=dtype, requires_grad=True)
    get_loss(name)(p, torch.tensor([[0.1, 0.0, 0.9]], dtype=dtype)).backward()
    assert torch.all(torch.isfinite(p.grad))


def test_get_loss_unknown_name_lists_the_names():
    with pytest.raises(UserError) as info:
        get_loss("hellinger2")
    msg = str(info.value)
    assert all(n in msg for n in LOSSES) and "hellinger2" in msg


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="same shape"):
        l1(torch.zeros(2, 3), torch.zeros(2, 4))


def _rows(n_rows: int, n_cols: int):
    return arrays(np.float64, (n_rows, n_cols), elements=hst.floats(0.0, 1.0)).filter(lambda a: np.all(a.sum(1) > 0))


@settings(max_examples=60, deadline=None)
@given(hst.integers(1, 4).flatmap(lambda n: hst.integers(1, 9).flatmap(lambda c: hst.tuples(_rows(n, c), _rows(n, c)))))
def test_property_bounds(pair):
    a, b = (v / v.sum(1, keepdims=True) for v in pair)
    ya, yb = torch.tensor(a), torch.tensor(b)
    h2 = hellinger(ya, yb).item()
    assert -1e-12 <= h2 <= 4.0 + 1e-9
    assert mdd_kld(ya, yb).item() >= -1e-12 and mdd_ed(ya, yb).item() >= 0.0
    assert mse(ya, yb).item() >= 0.0 and l1(ya, yb).item() >= 0.0
    m = metrics(a, b)
    assert m["L1max"] >= m["L1"] - 1e-15 and m["KLD"] >= -1e-12
    assert m["H2"] == pytest.approx(h2, rel=1e-12, abs=1e-15)
