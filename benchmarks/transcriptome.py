"""Whole transcriptomes: the batch method's accuracy against the exact posterior, and its speed, in one run.

Accuracy: --genes-accuracy genes (default 200), truth drawn from the whole telegraph_mrna prior (seeded),
--cells-accuracy cells each (default 5000) from the exact stationary law (x ~ Beta(k0, k1), n ~ Poisson(v0 x)),
inferred with `surrogate-abc infer TABLE --method batch` (the shipped emulator). The reference is the exact
Beta-Poisson posterior with the same prior, computed by importance sampling with the exact likelihood to an
ESS of --reference-ess (default 4000; `exact:telegraph_mrna` through the same refinement, its Monte Carlo error
a fraction of the tolerance). Per gene and for log10 burst frequency and log10 burst size: |batch - exact| /
exact 90% width for the median, 5% and 95% quantiles (the share within 10%), and the coverage of the truth by
both posteriors' 90% intervals with the binomial 95% band.

Speed: --genes-speed genes (default 2000) x --cells-speed cells (default 5000) from the same prior, in a
sparse .h5ad, by the batch method (the whole command, one process on all cores), against `--method smc` on
--smc-genes of them (default 20; today's per-gene path with its defaults, plots off, the cores in parallel),
extrapolated to all genes;
peak memory of each command (its maximum resident set size). Then --genes-large x --cells-large (default
20,000 x 10,000) from a 10x-like prior (the telegraph prior restricted to mean mRNA <= 5, so the matrix is
sparse as scRNA-seq is), from a CSR .h5ad (--skip-large leaves it out).

  python benchmarks/transcriptome.py                       # everything (about 40 minutes on 2 cores)
  python benchmarks/transcriptome.py --skip-large --genes-speed 500 --genes-accuracy 50   # a quick look
"""
from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mrna_validation import binomial_band  # noqa: E402

PROTOCOL = "telegraph_mrna"
TOL = 0.1
STATS = {"median": 0.5, "q05": 0.05, "q95": 0.95}


def draw_truth(n: int, rng: np.random.Generator, max_mean: float | None = None) -> np.ndarray:
    """(n, 3) k0, k1, v0 from the telegraph_mrna prior (log-uniform boxes), optionally with mean mRNA <= max_mean."""
    from surrogate_abc.config import load_protocol

    box = load_protocol(PROTOCOL).bounds()
    lo, hi = np.log10(box[:, 0]), np.log10(box[:, 1])
    out = []
    while len(out) < n:
        th = 10.0 ** (lo + rng.random((4 * n, 3)) * (hi - lo))
        if max_mean is not None:
            th = th[th[:, 2] * th[:, 0] / (th[:, 0] + th[:, 1]) <= max_mean]
        out += list(th)
    return np.array(out[:n])


def write_h5ad(path: Path, truth: np.ndarray, n_cells: int, rng: np.random.Generator) -> None:
    """A CSR .h5ad of exact telegraph cells, one gene per row of truth, built column by column (never dense)."""
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    rows, cols, vals = [], [], []
    for g, (k0, k1, v0) in enumerate(truth):
        x = rng.poisson(v0 * rng.beta(k0, k1, size=n_cells))
        nz = np.flatnonzero(x)
        rows.append(nz.astype(np.int32))
        cols.append(np.full(len(nz), g, np.int32))
        vals.append(x[nz].astype(np.float32))
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_cells, len(truth)))
    names = [f"gene{g:05d}" for g in range(len(truth))]
    anndata.AnnData(X=m, var=pd.DataFrame(index=names)).write_h5ad(path)


def run_cli(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident memory in GB) of one surrogate-abc command in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "surrogate_abc", *args], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1e6  # ru_maxrss is in kB on Linux; the max over children so far


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as fh:
        return {r["gene"]: r for r in csv.DictReader(fh)}


