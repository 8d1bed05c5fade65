"""Spliced and unspliced RNA (`telegraph_splicing`): the shipped emulator against the exact FSP, and inference
from two layers against the exact posterior and against one count per cell.

    python benchmarks/splicing.py [--genes 24] [--cells 1000] [--seed 0] [--skip-accuracy] [--table-genes 100]

Four tables (README, "Spliced and unspliced RNA (measured)"):

1. Accuracy: the held-out KLD per cell of the shipped emulator against the FSP on 300 prior draws (seed 901,
   never trained on), its mean, quantiles and maximum.
2. Exact check: `--genes` synthetic genes (true rates drawn log-uniformly from the prior with v0 >= 1, `--cells`
   cells each drawn from the exact FSP law) are inferred by the batch method from their two layers. The exact
   posterior is the emulator's reweighted by the exact FSP likelihood over the emulator's (the FSP solved at each
   distinct posterior draw; its ESS is printed); per parameter the distance between the two medians in units of
   the exact 90% interval's width. Done means every such distance <= 0.1.
3. Identifiability: the 90% interval widths (decades) of each parameter from both layers, from the spliced
   (mature) counts alone and from the totals (nascent + mature), the latter two with the same emulator's exact
   marginal laws (the mature marginal; the totals' law below 40, where both layers' bins are single counts, and
   P(total >= 40) as one category), so the three differ only in the data they see.
4. A whole table: `--table-genes` synthetic genes x `--table-cells` cells in one AnnData, inferred as
   `infer --layers unspliced,spliced` runs (run_batch): its wall time and the share of true values inside the 90%
   intervals.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from surrogate_abc import load_protocol  # noqa: E402
from surrogate_abc.config.protocol import Axis  # noqa: E402
from surrogate_abc.data.joint_histograms import joint_categories  # noqa: E402
from surrogate_abc.emulators.base import EmulatorBase  # noqa: E402
from surrogate_abc.emulators.resolve import resolve_emulator  # noqa: E402
from surrogate_abc.inference.calibration.datasets import exact_counts_pmf, sample_cells  # noqa: E402
from surrogate_abc.inference.transcriptome.importance import weighted_quantiles  # noqa: E402
from surrogate_abc.inference.transcriptome.likelihood import GeneLikelihoods, category_log_pmf  # noqa: E402
from surrogate_abc.inference.transcriptome.refine import BatchSettings, refine_block, shared_sets  # noqa: E402
from surrogate_abc.inference.transcriptome.space import ParameterSpace  # noqa: E402
from surrogate_abc.metrics import kl_divergence  # noqa: E402

PARAMS = ("k0", "k1", "v0", "beta")
TOTAL_CAP = 40  # totals below this are exact sums of single-count bins of both layers


class MatureMarginal(EmulatorBase):
    """The mature (second) species' marginal of a joint emulator: its pmf summed over the nascent bins (cells
    beyond the nascent grid stay in the overflow)."""

    def __init__(self, inner):
        self.inner, self.source, self.metadata = inner, f"{inner.source} (mature marginal)", dict(inner.metadata)
        self.protocol = replace(inner.protocol, axes=(inner.protocol.axes[1],))

    def _flat_probs(self, arr: np.ndarray) -> np.ndarray:
        p, over = self.inner.pmf(arr)
        return np.concatenate([p.sum(axis=1), over[:, None]], axis=1)


class Totals(EmulatorBase):
    """Nascent + mature of a joint emulator: P(total = t) for t < TOTAL_CAP (sums over single-count bins), then
    P(total >= TOTAL_CAP) as the overflow."""

    def __init__(self, inner):
        self.inner, self.source, self.metadata = inner, f"{inner.source} (totals)", dict(inner.metadata)
        for e in inner.edges:
            if not np.array_equal(e[:TOTAL_CAP + 1], np.arange(TOTAL_CAP + 1.0)):
                raise ValueError("Totals needs single-count bins below TOTAL_CAP in both species")
        self.protocol = replace(inner.protocol, axes=(Axis("total", np.arange(TOTAL_CAP + 1.0), TOTAL_CAP),))

    def _flat_probs(self, arr: np.ndarray) -> np.ndarray:
        p, _ = self.inner.pmf(arr)
        sub = p[:, :TOTAL_CAP, :TOTAL_CAP]
        n, m = np.meshgrid(np.arange(TOTAL_CAP), np.arange(TOTAL_CAP), indexing="ij")
        t = (n + m).ravel()
        flat = sub.reshape(len(arr), -1)[:, t < TOTAL_CAP]
        probs = np.stack([flat[:, t[t < TOTAL_CAP] == k].sum(axis=1) for k in range(TOTAL_CAP)], axis=1)
        return np.concatenate([probs, np.clip(1.0 - probs.sum(axis=1), 0.0, 1.0)[:, None]], axis=1)


def hist_joint(counts: np.ndarray, edges) -> np.ndarray:
    n_cat = (len(edges[0]) - 1) * (len(edges[1]) - 1) + 1
    return np.bincount(joint_categories(counts[:, 0], counts[:, 1], edges), minlength=n_cat).astype(float)


def hist_1d(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    i = np.minimum(np.searchsorted(edges, x, side="right") - 1, len(edges) - 1)
    return np.bincount(i, minlength=len(edges)).astype(float)


def synthetic_genes(protocol, n_genes: int, n_cells: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """True rates (log-uniform within the prior, v0 >= 1) and each gene's (cells, 2) counts from the exact law."""
    rng = np.random.default_rng([seed, 28])
    box = protocol.bounds().copy()
    box[protocol.param_names.index("v0"), 0] = 1.0
    truth, counts = [], []
    while len(truth) < n_genes:
        theta = 10 ** rng.uniform(np.log10(box[:, 0]), np.log10(box[:, 1]))
        law = exact_counts_pmf(protocol, theta, [a.cap for a in protocol.axes])
        c = sample_cells(law.pmf, law.overflow, n_cells, rng)
        if np.count_nonzero(c.sum(axis=1)) < 10:  # skipped by infer (fewer than 10 non-zero cells)
            continue
        truth.append(theta)
        counts.append(c)
    return np.array(truth), counts


