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
