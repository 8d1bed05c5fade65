"""Allele tables as txburst reads them: surrogate-abc's posteriors against the truth and against txburst's own
maximum-likelihood method.

Synthetic experiments (seeded): --genes genes per allele with known telegraph rates, c57's log-uniform in k0 in
[0.05, 4], k1 in [0.3, 30], v0 in [3, 300] and cast's equal to c57's or changed (benchmarks/differential.py's
draw_truth: 20% of genes change burst frequency and/or size 2x), each allele's mean mRNA in [0.2, 50]. One
experiment per --cells value (default 100,300): cells from the exact stationary law (x ~ Beta(k0, k1),
n ~ Poisson(v0 x)), 5% of the entries set missing at random, written as txburst's CSVs (genes as rows, cell ids
as the header, counts as 3.0, an empty field where missing).

surrogate-abc: `surrogate-abc infer c57.csv --compare-table cast.csv --groups c57,cast --layout genes-by-cells
--missing drop` in a child process (its wall clock); each allele's genes.csv gives the posterior median and the
90% interval (5%-95% quantiles) of burst frequency (k0), burst size (v0 / k1) and k1.
txburst's method, reimplemented from its paper's formulas (benchmarks/beta_poisson.py: the Beta-Poisson
likelihood maximised with L-BFGS-B in the same box), on each gene's non-missing cells; txburst drops the
estimates at a bound of its box (`at_bound`), counted as left out here.

Per experiment and method: genes inferred and left out, the median |log2 error| of the point estimate (posterior
median, ML estimate) of burst frequency, burst size and k1 over the genes both keep, the 90% intervals' coverage
of the truth (surrogate-abc), genes per minute. Then the genes where the ML estimate lies outside our 90% interval
(burst frequency or size), by cause: ML at a bound of the box (the prior's range), a burst size below
SMALL_BURST (k1 not identified: x ~ Beta(k0, k1) with large k1 looks Poisson, only k0 v0 / k1 is pinned), other.
--figure draws one such gene's profile likelihood surface (docs/txburst_surface.png).

  python benchmarks/txburst_comparison.py                        # 200 genes per allele x 100, 300 cells
  python benchmarks/txburst_comparison.py --genes 40 --cells 100 # a quick look
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import beta_poisson  # noqa: E402
import differential  # noqa: E402  (draw_truth: the same synthetic kinetics)

ALLELES = ("c57", "cast")
MISSING = 0.05  # share of entries missing at random
SMALL_BURST = 2.0  # burst sizes below this leave k1 unidentified
VARS = ("burst_frequency", "burst_size", "k1")


def write_allele_table(path: Path, genes: list[str], counts: np.ndarray) -> None:
    """txburst's layout: genes as rows, cell ids in the header (an empty corner), floats, empty where missing."""
    with path.open("w") as fh:
        fh.write(",".join([""] + [f"cell{j:04d}" for j in range(counts.shape[1])]) + "\n")
        for g, row in zip(genes, counts):
            fh.write(",".join([g] + ["" if np.isnan(v) else f"{v:.1f}" for v in row]) + "\n")


