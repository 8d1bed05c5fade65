"""Validation of an mRNA (telegraph_mrna) emulator against the exact Beta-Poisson likelihood, gene by gene.

Draws --datasets parameter sets from the whole telegraph_mrna prior (k0 ~ LogU(0.01, 10), k1 ~ LogU(0.1, 100),
v0 ~ LogU(1, 1000), d0 = 1; seeded), --cells cells each from the exact stationary law (x ~ Beta(k0, k1),
n | x ~ Poisson(v0 x)), writes them as one multi-gene count table and runs `infer_genes` on it twice, with the
emulator under test and with `exact:telegraph_mrna` (same prior, settings and seed). A prior draw whose cells
have fewer than --min-nonzero nonzero counts (nothing to fit: a silent gene) is skipped and the next draw of the
same seeded stream is used instead; the output says how many were skipped.

Per dataset and for log10 burst_frequency and log10 burst_size, the posterior median and 5% / 95% quantiles of
the emulator's posterior are compared with the exact posterior's: |emulator - exact| / (exact q95 - exact q05)
(log10 scale; quantiles commute with log10, so genes.csv's quantiles are used). The table gives the max and
median over datasets and the count within 10%, the coverage of the true value by both posteriors' 90% intervals
(with the binomial 95% band for the number of datasets) and the wall time per gene. With --mc-repeat (default)
the exact posterior is run a second time with another seed and the same differences exact-vs-exact estimate
the Monte Carlo noise of the ABC itself: emulator-vs-exact differences of that size are not the emulator's.

  python benchmarks/mrna_validation.py                                  # 20 datasets, shipped emulator
  python benchmarks/mrna_validation.py --emulator runs/mrna.safetensors --datasets 50 --jobs 8
  python benchmarks/mrna_validation.py --emulator exact:telegraph_mrna --datasets 4 --population 300  # smoke test

Outputs in --workdir/<data key>/: counts.csv (one column per dataset), truth.csv, emulator/ (infer_genes' output,
rewritten on every run), exact_seed<S>_.../ (cached: a rerun with the same data, seed and settings reuses a
folder whose genes.csv exists), datasets.csv (one row per dataset with all the numbers) and validation.md.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

PROTOCOL = "telegraph_mrna"
EXACT = f"exact:{PROTOCOL}"
VARIABLES = ("burst_frequency", "burst_size")
STATS = ("median", "q05", "q95")
TOLERANCE = 0.1  # "within 10%" of the exact 90% interval's width


# ------------------------------------------------------------------------------------------ pure helpers
def binomial_band(n: int, p: float, level: float = 0.95) -> tuple[float, float]:
    """Central `level` range of the coverage fraction k/n when k ~ Binomial(n, p) (a calibrated method)."""
    from scipy import stats

    lo, hi = stats.binom.interval(level, int(n), float(p))
    return float(lo) / n, float(hi) / n


def draw_cells(theta: Sequence[float], n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """n_cells exact draws of the telegraph model's stationary mRNA: x ~ Beta(k0, k1), n ~ Poisson(v0 x)."""
    k0, k1, v0 = (float(t) for t in theta)
    return rng.poisson(v0 * rng.beta(k0, k1, size=int(n_cells))).astype(np.int64)


