"""Differential bursting: is `surrogate-abc infer --groupby` calibrated, and how much does it find?

Synthetic experiments (seeded): --genes genes (default 400), of which --changed-fraction (default 0.2) change
between group A and group B, split equally into frequency only (k0 x 2^+-1, sign random), size only (v0 x 2^+-1
with k1 fixed: burst size x 2^+-1) and both (independent signs); in the rest B = A. Group A's truth is
log-uniform in k0 in [0.05, 4], k1 in [0.3, 30], v0 in [3, 300], redrawn until both A and B have a mean mRNA
v0 k0 / (k0 + k1) in [0.2, 50] (so A and B stay inside the prior box k0 in [0.01, 10], k1 in [0.1, 100], v0 in
[1, 1000]). One experiment per --cells value (default 300,1000,5000 cells per group), the same genes in each;
cells from the exact stationary law (x ~ Beta(k0, k1), n ~ Poisson(v0 x)), written as a CSR .h5ad whose obs
column `condition` holds A (the first n cells) or B (the next n).

surrogate-abc: `surrogate-abc infer TABLE --groupby condition --groups A,B` in a child process (its wall clock),
calls from differential.csv (up / down / unchanged / undecided at --lfc-threshold, --call-probability).
Beta-Poisson LRT (what txburst does): exact maximum-likelihood fits per group and likelihood-ratio tests of a
shared burst frequency and of a shared burst size (benchmarks/beta_poisson.py), Benjamini-Hochberg at 5% per
variable, the sign from the ML fold change; genes with fewer than 10 non-zero cells in a group are not tested.

Per experiment, method and variable (burst_frequency, burst_size, all: both together): changed genes,
discoveries (up / down calls), false discoveries (an unchanged truth or the opposite sign), FDP = false /
max(discoveries, 1), power = right-signed discoveries / changed genes, the share of unchanged genes called
`unchanged` (surrogate-abc only), seconds; then the genes not tested, LRT fits at a bound of the box (txburst
drops those genes; they are kept here), and the LRT's rejection rate on unchanged genes at p < 0.05.

  python benchmarks/differential.py                          # 400 genes x 300, 1000, 5000 cells per group
  python benchmarks/differential.py --genes 60 --cells 300   # a quick look (about a minute on 2 cores)
  python benchmarks/differential.py --skip-surrogate         # the Beta-Poisson LRT alone
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import beta_poisson  # noqa: E402

REGION = np.array([[0.05, 4.0], [0.3, 30.0], [3.0, 300.0]])  # group A's k0, k1, v0 (log-uniform)
MEAN_RANGE = (0.2, 50.0)  # mean mRNA of A and of B
KINDS = ("none", "frequency", "size", "both")
VARIABLES = beta_poisson.VARIABLES
MIN_CELLS = 10  # non-zero cells per group for the LRT to test a gene
CALLS = {"up": 1, "down": -1}
COLUMNS = ["cells", "method", "variable", "changed", "discoveries", "false", "fdp", "power", "unchanged_called",
           "seconds"]


@dataclass
class Truth:
    a: np.ndarray  # (genes, 3) group A's k0, k1, v0
    b: np.ndarray  # (genes, 3) group B's
    kind: np.ndarray  # (genes,) one of KINDS
    sign: np.ndarray  # (genes, 2) true sign of the change of burst frequency, burst size (0: unchanged)

    @property
    def genes(self) -> list[str]:
        return [f"gene{g:05d}" for g in range(len(self.a))]


def _mean(th: np.ndarray) -> np.ndarray:
    return th[:, 2] * th[:, 0] / (th[:, 0] + th[:, 1])


def draw_truth(n_genes: int, changed_fraction: float, rng: np.random.Generator) -> Truth:
    """Group A's kinetics (log-uniform in REGION), which genes change and how, and group B's kinetics; a gene
    is redrawn until both groups' mean mRNA lie in MEAN_RANGE."""
    n_changed = int(round(n_genes * changed_fraction))
    per = [n_changed // 3 + (i < n_changed % 3) for i in range(3)]
    kind = np.array(["none"] * (n_genes - n_changed) + [k for k, m in zip(KINDS[1:], per) for _ in range(m)])
    kind = kind[rng.permutation(n_genes)]
    sign = np.zeros((n_genes, 2), int)
    a, b = np.empty((n_genes, 3)), np.empty((n_genes, 3))
    todo = np.arange(n_genes)
    lo, hi = np.log(REGION[:, 0]), np.log(REGION[:, 1])
    while len(todo):
        th = np.exp(lo + rng.random((len(todo), 3)) * (hi - lo))
        s = rng.choice([-1, 1], size=(len(todo), 2))
        s[:, 0] *= np.isin(kind[todo], ("frequency", "both"))
        s[:, 1] *= np.isin(kind[todo], ("size", "both"))
        tb = th.copy()
        tb[:, 0] *= 2.0 ** s[:, 0]
        tb[:, 2] *= 2.0 ** s[:, 1]
        ok = np.ones(len(todo), bool)
        for t in (th, tb):
            ok &= (_mean(t) >= MEAN_RANGE[0]) & (_mean(t) <= MEAN_RANGE[1])
        a[todo[ok]], b[todo[ok]], sign[todo[ok]] = th[ok], tb[ok], s[ok]
        todo = todo[~ok]
    return Truth(a, b, kind, sign)


def simulate(truth: Truth, n_cells: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each gene's counts in n_cells cells of A and n_cells of B, from the exact stationary law."""
    def cells(th: np.ndarray) -> list[np.ndarray]:
        return [rng.poisson(v0 * rng.beta(k0, k1, size=n_cells)) for k0, k1, v0 in th]
    return cells(truth.a), cells(truth.b)


def write_h5ad(path: Path, genes: list[str], counts_a: list[np.ndarray], counts_b: list[np.ndarray]) -> None:
    """A CSR .h5ad: the cells of A then those of B, obs column `condition`, built column by column."""
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    rows, cols, vals = [], [], []
    for g, (xa, xb) in enumerate(zip(counts_a, counts_b)):
        x = np.concatenate([xa, xb])
        nz = np.flatnonzero(x)
        rows.append(nz.astype(np.int32))
        cols.append(np.full(len(nz), g, np.int32))
        vals.append(x[nz].astype(np.float32))
    n_a, n_b = len(counts_a[0]), len(counts_b[0])
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_a + n_b, len(genes)))
    obs = pd.DataFrame({"condition": pd.Categorical(["A"] * n_a + ["B"] * n_b, categories=["A", "B"])},
                       index=[f"cell{c:06d}" for c in range(n_a + n_b)])
    anndata.AnnData(X=m, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)


