"""Write the shipped synthetic multi-gene smFISH-like table from known telegraph rates (deterministic: fixed seed).

  examples/genes/genes.csv        300 cells (rows) x 6 genes (columns) of mRNA counts
  examples/genes/true_rates.csv   per gene: k0, k1, v0 (d0 = 1) and burst_frequency = k0, burst_size = v0 / k1

Each gene's cells are i.i.d. draws from the telegraph model's exact stationary law (protocol telegraph_mrna):
x ~ Beta(k0, k1), n | x ~ Poisson(v0 x). The rates lie inside that protocol's prior and span low / high burst
frequency and burst size (means 1-135 mRNA per cell); `constitutive` has k0 >> k1 (the gene is almost always
on, x ~ 1), so its counts are nearly Poisson(v0) and `--compare telegraph_mrna,poisson,negbin` should favour
the Poisson model there, and the bursty models elsewhere.

Usage:  python examples/genes/make_genes.py [--out-dir examples/genes]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

N_CELLS = 300
SEED = 20261202
# gene: (k0, k1, v0); burst frequency k0 (per mRNA lifetime), burst size v0 / k1
GENES = {
    "constitutive": (8.0, 0.15, 30.0),  # on ~98% of the time: ~Poisson(29.4), Fano ~1.06
    "rare_small": (0.1, 2.0, 20.0),  # rare small bursts: mean ~1, many zeros
    "rare_large": (0.1, 5.0, 500.0),  # rare large bursts (size 100): mean ~10, Fano ~ 80
    "frequent_small": (3.0, 10.0, 30.0),  # frequent small bursts (size 3): mean ~7
    "frequent_large": (4.0, 20.0, 800.0),  # frequent large bursts (size 40): mean ~133
    "intermediate": (0.5, 4.0, 120.0),  # size 30, frequency 0.5: mean ~13
}


def draw_gene(k0: float, k1: float, v0: float, n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """n_cells exact stationary mRNA counts of the telegraph model (d0 = 1)."""
    return rng.poisson(v0 * rng.beta(k0, k1, size=n_cells)).astype(np.int64)


def make_tables(out_dir: str | Path) -> tuple[Path, Path]:
    """Write genes.csv and true_rates.csv into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {g: draw_gene(*theta, N_CELLS, np.random.default_rng([SEED, j])) for j, (g, theta) in enumerate(GENES.items())}
    genes_csv, rates_csv = out / "genes.csv", out / "true_rates.csv"
    with genes_csv.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(list(counts))
        w.writerows(np.stack(list(counts.values()), axis=1).tolist())
    with rates_csv.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["gene", "k0", "k1", "v0", "burst_frequency", "burst_size"])
        for g, (k0, k1, v0) in GENES.items():
            w.writerow([g, f"{k0:.6g}", f"{k1:.6g}", f"{v0:.6g}", f"{k0:.6g}", f"{v0 / k1:.6g}"])
    return genes_csv, rates_csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parent))
    args = ap.parse_args()
    for p in make_tables(args.out_dir):
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
