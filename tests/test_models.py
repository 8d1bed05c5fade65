"""Emulator networks: MDN, LSTM array, ensembles (shapes, normalisation, gradients, references)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from surrogate_abc.emulators.ensemble import LSTMEnsemble
from surrogate_abc.emulators.lstm import LSTMArray, PeepholeLSTMCell, PerBinLinear, _stick_breaking_log
from surrogate_abc.emulators.models import build_model
from surrogate_abc.metrics import hellinger_distance as hellinger

torch.set_num_threads(1)

T = 9  # categories (8 bins + overflow)
LSTM_VARIANTS = [
    dict(cell="standard", bidirectional=False, ar_order=0),
    dict(cell="standard", bidirectional=True, ar_order=0),
    dict(cell="peephole", bidirectional=False, ar_order=0),
    dict(cell="peephole", bidirectional=True, ar_order=0),
    dict(cell="standard", bidirectional=False, ar_order=2),
    dict(cell="peephole", bidirectional=False, ar_order=3),
]


def small_lstm(seed: int = 0, **kw) -> LSTMArray:
    torch.manual_seed(seed)
    return LSTMArray(3, T, embed=(8,), bin_features=5, hidden=6, **kw)


def _x(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- LSTM array
def test_per_bin_linear_equals_loop_over_bins():
    torch.manual_seed(0)
    layer = PerBinLinear(7, 4, 3)
    inp = torch.randn(5, 7, 4)
    ref = torch.stack([inp[:, t] @ layer.weight[t] + layer.bias[t] for t in range(7)], dim=1)
    torch.testing.assert_close(layer(inp), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(layer.step(inp[:, 2], 2), ref[:, 2], rtol=1e-6, atol=1e-6)
    # each bin really has its own weights: changing bin 2's weights changes only output bin 2
    with torch.no_grad():
        layer.weight[2] += 1.0
    diff = (layer(inp) - ref).abs().amax(dim=(0, 2))
    assert diff[2] > 0.1 and torch.all(diff[torch.arange(7) != 2] < 1e-6)  # the others: float rounding only


@pytest.mark.parametrize("kw", LSTM_VARIANTS, ids=lambda k: f"{k['cell']}-bi{int(k['bidirectional'])}-p{k['ar_order']}")
def test_lstm_shapes_normalisation_gradients(kw):
    model = small_lstm(**kw)
    x = _x()
    y = model(x)
    assert y.shape == (4, T) and y.dtype == torch.float32
    assert torch.all(y >= 0)
    torch.testing.assert_close(y.sum(-1), torch.ones(4), rtol=0, atol=1e-5)
    target = F.softmax(torch.randn(4, T, generator=torch.Generator().manual_seed(3)), -1)
    y_tf = model(x, y_teacher=target) if kw["ar_order"] else y
    loss = -(target * torch.log(y_tf)).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name == "out.bias" and not kw["ar_order"]:
            continue  # one bias shared by all bins' logits: a softmax is invariant to it (its gradient is 0 up to rounding)
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert build_model(model.architecture()).architecture() == model.architecture()


@pytest.mark.parametrize("cell", ["standard", "peephole"])
def test_teacher_forcing_with_own_predictions_equals_free_running(cell):
    model = small_lstm(cell=cell, ar_order=2)
    x = _x()
    with torch.no_grad():
        free = model(x)
        forced = model(x, y_teacher=free)
    torch.testing.assert_close(forced, free, rtol=1e-5, atol=1e-6)
    # and the fed-back values matter: other teacher values give another output
    with torch.no_grad():
        other = model(x, y_teacher=torch.full_like(free, 1.0 / T))
    assert (other - free).abs().max() > 1e-6


def test_peephole_cell_without_peepholes_equals_torch_lstm_cell():
    torch.manual_seed(0)
    ours = PeepholeLSTMCell(4, 5)
    ref = torch.nn.LSTMCell(4, 5)
    with torch.no_grad():
        ref.weight_ih.copy_(ours.ih.weight)
        ref.bias_ih.copy_(ours.ih.bias)
        ref.weight_hh.copy_(ours.hh.weight)
        ref.bias_hh.zero_()
    x, h, c = torch.randn(3, 4), torch.randn(3, 5), torch.randn(3, 5)
    for a, b in zip(ours(x, (h, c)), ref(x, (h, c))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        ours.peep.fill_(0.5)
    assert (ours(x, (h, c))[0] - ref(x, (h, c))[0]).abs().max() > 1e-4


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=2, max_size=12))
def test_stick_breaking_matches_explicit_product(z):
    logits = torch.tensor([z], dtype=torch.float64)
    p = _stick_breaking_log(logits).exp()[0]
    s, s_not = torch.sigmoid(logits[0]), torch.sigmoid(-logits[0])  # 1 - s without cancellation
    rest, ref = 1.0, []
    for t in range(len(z) - 1):
        ref.append(rest * s[t].item())
        rest *= s_not[t].item()
    ref.append(rest)
    np.testing.assert_allclose(p.numpy(), ref, rtol=1e-9, atol=1e-300)
    assert math.isclose(p.sum().item(), 1.0, rel_tol=1e-12)


def test_lstm_rejects_bidirectional_autoregression():
    with pytest.raises(ValueError, match="bidirectional"):
        LSTMArray(3, T, bidirectional=True, ar_order=1)


# --------------------------------------------------------------------------- LSTM ensembles
@pytest.mark.parametrize("combiner", ["dense", "per_bin"])
def test_lstm_ensemble_starts_at_geometric_mean(combiner):
    members = [small_lstm(seed=s) for s in range(3)]
    ens = LSTMEnsemble(members, T, combiner=combiner)
    x = _x()
    with torch.no_grad():
        mp = torch.stack([m(x) for m in members])
        geo = torch.exp(torch.log(mp).mean(0))
        ref = geo / geo.sum(-1, keepdim=True)
        torch.testing.assert_close(ens(x), ref, rtol=1e-5, atol=1e-6)
        u = ens.uncertainty(x)
    assert u.shape == (4,) and torch.all((u > 0) & (u <= 1))
    rebuilt = build_model(ens.architecture())
    assert rebuilt.architecture() == ens.architecture()
    # freeze members: only the combiner gets gradients
    ens.freeze_members()
    ens(x).log().sum().backward()
    assert all(p.grad is None for p in ens.members.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in ens.named_parameters() if "combine" in n)


def test_ensemble_uncertainty_zero_for_identical_members():
    m = small_lstm()
    ens = LSTMEnsemble([m, copy.deepcopy(m)], T, combiner="per_bin")
    with torch.no_grad():
        assert ens.uncertainty(_x()).abs().max() < 1e-3


def test_hellinger_reference_values():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    torch.testing.assert_close(hellinger(p, q), torch.tensor([1.0, 0.0]))
    a, b = np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.25, 0.25])
    ref = np.sqrt(1 - np.sum(np.sqrt(a * b)))
    assert math.isclose(hellinger(torch.tensor(a), torch.tensor(b)).item(), ref, rel_tol=1e-12)


# --------------------------------------------------------------------------- MDN
from scipy import stats  # noqa: E402

from surrogate_abc.emulators.distributions import Binning, get_family  # noqa: E402
from surrogate_abc.emulators.ensemble import MDNEnsemble  # noqa: E402
from surrogate_abc.emulators.mdn import MDN  # noqa: E402

COUNT_EDGES = np.array([0, 1, 2, 3, 5, 8, 12, 20, 30.0])
BINNINGS = {
    "gaussian": lambda: Binning([np.linspace(-5, 5, 11)], counts=False),
    "gamma_poisson": lambda: Binning([COUNT_EDGES]),
    "poisson_lognormal": lambda: Binning([COUNT_EDGES]),
    "bivariate_dm_gamma_poisson": lambda: Binning([np.array([0, 2, 4, 8, 12.0]), np.array([0, 3, 6, 10, 20.0])]),
}


def small_mdn(family: str, seed: int = 0, k: int = 3, **kw) -> MDN:
    torch.manual_seed(seed)
    return MDN(3, get_family(family), k, BINNINGS[family](), hidden=(16, 16), **kw)


@pytest.mark.parametrize("family", sorted(BINNINGS))
@pytest.mark.parametrize("activation", ["elu", "tanh"])
def test_mdn_shapes_normalisation_gradients(family, activation):
    model = small_mdn(family, activation=activation)
    C = model.binning.n_categories
    x = _x(5)
    log_w, params = model.mixture(x)
    assert log_w.shape == (5, 3) and params.shape == (5, 3, model.family.raw_size)
    torch.testing.assert_close(log_w.exp().sum(-1), torch.ones(5))
    y = model(x)
    assert y.shape == (5, C) and torch.all(y >= 0)
    torch.testing.assert_close(y.sum(-1), torch.ones(5), rtol=0, atol=1e-5)
    target = F.softmax(torch.randn(5, C, generator=torch.Generator().manual_seed(3)), -1)
    (-(target * torch.log(y.clamp_min(1e-30))).sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    rebuilt = build_model(model.architecture(), model.binning)
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(x), model(x))


def test_mdn_single_gamma_poisson_component_matches_scipy_nbinom():
    model = small_mdn("gamma_poisson", k=1).double()
    x = _x(3).double()
    with torch.no_grad():
        y = model(x).numpy()
        mu, r = model.mixture(x)[1][:, 0].T.numpy()
    pmf = stats.nbinom.pmf(np.arange(30)[None, :], r[:, None], (r / (r + mu))[:, None])
    idx = np.searchsorted(COUNT_EDGES, np.arange(30), side="right") - 1
    ref = np.stack([pmf[:, idx == b].sum(1) for b in range(len(COUNT_EDGES) - 1)], axis=1)
    np.testing.assert_allclose(y[:, :-1], ref, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(y[:, -1], stats.nbinom.sf(29, r, r / (r + mu)), rtol=1e-6, atol=1e-12)


def test_mdn_loc_init_sets_the_parameter_head_bias():
    model = small_mdn("gamma_poisson", k=4, loc_init=[math.log(50.0), 0.0])
    b = model.param_head.bias.detach().reshape(4, 2)
    np.testing.assert_allclose(b.mean(0).numpy(), [math.log(50.0), 0.0], atol=1e-6)
    assert torch.unique(b[:, 0]).numel() == 4  # components start apart
    with pytest.raises(ValueError, match="loc_init"):
        small_mdn("gamma_poisson", loc_init=[1.0])


@pytest.mark.parametrize("family", ["gamma_poisson", "gaussian", "bivariate_dm_gamma_poisson"])
def test_mdn_ensemble_equals_average_of_member_probabilities(family):
    members = [small_mdn(family, seed=s) for s in range(3)]
    ens = MDNEnsemble(members)
    x = _x(6)
    with torch.no_grad():
        log_w, params = ens.mixture(x)
        assert log_w.shape == (6, 9) and params.shape[1] == 9
        torch.testing.assert_close(log_w.exp().sum(-1), torch.ones(6))
        avg = torch.stack([m(x) for m in members]).mean(0)
        torch.testing.assert_close(ens(x), avg, rtol=1e-5, atol=1e-6)
        u = ens.uncertainty(x)
        ref_u = torch.stack([hellinger(m(x), avg) for m in members]).mean(0)
    torch.testing.assert_close(u, ref_u)
    assert torch.all((u > 0) & (u <= 1))
    rebuilt = build_model(ens.architecture(), members[0].binning)
    rebuilt.load_state_dict(ens.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), ens(x))


def test_mdn_ensemble_rejects_mixed_families():
    with pytest.raises(ValueError, match="family"):
        MDNEnsemble([small_mdn("gamma_poisson"), small_mdn("poisson_lognormal")])


# ------------------------------------------------------------------ conditional MDN (joint mRNA x protein)
from surrogate_abc.emulators.conditional import ConditionalMDN, bin_features  # noqa: E402
from surrogate_abc.losses import get_loss  # noqa: E402

H2 = get_loss("hellinger")  # batch mean of the squared Hellinger 2 * sum (sqrt y - sqrt x)^2

JOINT_EDGES = [np.array([0, 1, 2, 4, 7, 12.0]), np.array([0, 1, 2, 3, 5, 8, 13, 20, 30.0])]


def small_conditional(seed: int = 0, k: int = 2, dtype=torch.float64) -> ConditionalMDN:
    torch.manual_seed(seed)
    return ConditionalMDN(3, "gamma_poisson", k, Binning(JOINT_EDGES), hidden=(16, 16), head=(16, 8)).to(dtype)


def test_conditional_mdn_matches_scipy_reference():
    """Bin masses = sum over m in the m-bin of p(m) times the protein mixture of that bin, from scipy's nbinom."""
    net = small_conditional()
    x = torch.randn(3, 3, dtype=torch.float64)
    with torch.no_grad():
        out = net(x).numpy()
        log_wa, pa, log_wb, pb = (t.numpy() for t in net.factors(x))
    em, ep = JOINT_EDGES
    m, p = np.arange(int(em[-1])), np.arange(int(ep[-1]))

    def mix(log_w, par, k):  # Gamma-Poisson mixture: mean mu, shape r -> nbinom(r, r / (r + mu))
        return sum(np.exp(lw) * stats.nbinom.pmf(k, r, r / (r + mu)) for lw, (mu, r) in zip(log_w, par))

    for i in range(3):
        a = mix(log_wa[i], pa[i], m)
        ref = np.zeros((len(em) - 1, len(ep) - 1))
        for j in range(len(em) - 1):
            in_bin = (m >= em[j]) & (m < em[j + 1])
            cond = mix(log_wb[i, j], pb[i, j], p)
            ref[j] = a[in_bin].sum() * np.add.reduceat(cond, ep[:-1].astype(int))
        np.testing.assert_allclose(out[i, :-1], ref.ravel(), atol=1e-12)
        assert abs(out[i].sum() - 1.0) < 1e-12 and out[i, -1] >= 0