def run_surrogate(h5ad: Path, out: Path, args: argparse.Namespace) -> tuple[list[dict[str, str]], float]:
    """The rows of differential.csv of `surrogate-abc infer TABLE --groupby condition --groups A,B`, and its
    wall clock in seconds."""
    cmd = [sys.executable, "-m", "surrogate_abc", "infer", str(h5ad), "--groupby", "condition", "--groups", "A,B",
           "--out", str(out), "--seed", str(args.seed), "--quiet", "--no-plots",
           "--lfc-threshold", str(args.lfc_threshold), "--call-probability", str(args.call_probability)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    with (out / "differential.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return rows, wall


def surrogate_calls(rows: list[dict[str, str]], genes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(genes, 2) signed calls (NaN: no row) and (genes, 2) bool `unchanged` calls from differential.csv rows."""
    index = {g: i for i, g in enumerate(genes)}
    call = np.full((len(genes), 2), np.nan)
    unchanged = np.zeros((len(genes), 2), bool)
    for r in rows:
        if r["pair"] != "B_vs_A":
            continue
        i, j = index[r["gene"]], VARIABLES.index(r["variable"])
        call[i, j] = CALLS.get(r["call"], 0)
        unchanged[i, j] = r["call"] == "unchanged"
    return call, unchanged


def group_coverage(out: Path, truth: Truth) -> str:
    """How often each group's 90% intervals (OUT/groups/<group>/genes.csv) cover the true burst frequency and size."""
    parts = []
    for name, theta in (("A", truth.a), ("B", truth.b)):
        with (out / "groups" / name / "genes.csv").open() as fh:
            found = {r["gene"]: r for r in csv.DictReader(fh)}
        true = {"burst_frequency": theta[:, 0], "burst_size": theta[:, 2] / theta[:, 1]}
        for v in VARIABLES:
            hits = [float(found[g][f"{v}_q05"]) <= true[v][i] <= float(found[g][f"{v}_q95"])
                    for i, g in enumerate(truth.genes) if g in found]
            parts.append(f"{name} {v} {np.mean(hits):.3f}")
    return "; ".join(parts)


def lrt_calls(counts_a: list[np.ndarray], counts_b: list[np.ndarray],
              seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """(genes, 2) signed BH-5% calls of the Beta-Poisson LRT (NaN: not tested) and what else is reported."""
    g = len(counts_a)
    tested = np.array([min(np.count_nonzero(xa), np.count_nonzero(xb)) >= MIN_CELLS
                       for xa, xb in zip(counts_a, counts_b)])
    idx = np.flatnonzero(tested)
    res = beta_poisson.lrt(beta_poisson.histograms(counts_a[i] for i in idx),
                           beta_poisson.histograms(counts_b[i] for i in idx), seed=seed)
    call = np.full((g, 2), np.nan)
    p = np.full((g, 2), np.nan)
    for j, v in enumerate(VARIABLES):
        rej = beta_poisson.benjamini_hochberg(res.p[v], 0.05)
        call[idx, j] = np.where(rej, np.sign(res.log2fc[v]), 0)
        p[idx, j] = res.p[v]
    info = {"seconds": res.seconds, "tested": len(idx),
            "at_bound": int(np.sum(res.fit_a.at_bound | res.fit_b.at_bound)),
            "null_above_alt": {v: int(res.null_above_alt[v].sum()) for v in VARIABLES}, "p": p}
    return call, info


def score(call: np.ndarray, sign: np.ndarray, unchanged: np.ndarray | None) -> list[dict[str, Any]]:
    """Per variable and all together: changed, discoveries, false, fdp, power, unchanged_called."""
    out = []
    for name, cols in (("burst_frequency", [0]), ("burst_size", [1]), ("all", [0, 1])):
        c = np.nan_to_num(call[:, cols], nan=0.0)
        s = sign[:, cols]
        disc = c != 0
        false = disc & (c != s)
        true = disc & (c == s)
        n_changed = int(np.sum(s != 0))
        row = {"variable": name, "changed": n_changed, "discoveries": int(disc.sum()), "false": int(false.sum()),
               "fdp": false.sum() / max(int(disc.sum()), 1), "power": true.sum() / max(n_changed, 1),
               "unchanged_called": (np.nan if unchanged is None
                                    else np.sum(unchanged[:, cols] & (s == 0)) / max(int(np.sum(s == 0)), 1))}
        out.append(row)
    return out


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as a markdown table."""
    lines = ["| cells per group | method | variable | changed genes | discoveries | false | FDP | power | "
             "unchanged called | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        uc = "-" if np.isnan(r["unchanged_called"]) else f"{r['unchanged_called']:.1%}"
        lines.append(f"| {r['cells']} | {r['method']} | {r['variable']} | {r['changed']} | {r['discoveries']} | "
                     f"{r['false']} | {r['fdp']:.1%} | {r['power']:.1%} | {uc} | {r['seconds']:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genes", type=int, default=400)
    p.add_argument("--cells", default="300,1000,5000", help="cells per group, comma list (one experiment each)")
    p.add_argument("--changed-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where the tables and outputs go (default: a temporary folder)")
    p.add_argument("--out-csv", default=None)
    p.add_argument("--lfc-threshold", type=float, default=0.5)
    p.add_argument("--call-probability", type=float, default=0.95)
    p.add_argument("--skip-lrt", action="store_true")
    p.add_argument("--skip-surrogate", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="differential-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows, notes = run(args, work)
    lines = markdown(rows) + [""] + notes
    print("\n".join(lines))
    if args.out_csv:
        with open(args.out_csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    return 0


def run(args: argparse.Namespace, work: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every experiment: the table rows and the notes under it."""
    truth = draw_truth(args.genes, args.changed_fraction, np.random.default_rng(args.seed))
    genes = truth.genes
    null = truth.sign == 0
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for n in [int(c) for c in str(args.cells).split(",")]:
        start = (len(rows), len(notes))
        counts_a, counts_b = simulate(truth, n, np.random.default_rng([args.seed, n]))
        if not args.skip_surrogate:
            h5ad = work / f"cells{n}.h5ad"
            write_h5ad(h5ad, genes, counts_a, counts_b)
            found, wall = run_surrogate(h5ad, work / f"cells{n}-out", args)
            call, unchanged = surrogate_calls(found, genes)
            for r in score(call, truth.sign, unchanged):
                rows.append({"cells": n, "method": "surrogate-abc", **r, "seconds": wall})
            missing = np.isnan(call).any(1)
            wrong = "; ".join(f"{v} {int(np.sum(unchanged[:, j] & ~null[:, j]))} of {int(np.sum(~null[:, j]))}"
                              for j, v in enumerate(VARIABLES))
            notes.append(f"{n} cells per group, surrogate-abc: {int(missing.sum())} of {len(genes)} genes without "
                         f"a row (skipped in a group), {60 * (len(genes) - missing.sum()) / wall:.0f} genes per "
                         f"minute; changed genes called `unchanged`: {wrong}; each group's 90% intervals cover the "
                         f"truth for: {group_coverage(work / f'cells{n}-out', truth)}")
        if not args.skip_lrt:
            call, info = lrt_calls(counts_a, counts_b, args.seed)
            for r in score(call, truth.sign, None):
                rows.append({"cells": n, "method": "Beta-Poisson LRT (BH 5%)", **r, "seconds": info["seconds"]})
            pn = info["p"]
            size1 = "; ".join(f"{v} {np.nanmean(pn[null[:, j], j] < 0.05):.1%} of {int(np.sum(null[:, j]))}"
                              for j, v in enumerate(VARIABLES))
            notes.append(f"{n} cells per group, Beta-Poisson LRT: {info['tested']} of {len(genes)} genes tested "
                         f"(>= {MIN_CELLS} non-zero cells in each group), {60 * info['tested'] / info['seconds']:.0f} "
                         f"genes per minute; {info['at_bound']} genes with a fit at a bound of the box (txburst "
                         f"drops them; kept here); null fit above the alternative: {info['null_above_alt']}; "
                         f"unchanged genes with p < 0.05 (nominal 5%): {size1}")
        print("\n".join(markdown(rows[start[0]:])[2:] + notes[start[1]:]), flush=True)
    return rows, notes


if __name__ == "__main__":
    from _main import run

    run(main)
