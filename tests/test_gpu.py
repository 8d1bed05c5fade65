"""GPU checks: the MDN emulator gives the same pmf on CUDA as on the CPU (skipped without CUDA)."""
import numpy as np
import pytest


@pytest.mark.gpu
def test_default_emulator_cuda_matches_cpu():
    import torch

    from surrogate_abc.emulators.io import load_emulator
    from surrogate_abc.emulators.resolve import RESOURCES

    cpu = load_emulator(RESOURCES / "gene_protein.safetensors", device="cpu")
    gpu = load_emulator(RESOURCES / "gene_protein.safetensors", device="cuda")
    theta = cpu.protocol.sample(64, seed=0)
    p_cpu, o_cpu = cpu.pmf(theta)
    p_gpu, o_gpu = gpu.pmf(theta)
    assert torch.cuda.is_available()
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-6)
    np.testing.assert_allclose(o_gpu, o_cpu, atol=1e-6)