def exact_reference(h5ad: Path, genes: list[str], ess: float, seed: int) -> dict[str, dict[str, float]]:
    """Exact-posterior quantiles of log10 burst frequency and size per gene (importance sampling, exact likelihood)."""
    import dataclasses

    from surrogate_abc.data.gene_histograms import gene_histograms
    from surrogate_abc.emulators.resolve import resolve_emulator
    from surrogate_abc.inference.transcriptome.importance import weighted_quantiles
    from surrogate_abc.inference.transcriptome.likelihood import GeneLikelihoods, full_log_pmf
    from surrogate_abc.inference.transcriptome.refine import BatchSettings, refine_block, shared_sets
    from surrogate_abc.inference.transcriptome.space import ParameterSpace
    from surrogate_abc.networks.bursts import burst_kinetics

    em, _ = resolve_emulator(f"exact:{PROTOCOL}")
    space = ParameterSpace.of(em)
    data = gene_histograms(h5ad, em.edges[0], genes)
    settings = dataclasses.replace(BatchSettings(), ess_target=ess, min_ess=ess, max_rounds=20, max_draws=8192)
    sz = shared_sets(space.box, settings.shared_sets, seed + 1)
    lp = full_log_pmf(em, space.natural(sz))
    out = {}
    for s in range(0, len(genes), 50):
        idx = np.arange(s, min(s + 50, len(genes)))
        posts = refine_block(GeneLikelihoods(em, data.hist[idx]), space.box, space.natural, sz, lp, settings,
                             np.random.default_rng([seed, 7, s]))
        for i, p in zip(idx, posts):
            bk = burst_kinetics(em.protocol, space.natural(p.z))
            row = {"ess": p.ess}
            for v in ("burst_frequency", "burst_size"):
                q = weighted_quantiles(np.log10(bk[v]), p.weights, np.array(list(STATS.values())))
                row.update({f"{v}_{k}": float(x) for k, x in zip(STATS, q)})
            out[genes[i]] = row
        print(f"  exact reference: {min(s + 50, len(genes))}/{len(genes)} genes", flush=True)
    return out


def accuracy(args, work: Path) -> list[str]:
    rng = np.random.default_rng(args.seed)
    truth = draw_truth(args.genes_accuracy, rng)
    h5ad = work / "accuracy.h5ad"
    write_h5ad(h5ad, truth, args.cells_accuracy, rng)
    out = work / "accuracy-batch"
    wall, _ = run_cli(["infer", str(h5ad), "--out", str(out), "--quiet", "--seed", str(args.seed)])
    rows = read_rows(out / "genes.csv")
    genes = sorted(rows)
    t = time.perf_counter()
    ref = exact_reference(h5ad, genes, args.reference_ess, args.seed)
    t_ref = time.perf_counter() - t
    true = {f"gene{g:05d}": (np.log10(k0), np.log10(v0 / k1)) for g, (k0, k1, v0) in enumerate(truth)}
    lines = [f"Accuracy: {len(genes)} of {len(truth)} genes inferred ({len(truth) - len(genes)} skipped: fewer than "
             f"10 non-zero cells) x {args.cells_accuracy} cells; batch {wall:.0f} s, exact reference {t_ref:.0f} s "
             f"(ESS min {min(r['ess'] for r in ref.values()):.0f})", "",
             "| variable (log10) | statistic | max | median | within 10% of the exact 90% width |", "|---|---|---|---|---|"]
    cover = {}
    for j, v in enumerate(("burst_frequency", "burst_size")):
        width = np.array([ref[g][f"{v}_q95"] - ref[g][f"{v}_q05"] for g in genes])
        for k in STATS:
            b = np.log10([float(rows[g][f"{v}_{k}"]) for g in genes])
            e = np.array([ref[g][f"{v}_{k}"] for g in genes])
            err = np.abs(b - e) / width
            lines.append(f"| {v} | {k} | {err.max():.3f} | {np.median(err):.3f} | "
                         f"{np.mean(err <= TOL):.1%} ({int(np.sum(err <= TOL))}/{len(genes)}) |")
        t_ = np.array([true[g][j] for g in genes])
        lo_b = np.log10([float(rows[g][f"{v}_q05"]) for g in genes])
        hi_b = np.log10([float(rows[g][f"{v}_q95"]) for g in genes])
        lo_e = np.array([ref[g][f"{v}_q05"] for g in genes])
        hi_e = np.array([ref[g][f"{v}_q95"] for g in genes])
        cover[v] = (np.mean((t_ >= lo_b) & (t_ <= hi_b)), np.mean((t_ >= lo_e) & (t_ <= hi_e)))
    band = binomial_band(len(genes), 0.9)
    lines += ["", f"90% coverage of the truth (binomial 95% band [{band[0]:.3f}, {band[1]:.3f}]): " + "; ".join(
        f"{v} batch {c[0]:.3f}, exact {c[1]:.3f}" for v, c in cover.items())]
    ess = np.array([float(rows[g]["ess"]) for g in genes])
    lines.append(f"batch ESS per gene: min {ess.min():.0f}, median {np.median(ess):.0f}; "
                 f"rerun with ABC-SMC: {sum(rows[g]['method'] == 'smc' for g in genes)}")
    return lines


