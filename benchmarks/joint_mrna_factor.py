"""The mRNA factor of joint emulators against the exact Beta-Poisson mRNA law, and its cost, side by side.

A conditional joint emulator (gene_joint) factors p(mRNA, protein) = p(mRNA) p(protein | mRNA bin); its mRNA
factor (the attached 1-D MDN, `attach-marginal`) carries KL(mRNA) of the joint's per-cell KLD (the chain rule).
The telegraph model's mRNA law is Beta-Poisson in closed form whatever the protein does, so the factor is checked
at any number of prior draws without a simulator: per-cell KLD(exact || emulator) over the mRNA bins and the mass
beyond the last edge (losses.metrics_rows, the held-out figures' formula) (mean, median, p95, max, sets above 1e-3), then the factor's cost per parameter set in a
likelihood (its category_probs on the joint example's occupied mRNA bins, one thread, best of 5 batches of 500
sets; files timed in turn in one process).

  python benchmarks/joint_mrna_factor.py [EMULATOR ...] [--n 2000] [--seed 555]

The release before's file for comparison: `git show 0e5dbeb:surrogate_abc/resources/gene_joint.safetensors > before.safetensors`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from surrogate_abc.data.binning import bin_indices  # noqa: E402
from surrogate_abc.data.observed import load_observed  # noqa: E402
from surrogate_abc.emulators.io import load_emulator  # noqa: E402
from surrogate_abc.losses import metrics_rows  # noqa: E402
from surrogate_abc.simulate.marginal_bins import beta_poisson_bins  # noqa: E402

SHIPPED = ROOT / "surrogate_abc" / "resources" / "gene_joint.safetensors"


def factor_kld(em, theta: np.ndarray) -> np.ndarray:
    """(n,) per-cell KLD(exact || emulator) of the mRNA factor over the mRNA bins and the mass beyond them."""
    edges = np.asarray(em.edges[0], float)
    p = beta_poisson_bins(em.protocol, theta, edges)
    p = np.concatenate([p, np.clip(1.0 - p.sum(1), 0.0, None)[:, None]], axis=1)
    x = torch.as_tensor(em.features(theta), dtype=torch.float32)
    with torch.no_grad():
        q = em.model._a_bin_masses(x, *em.model.factors(x)[:2]).double().numpy()
    q = np.concatenate([q, np.clip(1.0 - q.sum(1), 0.0, None)[:, None]], axis=1)
    return metrics_rows(q, p)["KLD"]


def factor_us(em, theta: np.ndarray, rows: torch.Tensor) -> float:
    """Microseconds per parameter set of the factor's masses on the mRNA bins `rows` (its trunk and walk, as
    a likelihood runs them; best of 5 batches)."""
    model = em.model
    x = torch.as_tensor(em.features(theta), dtype=torch.float32)
    best = np.inf
    with torch.no_grad():
        for _ in range(6):
            t0 = time.perf_counter()
            model.marginal.category_probs(x * model.marginal_scale + model.marginal_shift, rows)
            best = min(best, time.perf_counter() - t0)
    return 1e6 * best / len(theta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("emulators", nargs="*", type=Path, default=[SHIPPED])
    ap.add_argument("--n", type=int, default=2000, help="prior draws for the accuracy")
    ap.add_argument("--seed", type=int, default=555)
    args = ap.parse_args()
    torch.set_num_threads(1)
    mrna = np.asarray(load_observed(ROOT / "examples" / "observed_joint.h5").counts)[:, 0]
    print(f"mRNA factor vs the exact Beta-Poisson law at {args.n} prior draws (seed {args.seed}); cost on the joint "
          f"example's occupied mRNA bins, 500 sets a batch, one thread\n")
    print("| emulator | trunk | KLD mean | median | p95 | max | sets > 1e-3 | us / set |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.emulators:
        em = load_emulator(path)
        arch = em.model.architecture().get("marginal")
        if arch is None:
            raise SystemExit(f"{path}: no attached mRNA factor (attach-marginal)")
        kl = factor_kld(em, em.protocol.sample(args.n, seed=args.seed))
        held = np.unique(bin_indices(mrna, em.edges[0]))  # the mRNA bins holding the example's cells
        rows = torch.as_tensor(held[held >= 0], dtype=torch.long)
        us = factor_us(em, em.protocol.sample(500, seed=args.seed + 1), rows)
        trunk = "-".join(str(h) for h in arch["hidden"])
        print(f"| {path.name} | {trunk} | {kl.mean():.2e} | {np.median(kl):.2e} | {np.quantile(kl, 0.95):.2e} | "
              f"{kl.max():.2e} | {(kl > 1e-3).sum()} / {len(kl)} | {us:.1f} |")


if __name__ == "__main__":
    from _main import run

    run(main)
