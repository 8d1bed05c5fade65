"""Emulator accuracy on held-out sets with exact targets, next to the thesis' numbers (Figures 41-52).

Targets of the held-out sets come from the exact solution: the closed form for the Gaussian toy,
FSP (`surrogate-abc simulate --engine fsp` + `surrogate-abc bin`) for the gene model. Training data
are exact too (the thesis trained on SSA histograms; exact targets isolate the emulator's error).

  python benchmarks/emulator_accuracy.py                       # small CPU run (a few minutes)
  python benchmarks/emulator_accuracy.py --experiments toy_mdn,protein_mdn,protein_lstm \\
      --n-train 100000 --n-train-fsp 20000 --epochs 500 --n-test 2000 --device cuda --workdir runs/accuracy
  python benchmarks/emulator_accuracy.py --experiments protein_mdn --emulator runs/mdn.safetensors
  python benchmarks/emulator_accuracy.py --experiments joint_conditional --n-test 150 --test-seed 102 \
      --emulator surrogate_abc/resources/gene_joint.safetensors   # the shipped joint emulator's held-out row

Held-out sets whose FSP truncation missed more than --max-tail-mass (default 1e-3) have no exact target
and are left out (the count is printed), as in training.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

import torch

from surrogate_abc.cli import main as cli
from surrogate_abc.training import load_train_config, train
from surrogate_abc.training.heldout import heldout_metrics

# experiment: (protocol, training config, thesis numbers)
EXPERIMENTS = {
    "toy_mdn": ("gaussian_mixture", "train_mdn_gaussian", {"H2": 0.0005}),
    "toy_lstm": ("gaussian_mixture", "train_lstm_gaussian", {}),
    "protein_mdn": ("seed_protein", "train_mdn_protein", {"H2": 0.0073, "L1max": 0.0059, "L1": 0.00058}),
    "protein_lstm": ("seed_protein", "train_lstm_protein", {"H2": 0.47}),
    "joint_conditional": ("gene_joint", "train_default_joint", {}),
}
METRICS = ("H2", "MSE", "KLD", "L1max", "L1")


def exact_binned(protocol: str, n: int, seed: int, out: Path) -> Path:
    """A binned file of n exact distributions (engine exact for the toy, fsp for the gene model)."""
    if out.exists():
        return out
    sim = out.with_name(out.stem + ".sim.h5")
    engine = "exact" if protocol == "gaussian_mixture" else "fsp"
    with contextlib.redirect_stdout(io.StringIO()):
        for args in (["simulate", protocol, "--n", str(n), "--seed", str(seed), "--engine", engine,
                      "--out", str(sim), "--quiet"], ["bin", str(sim), "--out", str(out)]):
            if cli(args) != 0:
                raise SystemExit(f"surrogate-abc {' '.join(args)} failed")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", default="toy_mdn,protein_mdn", help=f"comma list of {', '.join(EXPERIMENTS)}")
    ap.add_argument("--n-train", type=int, default=4000, help="training sets (toy); gene model: --n-train-fsp")
    ap.add_argument("--n-train-fsp", type=int, default=None, help="training sets for gene-model experiments "
                    "(default: min(--n-train / 4, 200): FSP takes ~0.7 s per set)")
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--test-seed", type=int, default=999, help="seed of the held-out sets (keep it apart from "
                    "the training seeds)")
    ap.add_argument("--max-tail-mass", type=float, default=1e-3, help="leave out held-out sets whose FSP "
                    "truncation missed more mass than this")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--device", default=None)
    ap.add_argument("--emulator", default=None, help="evaluate this emulator file instead of training")
    ap.add_argument("--workdir", default="benchmark-output/accuracy")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.experiments.split(","):
        protocol, cfg_name, thesis = EXPERIMENTS[name]
        n_train = a.n_train if protocol == "gaussian_mixture" else (a.n_train_fsp or min(max(a.n_train // 4, 50), 200))
        t0 = time.perf_counter()
        test = exact_binned(protocol, a.n_test, a.test_seed, work / f"{protocol}_test_{a.n_test}_s{a.test_seed}.h5")
        if a.emulator:
            from surrogate_abc.emulators.io import load_emulator

            emulator, n_train, epochs = load_emulator(a.emulator, device=a.device), "?", "?"
        else:
            data = exact_binned(protocol, n_train, 1, work / f"{protocol}_train_{n_train}.h5")
            config = load_train_config(cfg_name).with_epochs(a.epochs)
            emulator, hist = train(config, data, work / f"{name}.safetensors", device=a.device, progress=True)
            epochs = len(hist["epochs"])
        m, used, left = heldout_metrics(emulator, test, a.max_tail_mass)
        rows.append((name, n_train, epochs, m, thesis, time.perf_counter() - t0))
        print(f"{name}: {used} held-out sets, {left} left out (FSP tail mass > {a.max_tail_mass:g})")
    print(f"\n## accuracy on held-out sets with exact targets (n_test = {a.n_test}, seed {a.test_seed})")
    print(f"{'experiment':<14} {'n_train':>8} {'epochs':>6} " + " ".join(f"{k:>10}" for k in METRICS) +
          "   thesis (Figs 41-52)   seconds")
    for name, n, ep, m, thesis, sec in rows:
        th = ", ".join(f"{k} {v:g}" for k, v in thesis.items()) or "-"
        print(f"{name:<14} {n!s:>8} {ep!s:>6} " + " ".join(f"{m.get(k, float('nan')):10.4g}" for k in METRICS) +
              f"   {th:<21} {sec:7.0f}")


if __name__ == "__main__":
    from _main import run

    run(main)
