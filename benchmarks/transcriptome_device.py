"""The batch method's emulator work on CPU and on CUDA, side by side in one run (for the GPU issue).

Needs only torch, numpy and scipy (no pyabc, anndata or arviz), so it runs as it is on a GPU machine:

  PYTHONPATH=. python3 benchmarks/transcriptome_device.py --genes 1024 --threads 16

Prints two tables: (1) sets/s of the shipped telegraph_mrna emulator's pmf (all 131 categories) and of its
truncated `category_probs` (the first 24 categories: a typical scRNA-seq gene) at batches of 1e3, 1e5 and 1e6
parameter sets; (2) one batch-method block per device: --genes synthetic genes (truth from the telegraph_mrna
prior, --cells cells each, exact Beta-Poisson cells) refined to ESS 500 (`refine.refine_block`), wall seconds
and genes per second. Each device's block gets the same genes and seed; their posteriors' medians are compared
(float32 rounding differs between devices, so the adaptive proposals and draws part ways after the first round:
the difference is Monte Carlo noise, largest for the broad posteriors of genes with few counts).

Measured on an NVIDIA H200 machine (16 cores, `--threads 16`). Before chunks were sized per device
(`--genes 1024`): category_probs 2.0e6 sets/s on CUDA against 8.6e5 on the 16-core CPU at batch 1e6, but the full
pmf 1.7e4 sets/s on both (its inner chunks of ~10 rows, sized for a CPU cache, made thousands of small kernel
launches); a block 13.3 s on CUDA against 16.8 s on the CPU. With accelerator-sized chunks
(`distributions.chunk_elements`, `Emulator._rows_for`; `--genes 512`): the CUDA pmf 3.0e5 / 4.0e5 / 2.7e5 sets/s
at batch 1e3 / 1e5 / 1e6 (the CPU's 7.7e3 / 1.5e4 / 1.4e4), category_probs 2.5e6 (CPU 5.4e5); a block of 512
genes 6.3 s on CUDA against 10.6 s on the CPU: the per-gene importance-sampling arithmetic in numpy, not the
emulator, now sets the pace.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from surrogate_abc.emulators.io import load_emulator
from surrogate_abc.emulators.resolve import RESOURCES
from surrogate_abc.inference.transcriptome.importance import weighted_quantiles
from surrogate_abc.inference.transcriptome.likelihood import GeneLikelihoods, full_log_pmf
from surrogate_abc.inference.transcriptome.refine import BatchSettings, refine_block, shared_sets
from surrogate_abc.inference.transcriptome.space import ParameterSpace


def synthetic_hist(em, space: ParameterSpace, genes: int, cells: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = space.low + rng.random((genes, 3)) * (space.high - space.low)
    th = space.natural(z)
    edges = em.edges[0]
    out = np.zeros((genes, len(edges)), float)
    for g, (k0, k1, v0) in enumerate(th):
        x = rng.poisson(v0 * rng.beta(k0, k1, cells))
        h, _ = np.histogram(x, bins=edges)
        out[g, :-1] = h
        out[g, -1] = np.count_nonzero(x >= edges[-1])
    return out


def throughput(em, space: ParameterSpace, device: str, sizes: list[int]) -> list[str]:
    em.to(device)
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        theta = space.natural(space.low + rng.random((n, 3)) * (space.high - space.low))
        for what, fn in (("pmf (131 categories)", lambda: em.pmf(theta)),
                         ("category_probs (24)", lambda: em.category_probs(theta, np.arange(24)))):
            fn() if n <= 1000 else None  # warm-up (CUDA kernels, allocator)
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            rows.append(f"| {device} | {what} | {n:.0e} | {n / dt:.3g} |")
    return rows


def block(em, space: ParameterSpace, hist: np.ndarray, device: str, seed: int) -> tuple[float, np.ndarray]:
    em.to(device)
    settings = BatchSettings()
    sz = shared_sets(space.box, settings.shared_sets, seed)
    t = time.perf_counter()
    lp = full_log_pmf(em, space.natural(sz))
    posts = refine_block(GeneLikelihoods(em, hist), space.box, space.natural, sz, lp, settings,
                         np.random.default_rng([seed, 1]))
    dt = time.perf_counter() - t
    med = np.array([[weighted_quantiles(p.z[:, j], p.weights, np.array([0.5]))[0] for j in range(3)] for p in posts])
    return dt, med


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genes", type=int, default=1024)
    p.add_argument("--cells", type=int, default=5000)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--sizes", default="1000,100000,1000000")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    em = load_emulator(RESOURCES / "telegraph_mrna.safetensors")
    space = ParameterSpace.of(em)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, devices {devices}", flush=True)
    print("| device | evaluation | batch | sets/s |\n|---|---|---|---|", flush=True)
    for dev in devices:
        print("\n".join(throughput(em, space, dev, sizes)), flush=True)
    hist = synthetic_hist(em, space, args.genes, args.cells, args.seed)
    print(f"\n| device | block of {args.genes} genes x {args.cells} cells | genes/s |\n|---|---|---|", flush=True)
    medians = {}
    for dev in devices:
        dt, medians[dev] = block(em, space, hist, dev, args.seed)
        print(f"| {dev} | {dt:.1f} s | {args.genes / dt:.1f} |", flush=True)
    if len(medians) == 2:
        diff = np.abs(medians["cpu"] - medians["cuda"]).max()
        print(f"\nlargest |median cpu - median cuda| over genes and parameters (log10 scale): {diff:.3g}")
    return 0


if __name__ == "__main__":
    from _main import run

    run(main)