def test_conditional_category_probs_equal_forward_columns():
    """Only the listed m-bins and the protein integers up to the last listed bin are computed, with the same
    values as the full forward pass (any order, repeats, one category, the last bin)."""
    net = small_conditional(k=3)
    x = torch.randn(4, 3, dtype=torch.float64)
    n_bins = net.binning.n_bins
    with torch.no_grad():
        full = net(x)
        for cats in ([5, 0, 17, 17, 3], [n_bins - 1], list(range(n_bins))[::-7], [2], [n_bins, 2]):  # overflow too
            c = torch.tensor(cats)
            np.testing.assert_allclose(net.category_probs(x, c).numpy(), full[:, c].numpy(), rtol=1e-9, atol=1e-15)
        with pytest.raises(ValueError, match="categories"):
            net.category_probs(x, torch.tensor([n_bins + 1]))


def test_conditional_mdn_gradients_finite_and_rejects_bad_setups():
    net = small_conditional(dtype=torch.float32)
    x = torch.randn(5, 3)
    y = torch.softmax(torch.randn(5, net.binning.n_categories), dim=1)
    loss = H2(net(x), y)
    loss.backward()
    assert all(torch.isfinite(q.grad).all() for q in net.parameters() if q.grad is not None)
    assert net.architecture()["type"] == "mdn_conditional"
    rebuilt = build_model(net.architecture(), net.binning)
    rebuilt.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
    with pytest.raises(ValueError, match="univariate count family"):
        ConditionalMDN(3, "bivariate_dm_gamma_poisson", 2, Binning(JOINT_EDGES))
    with pytest.raises(ValueError, match="2-D count Binning"):
        ConditionalMDN(3, "gamma_poisson", 2, Binning([JOINT_EDGES[1]]))
    f = bin_features(JOINT_EDGES[0], torch.device("cpu"), torch.float64)
    assert f.shape == (5, 3) and float(f.min()) >= 0 and float(f.max()) <= 1