def speed(args, work: Path) -> list[str]:
    rng = np.random.default_rng(args.seed + 1)
    truth = draw_truth(args.genes_speed, rng)
    h5ad = work / "speed.h5ad"
    write_h5ad(h5ad, truth, args.cells_speed, rng)
    wall_b, mem_b = run_cli(["infer", str(h5ad), "--out", str(work / "speed-batch"), "--quiet", "--no-plots"])
    rows = read_rows(work / "speed-batch" / "genes.csv")
    n_b = len(rows)
    genes = sorted(rows)[: args.smc_genes]
    wall_s, mem_s = run_cli(["infer", str(h5ad), "--method", "smc", "--genes", ",".join(genes), "--out",
                             str(work / "speed-smc"), "--quiet", "--no-plots"])
    per_gene = wall_s / len(genes)
    lines = ["| run | genes x cells | wall | genes per minute | peak memory |", "|---|---|---|---|---|",
             f"| batch (all genes) | {n_b} x {args.cells_speed} | {wall_b:.0f} s | {60 * n_b / wall_b:.0f} | "
             f"{mem_b:.2f} GB |",
             f"| smc ({len(genes)} genes) | {len(genes)} x {args.cells_speed} | {wall_s:.0f} s | "
             f"{60 / per_gene:.1f} | {mem_s:.2f} GB |",
             f"| smc, extrapolated to {n_b} genes | | {per_gene * n_b:.0f} s | | |",
             "", f"batch / smc speed-up: {per_gene * n_b / wall_b:.1f}x"]
    if not args.skip_large:
        rng = np.random.default_rng(args.seed + 2)
        truth = draw_truth(args.genes_large, rng, max_mean=5.0)
        big = work / "large.h5ad"
        t = time.perf_counter()
        write_h5ad(big, truth, args.cells_large, rng)
        made = time.perf_counter() - t
        wall_l, mem_l = run_cli(["infer", str(big), "--out", str(work / "large-batch"), "--quiet", "--no-plots"])
        n_l = len(read_rows(work / "large-batch" / "genes.csv"))
        lines.insert(4, f"| batch, 10x-like sparse .h5ad ({args.genes_large} genes, {n_l} inferred) | "
                        f"{args.genes_large} x {args.cells_large} | {wall_l:.0f} s | {60 * n_l / wall_l:.0f} | "
                        f"{mem_l:.2f} GB (max so far) |")
        lines.append(f"(the large table took {made:.0f} s to make; peak memory is the largest of the commands run "
                     "so far, as the kernel reports it for child processes)")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genes-accuracy", type=int, default=200)
    p.add_argument("--cells-accuracy", type=int, default=5000)
    p.add_argument("--reference-ess", type=float, default=4000.0)
    p.add_argument("--genes-speed", type=int, default=2000)
    p.add_argument("--cells-speed", type=int, default=5000)
    p.add_argument("--smc-genes", type=int, default=20)
    p.add_argument("--genes-large", type=int, default=20000)
    p.add_argument("--cells-large", type=int, default=10000)
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="benchmark-transcriptome")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    lines = []
    if not args.skip_accuracy:
        lines += accuracy(args, work) + [""]
        print("\n".join(lines), flush=True)
    if not args.skip_speed:
        lines += speed(args, work)
    print("\n".join(lines))
    (work / "transcriptome.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    from _main import run

    run(main)
