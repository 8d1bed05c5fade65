"""Accuracy and speed of the default mRNA emulator against the exact telegraph-model (Beta-Poisson) law.

Held-out parameter sets are drawn from the emulator's own protocol prior (`Protocol.sample(n, seed)`, the
draws `simulate --seed` makes); their exact bin probabilities come from `ExactEmulator` (the closed-form
Beta-Poisson pmf summed into the protocol's bins). Keep --seed apart from the training seeds (1 and 2 in
examples/train_default_emulators.sh). Prints markdown tables: squared Hellinger H^2 (mean, median, p95, max),
KL(exact || emulator), overflow mass, the same split by the U-shaped-Beta region (k0, k1 < d0 = 1), the
worst parameter sets, and the evaluation speed.

  python benchmarks/mrna_emulator.py                                   # shipped emulator, 1000 sets, seed 901
  python benchmarks/mrna_emulator.py --emulator runs/mrna.safetensors --n-test 2000 --seed 902
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from surrogate_abc.emulators.exact import ExactEmulator
from surrogate_abc.emulators.io import load_emulator
from surrogate_abc.metrics import kl_divergence, squared_hellinger

DEFAULT = Path(__file__).resolve().parents[1] / "surrogate_abc" / "resources" / "telegraph_mrna.safetensors"


def flat(probs: np.ndarray, over: np.ndarray) -> np.ndarray:
    """(n, B) bins and (n,) overflow as (n, B + 1) rows."""
    return np.concatenate([probs.reshape(len(over), -1), over[:, None]], axis=1)


def timed(fn, theta: np.ndarray, reps: int = 1) -> tuple[np.ndarray, float]:
    """(fn(theta) as flat rows, parameter sets per second: the median over `reps` calls)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        probs, over = fn(theta)
        times.append(time.perf_counter() - t0)
    return flat(probs, over), len(theta) / float(np.median(times))


def summary_row(label: str, h2: np.ndarray, kld: np.ndarray, over: np.ndarray) -> str:
    if len(h2) == 0:
        return f"| {label} | 0 | - | - | - | - | - | - | - |"
    q = np.quantile
    return (f"| {label} | {len(h2)} | {h2.mean():.3g} | {np.median(h2):.3g} | {q(h2, 0.95):.3g} | {h2.max():.3g} "
            f"| {kld.mean():.3g} | {q(kld, 0.95):.3g} | {over.max():.2g} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emulator", default=str(DEFAULT), help="emulator file (default: the shipped telegraph_mrna)")
    ap.add_argument("--n-test", type=int, default=1000, help="held-out parameter sets drawn from the prior")
    ap.add_argument("--seed", type=int, default=901, help="seed of the held-out draws (not a training seed)")
    ap.add_argument("--worst", type=int, default=8, help="list this many worst-fitted parameter sets")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (on a shared 2-core machine 2 threads "
                    "can be slower than 1)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    emu = load_emulator(a.emulator, device=a.device)
    protocol = emu.protocol
    exact = ExactEmulator(protocol)
    theta = protocol.sample(a.n_test, a.seed)
    emu.pmf(theta[:8])  # warm-up (first call builds the binning on the device)
    pred, emu_rate = timed(emu.pmf, theta, reps=5)
    truth, exact_rate = timed(exact.pmf, theta)

    h2 = squared_hellinger(truth, pred)
    kld = np.array([kl_divergence(t, p) for t, p in zip(truth, pred)])
    over = pred[:, -1]
    names = protocol.param_names
    col = {n: theta[:, i] for i, n in enumerate(names)}
    d0 = float(protocol.fixed.get("d0", 1.0))
    u_shaped = (col["k0"] < d0) & (col["k1"] < d0)

    print(f"## {Path(a.emulator).name} vs exact Beta-Poisson ({protocol.name}), "
          f"{a.n_test} held-out prior draws, seed {a.seed}\n")
    print("| sets | n | H^2 mean | H^2 median | H^2 p95 | H^2 max | KLD mean | KLD p95 | overflow max |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(summary_row("all", h2, kld, over))
    print(summary_row("U-shaped Beta (k0, k1 < d0)", h2[u_shaped], kld[u_shaped], over[u_shaped]))
    print(summary_row("other", h2[~u_shaped], kld[~u_shaped], over[~u_shaped]))
    print(f"\nH^2 is metrics.squared_hellinger (in [0, 1]; the training loss `hellinger` is 4 H^2); KLD is "
          f"metrics.kl_divergence(exact, emulator). KLD max {kld.max():.3g}; emulator overflow mean "
          f"{over.mean():.2g}, exact overflow max {truth[:, -1].max():.2g}; rows sum to 1 within "
          f"{np.abs(pred.sum(axis=1) - 1).max():.1g}.")

    mean = col["v0"] * col["k0"] / (d0 * (col["k0"] + col["k1"]))  # Beta-Poisson mean v0 k0 / (d0 (k0 + k1))
    print(f"\n### worst {a.worst} parameter sets by H^2\n")
    print("| " + " | ".join(names) + " | mean mRNA | H^2 | KLD |")
    print("|" + "---|" * (len(names) + 3))
    for i in np.argsort(h2)[::-1][:a.worst]:
        print("| " + " | ".join(f"{theta[i, j]:.4g}" for j in range(len(names))) +
              f" | {mean[i]:.4g} | {h2[i]:.3g} | {kld[i]:.3g} |")

    print("\n### speed (parameter sets per second, one call on all sets; emulator: median of 5)\n")
    print("| method | sets/s |")
    print("|---|---|")
    print(f"| emulator ({a.device}, {a.threads} threads) | {emu_rate:,.0f} |")
    print(f"| exact closed form (numpy) | {exact_rate:,.0f} |")


if __name__ == "__main__":
    from _main import run

    run(main)