def simulate(theta: np.ndarray, n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """(genes, cells) float counts from the exact stationary law, MISSING of them NaN."""
    x = np.stack([rng.poisson(v0 * rng.beta(k0, k1, size=n_cells)) for k0, k1, v0 in theta]).astype(float)
    x[rng.random(x.shape) < MISSING] = np.nan
    return x


def kinetics(theta: np.ndarray) -> dict[str, np.ndarray]:
    """burst frequency, burst size and k1 of parameter sets (n, 3: k0, k1, v0)."""
    return {"burst_frequency": theta[:, 0], "burst_size": theta[:, 2] / theta[:, 1], "k1": theta[:, 1]}


def run_surrogate(tables: list[Path], out: Path, seed: int) -> float:
    cmd = [sys.executable, "-m", "surrogate_abc", "infer", str(tables[0]), "--compare-table", str(tables[1]),
           "--groups", ",".join(ALLELES), "--layout", "genes-by-cells", "--missing", "drop", "--out", str(out),
           "--seed", str(seed), "--quiet", "--no-plots"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def read_genes(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as fh:
        return {r["gene"]: r for r in csv.DictReader(fh)}


def evaluate(genes: list[str], truth: np.ndarray, counts: np.ndarray, ours: dict[str, dict[str, str]]) -> dict:
    """Per-gene estimates of both methods against the truth for one allele."""
    hist = beta_poisson.histograms(row[~np.isnan(row)] for row in counts)
    fit = beta_poisson.fit(hist)
    true = kinetics(truth)
    ml = kinetics(fit.theta)
    kept = np.array([g in ours for g in genes])
    post = {v: np.full((len(genes), 3), np.nan) for v in VARS}
    for i, g in enumerate(genes):
        if g in ours:
            for v in VARS:
                col = "k1" if v == "k1" else v
                post[v][i] = [float(ours[g][f"{col}_{q}"]) for q in ("median", "q05", "q95")]
    return {"true": true, "ml": ml, "post": post, "kept": kept, "at_bound": fit.at_bound, "ml_seconds": fit.seconds,
            "hist": hist, "theta_ml": fit.theta}


def summarise(n_cells: int, ev: list[dict], wall: float) -> list[dict]:
    """The table's rows for one experiment (both alleles together)."""
    cat = {k: np.concatenate([e[k] for e in ev]) for k in ("kept", "at_bound")}
    true = {v: np.concatenate([e["true"][v] for e in ev]) for v in VARS}
    ml = {v: np.concatenate([e["ml"][v] for e in ev]) for v in VARS}
    post = {v: np.concatenate([e["post"][v] for e in ev]) for v in VARS}
    both = cat["kept"] & ~cat["at_bound"]
    n = len(cat["kept"])
    rows = []
    for method in ("surrogate-abc", "txburst ML"):
        est = {v: post[v][:, 0] if method == "surrogate-abc" else ml[v] for v in VARS}
        row = {"cells": n_cells, "method": method, "genes": n,
               "left_out": int(n - cat["kept"].sum()) if method == "surrogate-abc" else int(cat["at_bound"].sum())}
        for v in VARS:
            row[f"err_{v}"] = float(np.median(np.abs(np.log2(est[v][both] / true[v][both]))))
        if method == "surrogate-abc":
            k = cat["kept"]
            for v in VARS:
                row[f"cov_{v}"] = float(np.mean((post[v][k, 1] <= true[v][k]) & (true[v][k] <= post[v][k, 2])))
            row["genes_per_min"] = float(cat["kept"].sum() / (wall / 60))
        else:
            row.update({f"cov_{v}": float("nan") for v in VARS})
            row["genes_per_min"] = float(n / (sum(e["ml_seconds"] for e in ev) / 60))
        rows.append(row)
    return rows


def disagreements(ev: list[dict]) -> tuple[dict[str, int], tuple[int, int] | None]:
    """Genes where the ML estimate lies outside our 90% interval of burst frequency or size, by cause; and the
    (allele, gene index) of the largest such disagreement."""
    causes = {"ML at a bound (the prior's range)": 0, f"burst size < {SMALL_BURST:g} (k1 unidentified)": 0,
              "other": 0}
    worst, worst_gap = None, 0.0
    for a, e in enumerate(ev):
        for i in np.flatnonzero(e["kept"]):
            gap = 0.0
            for v in ("burst_frequency", "burst_size"):
                lo, hi = e["post"][v][i, 1], e["post"][v][i, 2]
                x = e["ml"][v][i]
                gap = max(gap, np.log2(lo / x) if x < lo else np.log2(x / hi) if x > hi else 0.0)
            if gap <= 0:
                continue
            if e["at_bound"][i]:
                causes["ML at a bound (the prior's range)"] += 1
            elif e["true"]["burst_size"][i] < SMALL_BURST or e["post"]["burst_size"][i, 0] < SMALL_BURST:
                causes[f"burst size < {SMALL_BURST:g} (k1 unidentified)"] += 1
            else:
                causes["other"] += 1
            if gap > worst_gap:
                worst, worst_gap = (a, int(i)), gap
    return causes, worst


def surface(path: Path, hist: np.ndarray, theta_ml: np.ndarray, truth: np.ndarray, draws: np.ndarray,
            title: str) -> None:
    """Profile log-likelihood (max over k1 on a grid) over log burst frequency x log burst size, the prior box's
    edges, our posterior draws, the ML estimate and the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    box = beta_poisson.BOX
    f = np.geomspace(box[0, 0], box[0, 1], 60)
    b = np.geomspace(0.05, 500, 60)
    k1 = np.geomspace(box[1, 0], box[1, 1], 40)
    F, B, K = np.meshgrid(f, b, k1, indexing="ij")
    theta = np.stack([F.ravel(), K.ravel(), (B * K).ravel()], axis=1)
    inside = (theta[:, 2] >= box[2, 0]) & (theta[:, 2] <= box[2, 1])
    ll = np.full(len(theta), -np.inf)
    rows = np.zeros(int(inside.sum()), dtype=np.int64)
    ll[inside] = beta_poisson.log_likelihood(theta[inside], hist[None], rows)
    prof = ll.reshape(F.shape).max(axis=2)
    prof = prof - np.nanmax(prof[np.isfinite(prof)])
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    m = ax.pcolormesh(f, b, np.maximum(prof, -20).T, shading="auto", cmap="viridis")
    ax.contour(f, b, prof.T, levels=[-3.0, -1.35], colors="white", linewidths=0.8)  # ~95% and ~74% (chi2_2)
    ax.scatter(draws[:, 0], draws[:, 1], s=2, c="orange", alpha=0.3, label="surrogate-abc posterior draws")
    ax.plot(theta_ml[0], theta_ml[2] / theta_ml[1], "r^", ms=9, label="txburst ML")
    ax.plot(truth[0], truth[2] / truth[1], "w*", ms=12, mec="k", label="truth")
    ax.set(xscale="log", yscale="log", xlabel="burst frequency k0", ylabel="burst size v0 / k1", title=title)
    fig.colorbar(m, label="profile log-likelihood (max over k1) - max")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genes", type=int, default=200)
    ap.add_argument("--cells", default="100,300")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", default=None, help="PNG of one disagreeing gene's likelihood surface")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    truth = differential.draw_truth(args.genes, 0.2, rng)
    genes = truth.genes
    table, all_causes = [], []
    figure_done = False
    for n_cells in [int(c) for c in args.cells.split(",")]:
        with tempfile.TemporaryDirectory(prefix="txburst-") as tmp:
            d = Path(tmp)
            counts = [simulate(th, n_cells, rng) for th in (truth.a, truth.b)]
            tables = [d / f"{a}.csv" for a in ALLELES]
            for p, x in zip(tables, counts):
                write_allele_table(p, genes, x)
            wall = run_surrogate(tables, d / "out", args.seed)
            ev = [evaluate(genes, th, x, read_genes(d / "out" / "groups" / a / "genes.csv"))
                  for a, th, x in zip(ALLELES, (truth.a, truth.b), counts)]
            table += summarise(n_cells, ev, wall)
            causes, worst = disagreements(ev)
            all_causes.append((n_cells, causes))
            if args.figure and worst is not None and not figure_done:
                a, i = worst
                draws = _draws(d / "out" / "groups" / ALLELES[a] / "posterior.nc", genes[i])
                surface(Path(args.figure), ev[a]["hist"][i], ev[a]["theta_ml"][i], (truth.a, truth.b)[a][i], draws,
                        f"{genes[i]} ({ALLELES[a]}, {n_cells} cells)")
                figure_done = True
                print(f"figure: {args.figure} ({genes[i]}, {ALLELES[a]}, {n_cells} cells)")
    print(_format(table))
    for n_cells, causes in all_causes:
        print(f"{n_cells} cells: ML estimate outside our 90% interval (burst frequency or size): "
              + "; ".join(f"{k}: {v}" for k, v in causes.items()))


def _draws(nc: Path, gene: str) -> np.ndarray:
    import xarray as xr

    with xr.open_dataset(nc, group="posterior") as ds:
        one = ds.sel(gene=gene)
        return np.stack([one["burst_frequency"].values.ravel(), one["burst_size"].values.ravel()], axis=1)


def _format(rows: list[dict]) -> str:
    head = ("| cells | method | genes | left out | median abs log2 error: frequency / size / k1 | 90% coverage: "
            "frequency / size / k1 | genes per minute |\n|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        cov = ("-" if np.isnan(r["cov_burst_frequency"]) else
               " / ".join(f"{r[f'cov_{v}']:.2f}" for v in VARS))
        lines.append(f"| {r['cells']} | {r['method']} | {r['genes']} | {r['left_out']} | "
                     + " / ".join(f"{r[f'err_{v}']:.2f}" for v in VARS) + f" | {cov} | {r['genes_per_min']:,.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from _main import run

    run(main)