def test_conditional_mdn_learns_a_correlated_joint():
    """Targets: m ~ Poisson(2 + 3 u), p | m ~ Poisson(1 + 2 m): dependence the product of marginals misses.
    A small conditional MDN fits it to H2 < 0.05 in a few hundred Adam steps."""
    em, ep = JOINT_EDGES
    g = torch.Generator().manual_seed(0)
    u = torch.rand(64, 1, generator=g)
    m, p = np.arange(int(em[-1])), np.arange(int(ep[-1]))
    ys = []
    for ui in u[:, 0].numpy():
        joint = stats.poisson.pmf(m, 2 + 3 * ui)[:, None] * stats.poisson.pmf(p[None, :], 1 + 2 * m[:, None])
        b = np.add.reduceat(np.add.reduceat(joint, em[:-1].astype(int), axis=0), ep[:-1].astype(int), axis=1)
        ys.append(np.append(b.ravel(), 1 - b.sum()))
    y = torch.tensor(np.array(ys), dtype=torch.float32)
    x = torch.cat([u, u ** 2, 1 - u], dim=1) * 2 - 1
    torch.manual_seed(0)
    net = ConditionalMDN(3, "gamma_poisson", 2, Binning(JOINT_EDGES), hidden=(32, 32), head=(32,))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(400):
        opt.zero_grad()
        loss = H2(net(x), y)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05


