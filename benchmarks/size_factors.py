"""Per-cell capture (size factors) in the batch method: genes recovered with known per-cell efficiencies, and the
bias of ignoring them, in one run.

--genes genes (default 100), truth drawn from the telegraph_mrna prior (seeded) restricted to a mean of 0.5-50
captured molecules per cell; --cells cells (default 3000) whose size factors s_i vary 5-fold (log-uniform on
[0.45, 2.25], normalised to mean 1); each cell's true mRNA from the exact stationary law (x ~ Beta(k0, k1),
n ~ Poisson(v0 x)), observed Binomial(n, beta s_i) with beta = --capture (default 0.3). Inferred with
`surrogate-abc infer TABLE --capture BETA` (the shipped emulator, batch method) three ways: with the true size
factors (`--size-factors sf`, a column of the table), with the cells' totals over the mean (`--size-factors
total`), and ignoring them (one capture for all cells). Per variable (log10 burst frequency, log10 burst size):
the coverage of the truth by the 90% intervals (with the binomial 95% band), the median log10(median / truth)
(the bias) and the median |log10 error|; and each run's wall time and the efficiency nodes it chose, with their
error against the per-cell likelihood.

  python benchmarks/size_factors.py                # about 5 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mrna_validation import binomial_band  # noqa: E402

PRIOR = {"k0": (0.01, 10.0), "k1": (0.1, 100.0), "v0": (1.0, 1000.0)}


def draw_genes(n_genes: int, beta: float, rng: np.random.Generator) -> list[dict[str, float]]:
    out: list[dict[str, float]] = []
    while len(out) < n_genes:
        t = {k: float(10 ** rng.uniform(np.log10(lo), np.log10(hi))) for k, (lo, hi) in PRIOR.items()}
        mean = beta * t["v0"] * t["k0"] / (t["k0"] + t["k1"])
        if 0.5 <= mean <= 50:
            out.append(t)
    return out


def write_table(path: Path, genes: list[dict[str, float]], sf: np.ndarray, beta: float,
                rng: np.random.Generator) -> None:
    """path: the counts and a column `sf` of size factors; path with suffix _counts.csv: the counts alone."""
    cols = {}
    for j, t in enumerate(genes):
        n = rng.poisson(t["v0"] * rng.beta(t["k0"], t["k1"], len(sf)))
        cols[f"g{j}"] = rng.binomial(n, np.minimum(beta * sf, 1.0))
    with path.open("w", newline="") as fh, path.with_name(path.stem + "_counts.csv").open("w", newline="") as fc:
        w, wc = csv.writer(fh), csv.writer(fc)
        w.writerow([*cols, "sf"])
        wc.writerow(list(cols))
        for i in range(len(sf)):
            w.writerow([*(int(c[i]) for c in cols.values()), f"{sf[i]:.6f}"])
            wc.writerow([int(c[i]) for c in cols.values()])


def run(table: Path, out: Path, beta: float, extra: list[str]) -> tuple[float, str]:
    if "total" in extra:  # the totals are over every column: the table without the size factor column
        table = table.with_name(table.stem + "_counts.csv")
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "surrogate_abc", "infer", str(table), "--capture", str(beta), "--out", str(out),
           "--no-plots", "--quiet", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    nodes = next((line for line in r.stdout.splitlines() if "efficiency node" in line), "one capture for all cells")
    return time.perf_counter() - t0, nodes


def metrics(csv_path: Path, genes: list[dict[str, float]]) -> dict[str, tuple[float, float, float]]:
    with csv_path.open() as fh:
        rows = {r["gene"]: r for r in csv.DictReader(fh)}
    out = {}
    for var, truth in (("burst_frequency", lambda t: t["k0"]), ("burst_size", lambda t: t["v0"] / t["k1"])):
        cover, bias = [], []
        for j, t in enumerate(genes):
            r = rows.get(f"g{j}")
            if r is None:
                continue
            x = truth(t)
            cover.append(float(r[f"{var}_q05"]) <= x <= float(r[f"{var}_q95"]))
            bias.append(np.log10(float(r[f"{var}_median"]) / x))
        b = np.array(bias)
        out[var] = (float(np.mean(cover)), float(np.median(b)), float(np.median(np.abs(b))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, default=100)
    ap.add_argument("--cells", type=int, default=3000)
    ap.add_argument("--capture", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="runs/size_factors")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sf = np.exp(rng.uniform(np.log(0.45), np.log(2.25), args.cells))
    sf /= sf.mean()
    genes = draw_genes(args.genes, args.capture, rng)
    table = work / "counts.csv"
    write_table(table, genes, sf, args.capture, rng)
    names = ",".join(f"g{j}" for j in range(len(genes)))
    runs = {"size factors (true, --size-factors sf)": ["--size-factors", "sf"],
            "size factors (--size-factors total)": ["--size-factors", "total"],
            "ignored (one capture for all cells)": ["--genes", names]}
    lo, hi = binomial_band(len(genes), 0.9)
    print(f"{len(genes)} genes x {args.cells} cells, size factors {sf.min():.2f}-{sf.max():.2f} (5-fold), capture "
          f"{args.capture}; 90% coverage band [{lo:.3f}, {hi:.3f}]\n")
    print("| run | variable | 90% coverage | median log10(median / truth) | median abs log10 error | wall |")
    print("|---|---|---|---|---|---|")
    notes = []
    for i, (label, extra) in enumerate(runs.items()):
        out = work / f"out{i}"
        wall, nodes = run(table, out, args.capture, extra)
        notes.append(f"{label}: {nodes}")
        for var, (cov, bias, err) in metrics(out / "genes.csv", genes).items():
            print(f"| {label} | {var} | {cov:.3f} | {bias:+.3f} | {err:.3f} | {wall:.0f} s |")
    print()
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    from _main import run

    run(main)
