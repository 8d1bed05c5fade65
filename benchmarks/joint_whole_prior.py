"""The joint emulator's error over the whole gene_joint prior, bursty corner included, against exact targets.

Held-out sets are prior draws (--seed; 102 is the shipped emulator's held-out seed) whose exact (mRNA, protein)
law comes from the generating-function engine (`simulate --engine pgf`, estimated error per probability ~1e-9),
which reaches the quarter of the prior where FSP's box at max_states 5e5 loses more than 1e-3 (large v0: rare
bursts of thousands of mRNAs) and which FSP-based benchmarks leave out. Prints, per range of v0 = transcription
rate while on, the number of sets and the per-cell KLD(exact || emulator) (nats: the shift of a log-likelihood per
cell): mean, median, 95th percentile and max, and the share of sets above 1e-3, then the worst sets.

  python benchmarks/joint_whole_prior.py [--n 150] [--seed 102] [--emulator surrogate_abc/resources/gene_joint.safetensors]
      [--workdir benchmark-output/whole_prior]     # the pgf sets take ~3-4.5 s each on one core (MPI: mpiexec -n 2)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from surrogate_abc.cli import main as cli  # noqa: E402
from surrogate_abc.emulators.io import load_emulator  # noqa: E402
from surrogate_abc.losses import metrics_rows  # noqa: E402

V0_RANGES = ((0.0, 100.0), (100.0, 1000.0), (1000.0, np.inf))


def exact_sets(n: int, seed: int, work: Path) -> Path:
    """Binned file of n gene_joint prior draws with generating-function targets (made once, then reused)."""
    out = work / f"gene_joint_pgf_{n}_s{seed}_binned.h5"
    if out.exists():
        return out
    sim = work / f"gene_joint_pgf_{n}_s{seed}.h5"
    with contextlib.redirect_stdout(io.StringIO()):
        for args in (["simulate", "gene_joint", "--engine", "pgf", "--n", str(n), "--seed", str(seed), "--out", str(sim),
                      "--quiet"], ["bin", str(sim), "--out", str(out)]):
            if cli(args) != 0:
                raise SystemExit(f"surrogate-abc {' '.join(args)} failed")
    return out


def per_set_kld(emulator, binned: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(theta, v0, KLD per set, estimated reference error per set) of the emulator against the file's targets."""
    with h5py.File(binned) as f:
        theta, hist, over = f["theta"][()], f["hist"][()], f["overflow"][()]
        err = f["tail_mass"][()] if "tail_mass" in f else np.zeros(len(theta))
    names = list(emulator.param_names)
    protocol = emulator.protocol
    v0 = protocol.rates(theta)[:, list(protocol.rate_names).index("v0")]
    probs, pred_over = emulator.pmf(theta)
    n = len(theta)
    pred = np.concatenate([np.asarray(probs).reshape(n, -1), np.asarray(pred_over)[:, None]], axis=1)
    truth = np.concatenate([hist.reshape(n, -1), over[:, None]], axis=1)
    assert names == list(protocol.param_names)
    return theta, v0, metrics_rows(pred, truth)["KLD"], err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--seed", type=int, default=102)
    ap.add_argument("--emulator", default=str(ROOT / "surrogate_abc/resources/gene_joint.safetensors"))
    ap.add_argument("--binned", default=None, help="a binned file of pgf targets to use instead of making one")
    ap.add_argument("--workdir", default="benchmark-output/whole_prior")
    a = ap.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    binned = Path(a.binned) if a.binned else exact_sets(a.n, a.seed, work)
    emulator = load_emulator(a.emulator)
    theta, v0, kld, err = per_set_kld(emulator, binned)
    source = f"from {binned}" if a.binned else f"seed {a.seed}"
    print(f"{len(kld)} parameter sets ({source}), exact targets from the generating function (largest estimated "
          f"error per probability {err.max():.1g}); emulator {a.emulator}\n")
    print("| v0 range | sets | KLD mean | median | p95 | max | sets > 1e-3 |")
    print("|---|---|---|---|---|---|---|")
    for lo, hi in V0_RANGES + ((0.0, np.inf),):
        k = kld[(v0 >= lo) & (v0 < hi)]
        label = "all" if (lo, hi) == (0.0, np.inf) else f"[{lo:g}, {hi:g})"
        if k.size:
            print(f"| {label} | {k.size} | {k.mean():.2e} | {np.median(k):.2e} | {np.quantile(k, 0.95):.2e} | "
                  f"{k.max():.2e} | {(k > 1e-3).sum()} |")
    print("\nWorst sets:\n")
    print("| " + " | ".join(emulator.param_names) + " | v0 | KLD |")
    print("|" + "---|" * (len(emulator.param_names) + 2))
    for i in np.argsort(kld)[::-1][:8]:
        print("| " + " | ".join(f"{t:.3g}" for t in theta[i]) + f" | {v0[i]:.3g} | {kld[i]:.2e} |")


if __name__ == "__main__":
    from _main import run

    run(main)
