"""Capture of spliced and unspliced RNA: one efficiency per layer and per-cell size factors (`--capture
NASCENT,MATURE`, `--size-factors` with `--layers`), measured against exact references.

    python benchmarks/splicing_capture.py [--draws 100] [--genes 20] [--cells 1000] [--seed 0]

Two tables (README, "Spliced and unspliced RNA (measured)", section 5):

a. Accuracy: at `--draws` prior draws (seed 902) with efficiencies (c_nascent, c_mature) drawn log-uniformly in
   [0.05, 1] each, the KLD per cell of the shipped emulator under that capture (RateCapture: the law at c_max v0,
   or at v0 = 0.1 below the emulator's range, the other layer thinned by the emulator's own mixture) against the
   exact law (the FSP pmf thinned per layer by binomial kernels on the integers, then binned). Beside it, the
   emulator's own KLD at the same draws without capture, for scale.
b. Inference: `--genes` synthetic genes x `--cells` cells whose cells sit at 8 size-factor levels (log-normal,
   sd 0.35, mean 1), each layer seen with 0.5 s (nascent) and 0.25 s (mature): counts drawn from the FSP law
   thinned per level. Inferred as `infer --layers unspliced,spliced --capture 0.5,0.25 --size-factors sf` runs
   (run_batch), and once without --size-factors (every cell at the mean capture): share of true values inside
   the 90% intervals, and wall time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from splicing import PARAMS, coverage  # noqa: E402  (benchmarks/splicing.py)

from surrogate_abc import load_protocol  # noqa: E402
from surrogate_abc.config import FSPSettings  # noqa: E402
from surrogate_abc.emulators.rate_capture import RateCapture  # noqa: E402
from surrogate_abc.emulators.resolve import resolve_emulator  # noqa: E402
from surrogate_abc.inference.calibration.datasets import sample_cells  # noqa: E402
from surrogate_abc.metrics import kl_divergence  # noqa: E402
from surrogate_abc.simulate.fsp import solve_stationary  # noqa: E402

CAPTURE = (0.5, 0.25)
LEVELS = 8
BOX = 400  # FSP box per species for the drawn cells (true counts; the bulk of the prior stays below ~150)


def _exact_row(args) -> np.ndarray:
    theta, c = args
    exact, _ = resolve_emulator("exact:telegraph_splicing")
    return RateCapture(exact, capture=tuple(c)).category_probs(theta[None], np.arange(exact.n_categories))[0]


def accuracy(protocol, emulator, n: int, seed: int = 902) -> tuple[np.ndarray, np.ndarray]:
    """(KLD per draw under capture, KLD per draw without) of the emulator against the exact law."""
    rng = np.random.default_rng(seed)
    theta = protocol.sample(n, seed)
    caps = 10 ** rng.uniform(np.log10(0.05), 0.0, (n, 2))
    with ProcessPoolExecutor(2) as pool:
        ref = np.array(list(pool.map(_exact_row, zip(theta, caps))))
        plain = np.array(list(pool.map(_exact_row, zip(theta, np.ones((n, 2))))))
    got = np.stack([RateCapture(emulator, capture=tuple(c)).category_probs(t[None], np.arange(ref.shape[1]))[0]
                    for t, c in zip(theta, caps)])
    own = emulator.category_probs(theta, np.arange(ref.shape[1]))
    kl = np.array([kl_divergence(r, q) for r, q in zip(ref, got)])
    kl0 = np.array([kl_divergence(r, q) for r, q in zip(plain, own)])
    return kl, kl0


def per_cell_genes(protocol, n_genes: int, n_cells: int, seed: int):
    """(truth (G, 4), nascent (cells, G), mature (cells, G), size factors (cells,)): cells at LEVELS size factors,
    each layer thinned by CAPTURE x the cell's size factor, drawn from the FSP law thinned on the integers."""
    rng = np.random.default_rng([seed, 5])
    z = stats.norm.ppf((np.arange(LEVELS) + 0.5) / LEVELS) * 0.35
    levels = np.exp(z) / np.exp(z).mean()
    sf = np.repeat(levels, n_cells // LEVELS)
    box = protocol.bounds().copy()
    box[2, 0] = 1.0
    n = np.arange(BOX)
    kernels = [[stats.binom.pmf(n[None, :], n[:, None], min(c * s, 1.0)) for c in CAPTURE] for s in levels]
    truth, u, m = [], [], []
    while len(truth) < n_genes:
        theta = 10 ** rng.uniform(np.log10(box[:, 0]), np.log10(box[:, 1]))
        rates = {**dict(zip(PARAMS, theta)), "gamma": 1.0}
        full = solve_stationary(protocol.network, rates, protocol.species, [BOX, BOX],
                                FSPSettings(tol=1e-10, max_states=1_000_000)).pmf
        cells = np.concatenate([sample_cells(kn.T @ full @ km, max(1 - (kn.T @ full @ km).sum(), 0.0),
                                             n_cells // LEVELS, rng) for kn, km in kernels])
        if np.count_nonzero(cells.sum(axis=1)) < 10:
            continue
        truth.append(theta)
        u.append(cells[:, 0])
        m.append(cells[:, 1])
    return np.array(truth), np.stack(u, 1), np.stack(m, 1), sf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--genes", type=int, default=20)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    protocol = load_protocol("telegraph_splicing")
    emulator, _ = resolve_emulator(None, ("nascent", "mature"))

    t0 = time.perf_counter()
    kl, kl0 = accuracy(protocol, emulator, args.draws)
    print(f"## a. One efficiency per layer: KLD per cell against the FSP law thinned per layer ({args.draws} prior "
          f"draws, efficiencies log-uniform in [0.05, 1]; {time.perf_counter() - t0:.0f} s)\n")
    print("| emulator | mean | median | p95 | max | share <= 1e-3 |\n|---|---|---|---|---|---|")
    for label, x in (("under capture (c_nascent, c_mature)", kl), ("without capture (same draws)", kl0)):
        print(f"| {label} | {x.mean():.1e} | {np.median(x):.1e} | {np.quantile(x, 0.95):.1e} | {x.max():.1e} | "
              f"{np.mean(x <= 1e-3):.2f} |")

    import anndata
    from scipy import sparse

    from surrogate_abc.inference.transcriptome import TableRun
    from surrogate_abc.inference.transcriptome.run import run_batch

    truth, u, m, sf = per_cell_genes(protocol, args.genes, args.cells, args.seed)
    a = anndata.AnnData(X=sparse.csr_matrix((u + m).astype(np.float32)),
                        layers={"unspliced": sparse.csr_matrix(u.astype(np.float32)),
                                "spliced": sparse.csr_matrix(m.astype(np.float32))})
    a.var_names = [f"g{i}" for i in range(len(truth))]
    a.obs["sf"] = sf
    print(f"\n## b. {len(truth)} genes x {len(sf)} cells at size factors {sf.min():.2f}-{sf.max():.2f}, captured at "
          f"{CAPTURE[0]} s (nascent) and {CAPTURE[1]} s (mature): share of true values inside the 90% intervals\n")
    print("| run | " + " | ".join(list(PARAMS) + ["burst_size"]) + " | wall |\n|---|" + "---|" * 6)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sf.h5ad"
        a.write_h5ad(path)
        for label, spec in (("--capture 0.5,0.25 --size-factors sf", "sf"), ("--capture 0.5,0.25 (mean cell)", None)):
            lines: list[str] = []
            t0 = time.perf_counter()
            done = run_batch(TableRun(str(path), layers=("unspliced", "spliced"), capture=CAPTURE, size_factors=spec,
                                      seed=args.seed), Path(tmp) / (spec or "none"), plots=False, progress=False,
                             log=lines.append)
            wall = time.perf_counter() - t0
            cov = coverage(truth, done.rows)
            print(f"| {label} | " + " | ".join(f"{share:.2f}" for share, _ in cov.values()) + f" | {wall:.0f} s |")
            for x in lines:
                if "efficiency node" in x:
                    print(f"\n({x})\n")


if __name__ == "__main__":
    from _main import run

    run(main)