# --------------------------------------------------------------------------- the registry
from types import SimpleNamespace  # noqa: E402

from surrogate_abc.emulators import layers, models  # noqa: E402


def test_registry_names_and_aliases():
    assert models.MODEL_TYPES == ("mdn", "mdn_conditional", "lstm_array", "mdn_ensemble", "lstm_ensemble")
    assert models.CONFIG_TYPES == ("mdn", "mdn_conditional", "lstm", "mdn_ensemble", "lstm_ensemble")
    assert models.EMULATOR_TYPES["lstm"] is models.EMULATOR_TYPES["lstm_array"]
    arch = small_lstm().architecture()
    assert build_model({**arch, "type": "lstm"}).architecture() == arch  # the config spelling rebuilds too
    with pytest.raises(ValueError, match="unknown model type 'cnn'; known: mdn, mdn_conditional, lstm_array"):
        build_model({"type": "cnn"})
    with pytest.raises(ValueError, match="unknown model type"):
        build_model({"type": ["mdn"]})
    assert models.needs_binning({"type": "mdn"}) and not models.needs_binning(arch)
    assert models.needs_binning({"type": "mdn_ensemble", "members": [{"type": "mdn"}]})
    assert not models.needs_binning({"type": ["mdn"]})


def test_config_architecture_builds_what_the_file_rebuilds():
    """A [model] section becomes an architecture dict, built by the same builder that loads files."""
    spec = SimpleNamespace(family="gamma_poisson", components=2, hidden=(8,), activation="leaky_relu", lstm={})
    arch = models.config_architecture("mdn", spec, 3, 0)
    torch.manual_seed(0)
    net = build_model(arch, BINNINGS["gamma_poisson"]())
    assert net.architecture() == {**arch, "hidden": [8]}
    lstm_spec = SimpleNamespace(hidden=(8,), activation="tanh", lstm={"bin_features": 4, "hidden": 5})
    lstm = build_model(models.config_architecture("lstm", lstm_spec, 3, T))
    assert lstm.architecture()["type"] == "lstm_array" and lstm.embed_sizes == (8,) and lstm.hidden == 5
    with pytest.raises(ValueError, match="unknown LSTM option 'units'"):
        models.config_architecture("lstm", SimpleNamespace(hidden=(8,), activation="elu", lstm={"units": 3}), 3, T)
    with pytest.raises(ValueError, match="member"):
        models.config_architecture("mdn_ensemble", spec, 3, 0)


@pytest.mark.parametrize("activation", sorted(layers.ACTIVATIONS))
def test_every_activation_builds_every_network(activation):
    mdn = small_mdn("gamma_poisson", activation=activation)
    lstm = small_lstm(activation=activation)
    for net in (mdn, lstm):
        y = net(_x())
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.sum(-1), torch.ones(4), rtol=0, atol=1e-5)
    assert isinstance(mdn.trunk[1], layers.ACTIVATIONS[activation])
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        layers.make_activation("swish")
