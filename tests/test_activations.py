"""Activation modules of the networks (emulators/layers.py): the ELU evaluated without gradients."""
import torch
import torch.nn.functional as F

from surrogate_abc.emulators import layers


def test_elu_without_gradients_equals_torchs_and_trains_as_torchs():
    """max(x, exp(min(x, 0)) - 1) under no_grad: within one float32 rounding of F.elu (exp - 1 against
    expm1), exactly x above 0; with gradients it is F.elu itself (same values, same gradients)."""
    act = layers.make_activation("elu")
    assert isinstance(act, torch.nn.ELU)
    x = torch.cat([torch.linspace(-30, 30, 100_001), torch.tensor([0.0, -1e-30, 1e-30, -0.0])])
    with torch.no_grad():
        fast = act(x)
    torch.testing.assert_close(fast, F.elu(x), rtol=0, atol=1.2e-7)
    assert torch.equal(fast[x > 0], x[x > 0])
    xg = x.clone().requires_grad_(True)
    y = act(xg)
    assert torch.equal(y, F.elu(x))
    y.sum().backward()
    ref = x.clone().requires_grad_(True)
    F.elu(ref).sum().backward()
    assert xg.grad is not None and torch.equal(xg.grad, ref.grad)


def test_activation_of_a_broadcast_sum_equals_the_activation_of_the_sum():
    """act_of_sum(act, a, b) = act(a[:, None] + b[None]): the ELU through e^a e^b within a few float32 roundings
    of F.elu (exactly the sum above 0), and act of the sum itself where the shortcut does not apply (values
    beyond 40, gradients, another activation)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 48, generator=gen) * 8, torch.randn(31, 48, generator=gen) * 3
    a[0, :4] = torch.tensor([-40.0, 40.0, 0.0, -1e-30])
    z = a[:, None, :] + b[None, :, :]
    act = layers.make_activation("elu")
    with torch.no_grad():
        fast = layers.act_of_sum(act, a, b)
    torch.testing.assert_close(fast, F.elu(z), rtol=0, atol=3.6e-7)
    assert torch.equal(fast[z > 0], z[z > 0])
    big = a.clone()
    big[1, 1] = 41.0
    with torch.no_grad():
        assert torch.equal(layers.act_of_sum(act, big, b), act(big[:, None, :] + b[None, :, :]))
        tanh = layers.make_activation("tanh")
        assert torch.equal(layers.act_of_sum(tanh, a, b), torch.tanh(z))
    ag = a.clone().requires_grad_(True)
    out = layers.act_of_sum(act, ag, b)
    assert torch.equal(out, F.elu(z))
    out.sum().backward()
    assert ag.grad is not None and torch.isfinite(ag.grad).all()