def posteriors(emulator, hists: np.ndarray, settings: BatchSettings, seed: int):
    """Batch posteriors (the method of `infer --method batch`) of the genes' histograms under `emulator`."""
    space = ParameterSpace.of(emulator)
    z = shared_sets(space.box, settings.shared_sets, seed)
    cats = np.flatnonzero(hists.sum(axis=0) > 0)
    lik = GeneLikelihoods(emulator, hists, cats)
    lp = category_log_pmf([emulator], space.natural(z), cats)
    posts = refine_block(lik, space.box, space.natural, z, lp, settings, np.random.default_rng(seed))
    return space, posts


def _exact_loglik(args) -> np.ndarray:
    theta, hist = args
    em, _ = resolve_emulator("exact:telegraph_splicing")
    return GeneLikelihoods(em, hist[None]).at(np.zeros(len(theta), np.int64), theta)


def held_out_kld(emulator, protocol, n: int = 300, seed: int = 901) -> np.ndarray:
    """KLD per set of the emulator against the binned FSP pmf at the first n prior draws of `seed`."""
    exact, _ = resolve_emulator("exact:telegraph_splicing")
    theta = protocol.sample(n, seed)
    with ProcessPoolExecutor(2) as pool:
        parts = list(pool.map(_exact_flat, np.array_split(theta, 8)))
    ref = np.concatenate(parts)
    probs, over = emulator.pmf(theta)
    em = np.concatenate([probs.reshape(n, -1), over[:, None]], axis=1)
    return np.array([kl_divergence(r, q) for r, q in zip(ref, em)])


def _exact_flat(theta: np.ndarray) -> np.ndarray:
    exact, _ = resolve_emulator("exact:telegraph_splicing")
    probs, over = exact.pmf(theta)
    return np.concatenate([probs.reshape(len(theta), -1), over[:, None]], axis=1)