def draw_datasets(protocol: Any, n: int, n_cells: int, seed: int, min_nonzero: int,
                  max_draws: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The first n prior draws (of the seeded stream) whose cells have >= min_nonzero nonzero counts:
    [{"index", "theta", "counts"}], and the number of draws skipped."""
    max_draws = max_draws or 50 * n
    thetas = protocol.sample(max_draws, seed)  # row i depends only on (seed, i)
    out, skipped = [], 0
    for i, th in enumerate(thetas):
        counts = draw_cells(th, n_cells, np.random.default_rng([int(seed), i, 2]))
        if np.count_nonzero(counts) < min_nonzero:
            skipped += 1
            continue
        out.append({"index": i, "theta": tuple(map(float, th)), "counts": counts})
        if len(out) == n:
            return out, skipped
    raise RuntimeError(f"only {len(out)} of {max_draws} prior draws have >= {min_nonzero} nonzero cells")


def gene_name(index: int) -> str:
    return f"ds_{index:03d}"


def write_counts(path: Path, datasets: Sequence[dict[str, Any]]) -> None:
    """One column per dataset (gene ds_<prior index>), one row per cell."""
    cols = [d["counts"] for d in datasets]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([gene_name(d["index"]) for d in datasets])
        w.writerows(np.stack(cols, axis=1).tolist())


def relative_differences(test: dict[str, float], ref: dict[str, float]) -> dict[str, float]:
    """{"<var>_<stat>": |log10 test - log10 ref| / (log10 ref q95 - log10 ref q05)} for each burst variable and
    statistic (one genes.csv row each; a zero-width reference interval gives inf, or 0 where the two agree)."""
    out = {}
    for v in VARIABLES:
        width = math.log10(ref[f"{v}_q95"]) - math.log10(ref[f"{v}_q05"])
        for s in STATS:
            d = abs(math.log10(test[f"{v}_{s}"]) - math.log10(ref[f"{v}_{s}"]))
            out[f"{v}_{s}"] = d / width if width > 0 else (0.0 if d == 0 else math.inf)
    return out


def covered(row: dict[str, float], truth: dict[str, float]) -> dict[str, int]:
    """{var: 1 if the true value lies in the row's 5%-95% interval}."""
    return {v: int(row[f"{v}_q05"] <= truth[v] <= row[f"{v}_q95"]) for v in VARIABLES}


def summarise_differences(diffs: Sequence[dict[str, float]]) -> dict[str, tuple[float, float, int]]:
    """{"<var>_<stat>": (max, median, count <= TOLERANCE)} over datasets."""
    out = {}
    for k in diffs[0]:
        x = np.array([d[k] for d in diffs], float)
        out[k] = (float(x.max()), float(np.median(x)), int(np.sum(x <= TOLERANCE)))
    return out


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def read_genes(path: Path) -> dict[str, dict[str, Any]]:
    """genes.csv as {gene: {column: float (or str)}}."""
    out = {}
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in r.items():
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    row[k] = v
            out[r["gene"]] = row
    return out


# ------------------------------------------------------------------------------------------ runs
def run_genes(table: Path, emulator: str | None, out: Path, args: argparse.Namespace, seed: int,
              cache: bool) -> tuple[dict[str, dict[str, Any]], float, bool]:
    """infer_genes on the table into `out`: (genes.csv rows, wall seconds, reused); with cache a folder whose
    genes.csv exists is reused as it is."""
    genes_csv = out / "genes.csv"
    if cache and genes_csv.is_file():
        return read_genes(genes_csv), float("nan"), True
    if out.exists():
        shutil.rmtree(out)
    from surrogate_abc.api import infer_genes

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        infer_genes(table, emulator=emulator, out=out, population=args.population, generations=args.generations,
                    chains=args.chains, seed=seed, jobs=args.jobs, mode="likelihood", plots=False,
                    command=f"benchmarks/mrna_validation.py ({emulator}, seed {seed})")
    return read_genes(genes_csv), time.perf_counter() - t0, False


def default_emulator() -> Path:
    from surrogate_abc.emulators.resolve import DEFAULT_EMULATORS, RESOURCES

    return RESOURCES / DEFAULT_EMULATORS["mrna"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default=None, help="emulator under test: .safetensors or exact:<protocol> (default: "
                    "the shipped surrogate_abc/resources/telegraph_mrna.safetensors)")
    ap.add_argument("--datasets", type=int, default=20, help="prior draws / genes (>= 20 for the benchmark)")
    ap.add_argument("--cells", type=int, default=300, help="cells per dataset")
    ap.add_argument("--min-nonzero", type=int, default=5, help="skip prior draws with fewer nonzero cells")
    ap.add_argument("--population", type=int, default=1000)
    ap.add_argument("--generations", type=int, default=10, help="maximum generations (likelihood mode stops at T = 1)")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="prior draws, cells and the ABC seed derive from it")
    ap.add_argument("--mc-repeat", action=argparse.BooleanOptionalAction, default=True,
                    help="run the exact posterior again with seed + 1 to measure the ABC's Monte Carlo noise")
    ap.add_argument("--jobs", type=int, default=None, help="genes in parallel (default: the cores)")
    ap.add_argument("--workdir", default="runs/mrna_validation")
    args = ap.parse_args(argv)

    from surrogate_abc.config import load_protocol
    from surrogate_abc.networks.bursts import burst_kinetics

    emulator = args.emulator or str(default_emulator())
    if not emulator.startswith("exact:") and not Path(emulator).is_file():
        print(f"error: emulator {emulator} not found (the shipped mRNA emulator is not installed yet?); pass "
              "--emulator PATH.safetensors or exact:telegraph_mrna", file=sys.stderr)
        return 2
    if args.datasets < 1:
        print("error: --datasets must be >= 1", file=sys.stderr)
        return 2
    protocol = load_protocol(PROTOCOL)
    # the emulator's prior (its protocol) must be the exact run's, else the posteriors differ by design
    from surrogate_abc.emulators.resolve import resolve_emulator

    em_protocol = resolve_emulator(emulator, ("mrna",))[0].protocol
    if (tuple(em_protocol.param_names) != tuple(protocol.param_names)
            or not np.allclose(em_protocol.bounds(), protocol.bounds())):
        print(f"error: emulator {emulator} has parameters {em_protocol.param_names} on {em_protocol.bounds().tolist()}, "
              f"not {PROTOCOL}'s {protocol.param_names} on {protocol.bounds().tolist()}: the posteriors would differ "
              "by their priors", file=sys.stderr)
        return 2
    datasets, skipped = draw_datasets(protocol, args.datasets, args.cells, args.seed, args.min_nonzero)
    key = f"seed{args.seed}_n{args.datasets}_cells{args.cells}_nz{args.min_nonzero}"
    settings_key = f"pop{args.population}_gen{args.generations}_ch{args.chains}"
    work = Path(args.workdir) / key
    work.mkdir(parents=True, exist_ok=True)
    table = work / "counts.csv"
    write_counts(table, datasets)  # deterministic: the same file on every run with this key
    thetas = np.array([d["theta"] for d in datasets])
    bursts = burst_kinetics(protocol, thetas)
    truths = {gene_name(d["index"]): {"k0": d["theta"][0], "k1": d["theta"][1], "v0": d["theta"][2],
                                      **{v: float(bursts[v][j]) for v in VARIABLES}}
              for j, d in enumerate(datasets)}
    with (work / "truth.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["gene", "k0", "k1", "v0", *VARIABLES])
        w.writerows([[g, *(f"{t[k]:.6g}" for k in ("k0", "k1", "v0", *VARIABLES))] for g, t in truths.items()])

    print(f"{len(datasets)} datasets of {args.cells} cells from the whole {PROTOCOL} prior (seed {args.seed}; "
          f"{skipped} prior draw(s) skipped for < {args.min_nonzero} nonzero cells); emulator {emulator} vs {EXACT}; "
          f"population {args.population}, <= {args.generations} generations, {args.chains} chains; writing {work}",
          flush=True)
    runs: dict[str, tuple[dict, float, bool]] = {}
    runs["emulator"] = run_genes(table, emulator, work / "emulator", args, args.seed, cache=False)
    runs["exact"] = run_genes(table, EXACT, work / f"exact_seed{args.seed}_{settings_key}", args, args.seed, True)
    if args.mc_repeat:
        runs["exact_repeat"] = run_genes(table, EXACT, work / f"exact_seed{args.seed + 1}_{settings_key}", args,
                                         args.seed + 1, True)

    genes = list(truths)
    exact = runs["exact"][0]
    comparisons = {"emulator vs exact": runs["emulator"][0]}
    if "exact_repeat" in runs:
        comparisons[f"exact (seed {args.seed + 1}) vs exact"] = runs["exact_repeat"][0]
    rows_out = []
    diffs: dict[str, list[dict[str, float]]] = {c: [] for c in comparisons}
    for g in genes:
        row: dict[str, Any] = {"gene": g, **{f"true_{k}": v for k, v in truths[g].items()},
                               "mean": exact[g]["mean"], "fano": exact[g]["fano"]}
        for c, res in comparisons.items():
            d = relative_differences(res[g], exact[g])
            diffs[c].append(d)
            tag = "emulator" if c.startswith("emulator") else "repeat"
            row.update({f"diff_{tag}_{k}": v for k, v in d.items()})
        for name, (res, _, _) in runs.items():
            row.update({f"in90_{name}_{v}": x for v, x in covered(res[g], truths[g]).items()})
            row[f"seconds_{name}"] = res[g].get("seconds", float("nan"))
        rows_out.append(row)
    with (work / "datasets.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows_out[0]))
        w.writeheader()
        w.writerows(rows_out)

    n = len(genes)
    lines = [f"Emulator `{emulator}` vs `{EXACT}`: {n} datasets of {args.cells} cells from the whole prior "
             f"(seed {args.seed}, {skipped} draw(s) skipped for < {args.min_nonzero} nonzero cells), population "
             f"{args.population}, {args.chains} chains.", "",
             f"|test - exact| / (exact q95 - exact q05) on log10 scale; within = datasets <= {TOLERANCE:.0%}:", ""]
    head = ["variable", "statistic"]
    for c in comparisons:
        head += [f"{c}: max", "median", "within 10%"]
    body = []
    summaries = {c: summarise_differences(d) for c, d in diffs.items()}
    for v in VARIABLES:
        for s in STATS:
            r: list[Any] = [f"log10 {v}", s]
            for c in comparisons:
                mx, md, k = summaries[c][f"{v}_{s}"]
                r += [f"{mx:.3f}", f"{md:.3f}", f"{k}/{n}"]
            body.append(r)
    lines += [markdown_table(head, body), ""]
    lo, hi = binomial_band(n, 0.9)
    names = {"emulator": "emulator", "exact": "exact", "exact_repeat": f"exact (seed {args.seed + 1})"}
    head = ["variable"] + [f"90% coverage: {names[k]}" for k in runs] + ["binomial 95% band"]
    body = []
    for v in VARIABLES:
        body.append([v] + [f"{np.mean([r[f'in90_{k}_{v}'] for r in rows_out]):.2f}" for k in runs]
                    + [f"[{lo:.2f}, {hi:.2f}]"])
    lines += [markdown_table(head, body), ""]
    head = ["run", "median s / gene", "max s / gene", "wall s (all genes)"]
    body = []
    for k, (res, wall, reused) in runs.items():
        sec = np.array([res[g].get("seconds", float("nan")) for g in genes], float)
        body.append([names[k], f"{np.nanmedian(sec):.1f}", f"{np.nanmax(sec):.1f}",
                     "cached" if reused else f"{wall:.0f}"])
    lines += [markdown_table(head, body), "",
              f"(s / gene: each gene's own run, {args.jobs or os.cpu_count()} gene(s) in parallel; cached = reused "
              "from an earlier run with the same seed and settings)"]
    text = "\n".join(lines)
    (work / "validation.md").write_text(text + "\n")
    print(text)
    print(f"\nwrote {work / 'validation.md'} and {work / 'datasets.csv'}")
    return 0


if __name__ == "__main__":
    from _main import run

    run(main)