def interval(x: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    q05, q50, q95 = weighted_quantiles(x, w, np.array([0.05, 0.5, 0.95]))
    return float(q05), float(q50), float(q95)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, default=24)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exact-draws", type=int, default=300, help="posterior draws per gene solved by FSP")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--table-genes", type=int, default=100, help="section 4: genes of the whole-table run (0: skip)")
    ap.add_argument("--table-cells", type=int, default=2000)
    args = ap.parse_args()
    protocol = load_protocol("telegraph_splicing")
    emulator, _ = resolve_emulator(None, ("nascent", "mature"))
    print(f"emulator: {emulator.source}")

    if not args.skip_accuracy:
        t0 = time.perf_counter()
        kl = held_out_kld(emulator, protocol)
        print(f"\n## 1. Held-out KLD per cell against the FSP (300 prior draws, seed 901; {time.perf_counter() - t0:.0f} s)\n")
        print("| mean | median | p90 | p95 | max | share <= 1e-3 |\n|---|---|---|---|---|---|")
        print(f"| {kl.mean():.1e} | {np.median(kl):.1e} | {np.quantile(kl, 0.9):.1e} | {np.quantile(kl, 0.95):.1e} | "
              f"{kl.max():.1e} | {np.mean(kl <= 1e-3):.2f} |")

    t0 = time.perf_counter()
    truth, counts = synthetic_genes(protocol, args.genes, args.cells, args.seed)
    edges = emulator.edges
    joint = np.stack([hist_joint(c, edges) for c in counts])
    settings = BatchSettings()
    space, posts = posteriors(emulator, joint, settings, args.seed)
    t_batch = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    jobs, draws = [], []
    for post, h in zip(posts, joint):
        idx = np.unique(rng.choice(len(post.z), size=args.exact_draws, p=post.weights))
        draws.append(idx)
        jobs.append((space.natural(post.z[idx]), h))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        exact_ll = list(pool.map(_exact_loglik, jobs))
    t_exact = time.perf_counter() - t0
    print(f"\n## 2. Two layers against the exact FSP posterior ({args.genes} genes x {args.cells} cells; batch "
          f"{t_batch:.0f} s with the exact draws of the cells, FSP reweighting {t_exact:.0f} s)\n")
    names = list(PARAMS) + ["burst_size"]
    worst = {k: 0.0 for k in names}
    worst_gene = {k: -1 for k in names}
    within = {k: 0 for k in names}
    ess = []
    for g, (post, idx, (theta, h), ll_exact) in enumerate(zip(posts, draws, jobs, exact_ll)):
        ll_em = GeneLikelihoods(emulator, h[None]).at(np.zeros(len(theta), np.int64), theta)
        # draws idx were resampled from the emulator posterior: weight each distinct draw by its multiplicity
        # there (its posterior weight) times the exact-over-emulator likelihood ratio
        lw = np.log(post.weights[idx]) + ll_exact - ll_em
        w_exact = np.exp(lw - lw.max())
        w_exact /= w_exact.sum()
        w_em = post.weights[idx] / post.weights[idx].sum()
        ess.append(1.0 / np.sum(w_exact ** 2))
        values = {k: theta[:, j] for j, k in enumerate(PARAMS)}
        values["burst_size"] = theta[:, 2] / theta[:, 1]
        for k, x in values.items():
            lo, med_x, hi = interval(np.log10(x), w_exact)
            _, med_e, _ = interval(np.log10(x), w_em)
            d = abs(med_e - med_x) / max(hi - lo, 1e-12)
            if d > worst[k]:
                worst[k], worst_gene[k] = d, g
            within[k] += d <= 0.1
    print("| parameter | genes with \\|median - exact median\\| <= 0.1 x exact 90% width | largest distance (widths) | "
          "at the gene with true k0, k1, v0, beta |")
    print("|---|---|---|---|")
    for k in names:
        print(f"| {k} | {within[k]} / {len(posts)} | {worst[k]:.4f} | "
              f"{', '.join(f'{x:.3g}' for x in truth[worst_gene[k]])} |")
    print(f"\nESS of the exact reweighting: median {np.median(ess):.0f}, min {np.min(ess):.0f} (of up to "
          f"{args.exact_draws} distinct draws)")

    print(f"\n## 3. What two layers identify: 90% interval widths (decades), median over {args.genes} genes\n")
    mature = MatureMarginal(emulator)
    totals = Totals(emulator)
    hists = {"both layers": (emulator, joint),
             "spliced alone": (mature, np.stack([hist_1d(c[:, 1], mature.edges[0]) for c in counts])),
             "totals": (totals, np.stack([hist_1d(c.sum(axis=1), totals.edges[0]) for c in counts]))}
    widths = {}
    for label, (em, h) in hists.items():
        sp_, ps = (space, posts) if label == "both layers" else posteriors(em, h, settings, args.seed)
        rows = []
        for p in ps:
            nat = sp_.natural(p.z)
            vals = [np.log10(nat[:, j]) for j in range(4)] + [np.log10(nat[:, 2] / nat[:, 1])]
            rows.append([interval(v, p.weights)[2] - interval(v, p.weights)[0] for v in vals])
        widths[label] = np.median(np.array(rows), axis=0)
    prior = np.log10(protocol.bounds()[:, 1] / protocol.bounds()[:, 0])
    print("| data | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    print("| prior | " + " | ".join(f"{w:.2f}" for w in prior) + " | - |")
    for label, w in widths.items():
        print(f"| {label} | " + " | ".join(f"{x:.2f}" for x in w) + " |")
    over = np.mean([np.mean(c.sum(axis=1) >= TOTAL_CAP) for c in counts])
    print(f"\n(cells with a total >= {TOTAL_CAP}, one category in the totals' likelihood: {100 * over:.1f}%)")
    if args.table_genes:
        whole_table(protocol, args.table_genes, args.table_cells, args.seed + 1)


def whole_table(protocol, n_genes: int, n_cells: int, seed: int) -> None:
    """Section 4: `infer --layers` (run_batch, as the command line runs it) on one AnnData of n_genes synthetic
    genes; its wall time and the share of true values inside the 90% intervals."""
    import tempfile

    import anndata
    from scipy import sparse

    from surrogate_abc.inference.transcriptome import TableRun
    from surrogate_abc.inference.transcriptome.run import run_batch

    truth, counts = synthetic_genes(protocol, n_genes, n_cells, seed)
    u = sparse.csr_matrix(np.stack([c[:, 0] for c in counts], axis=1).astype(np.float32))
    s = sparse.csr_matrix(np.stack([c[:, 1] for c in counts], axis=1).astype(np.float32))
    a = anndata.AnnData(X=u + s, layers={"unspliced": u, "spliced": s})
    a.var_names = [f"g{i}" for i in range(n_genes)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layers.h5ad"
        a.write_h5ad(path)
        t0 = time.perf_counter()
        done = run_batch(TableRun(str(path), layers=("unspliced", "spliced")), Path(tmp) / "out", plots=False,
                         progress=False, log=lambda _m: None)
        wall = time.perf_counter() - t0
    rows = {r["gene"]: r for r in done.rows}
    by_method: dict[str, int] = {}
    for r in done.rows:
        by_method[r["method"]] = by_method.get(r["method"], 0) + 1
    print(f"\n## 4. A whole table: {n_genes} genes x {n_cells} cells, infer --layers (batch), {wall:.0f} s wall "
          f"({len(rows)} inferred: {by_method}; {n_genes - len(rows)} skipped)\n")
    print("| variable | true value inside the 90% interval |\n|---|---|")
    for k, (share, n) in coverage(truth, done.rows).items():
        print(f"| {k} | {share:.3f} of {n} |")


def coverage(truth: np.ndarray, rows: list[dict]) -> dict[str, tuple[float, int]]:
    """{variable: (share of the genes g<i> whose true value lies inside their 90% interval, genes inferred)}."""
    by = {r["gene"]: r for r in rows}
    out = {}
    for k in list(PARAMS) + ["burst_size"]:
        inside = []
        for i, theta in enumerate(truth):
            r = by.get(f"g{i}")
            if r is not None:
                t = theta[2] / theta[1] if k == "burst_size" else theta[PARAMS.index(k)]
                inside.append(r[f"{k}_q05"] <= t <= r[f"{k}_q95"])
        out[k] = (float(np.mean(inside)), len(inside))
    return out


if __name__ == "__main__":
    from _main import run

    run(main)
