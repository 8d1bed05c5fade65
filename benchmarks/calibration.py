"""Calibration of surrogate-abc's posteriors over the prior (simulation-based calibration in its simplest form).

For each of --datasets parameter sets drawn from the protocol's prior, draw --cells cells from the *exact*
stationary distribution (FSP), write them as observed.h5 (true_<param> attributes), run `infer` on it and
record, per parameter, whether the 50% and 90% central credible intervals contain the truth, the posterior
contraction, and the Hellinger distance between the posterior predictive and the exact distribution.
Coverage should match 50% and 90% within the printed binomial 95% band for the number of datasets.

  python benchmarks/calibration.py                                  # 50 datasets, default emulator, all cores
  python benchmarks/calibration.py --emulator runs/mdn.safetensors --datasets 100 --population 400
  python benchmarks/calibration.py --emulator exact:gene_protein --datasets 4 --population 50 --generations 4

Outputs in --workdir: ds_XXX/observed.h5 + infer's outputs + result.json per dataset (a rerun skips
datasets whose result.json exists), datasets.csv (one row per dataset) and calibration.csv (the table).
Contraction 1 - var_post / var_prior is computed on the emulator's feature scale (log10 for log-uniform
priors, where the prior variance is that of a uniform on [log10 low, log10 high]).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats


# ------------------------------------------------------------------------------------------ pure helpers
def weighted_quantile(x: np.ndarray, q: Sequence[float] | float, weights: np.ndarray | None = None) -> np.ndarray:
    """Quantiles of a (weighted) sample: the inverse of the weighted empirical CDF with midpoint interpolation
    (for equal weights this is numpy's 'hazen' quantile)."""
    x = np.asarray(x, float).ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, float).ravel()
    if x.size == 0 or x.shape != w.shape:
        raise ValueError(f"need a non-empty sample with one weight per value, got {x.shape} and {w.shape}")
    if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("weights must be finite, >= 0 and not all 0")
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    keep = ws > 0
    xs, ws = xs[keep], ws[keep]
    cdf = (np.cumsum(ws) - 0.5 * ws) / ws.sum()
    return np.interp(np.asarray(q, float), cdf, xs)


def central_interval(x: np.ndarray, prob: float, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Central credible interval of probability `prob`: the (1-prob)/2 and (1+prob)/2 quantiles."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    lo, hi = weighted_quantile(x, [(1 - prob) / 2, (1 + prob) / 2], weights)
    return float(lo), float(hi)


def weighted_var(x: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Variance of a (weighted) sample (normalised weights, no bias correction)."""
    x = np.asarray(x, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    m = np.average(x, weights=w)
    return float(np.average((x - m) ** 2, weights=w))


def to_feature(kind: str, x: np.ndarray | float) -> np.ndarray:
    """The emulator's feature scale: log10 for log-uniform priors, identity for uniform ones."""
    return np.log10(x) if kind == "loguniform" else np.asarray(x, float)


def prior_variance(kind: str, low: float, high: float) -> float:
    """Variance of a uniform / log-uniform prior on its feature scale (log10 for log-uniform)."""
    a, b = (math.log10(low), math.log10(high)) if kind == "loguniform" else (low, high)
    return (b - a) ** 2 / 12.0


def contraction(post_var: float, prior_var: float) -> float:
    """Posterior contraction 1 - var_post / var_prior (1: the data pin the parameter; 0: nothing learnt)."""
    return 1.0 - float(post_var) / float(prior_var)


def binomial_band(n: int, p: float, level: float = 0.95) -> tuple[float, float]:
    """Central `level` range of the coverage fraction k/n when k ~ Binomial(n, p) (a calibrated method)."""
    lo, hi = stats.binom.interval(level, int(n), float(p))
    return float(lo) / n, float(hi) / n


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance between two probability vectors (each normalised to sum 1 first)."""
    p = np.clip(np.asarray(p, float).ravel(), 0, None)
    q = np.clip(np.asarray(q, float).ravel(), 0, None)
    from surrogate_abc.metrics import hellinger_distance

    return hellinger_distance(p / p.sum(), q / q.sum())


def sample_cells(pmf: np.ndarray, overflow: float, n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """n_cells draws (n_cells, k) from a pmf on the integer grid of shape caps (k = pmf.ndim) plus an overflow
    mass; an overflow cell gets the count `caps` on every axis (beyond the grid, so beyond any edge inside it)."""
    pmf = np.asarray(pmf, float)
    p = np.concatenate([np.clip(pmf.ravel(), 0, None), [max(float(overflow), 0.0)]])
    idx = rng.choice(p.size, size=int(n_cells), p=p / p.sum())
    out = np.empty((int(n_cells), pmf.ndim), np.int64)
    inside = idx < pmf.size
    out[inside] = np.stack(np.unravel_index(idx[inside], pmf.shape), axis=1)
    out[~inside] = np.asarray(pmf.shape, np.int64)
    return out


def wasserstein_normalised(x: np.ndarray, wx: np.ndarray | None, y: np.ndarray, wy: np.ndarray | None,
                           width: float) -> float:
    """1-D Wasserstein distance between two weighted samples divided by `width` (the prior's width)."""
    return float(stats.wasserstein_distance(x, y, wx, wy)) / float(width)


# ------------------------------------------------------------------------------------------ datasets
def exact_pmf(protocol: Any, theta: np.ndarray, caps: Sequence[int]):
    """Exact stationary pmf (FSPResult) of the protocol's observed species on 0..cap-1 at one parameter set."""
    from surrogate_abc.simulate.fsp import solve_stationary

    rates = protocol.rates(np.atleast_2d(theta))[0]
    return solve_stationary(protocol.network, dict(zip(protocol.rate_names, rates)), protocol.species,
                            tuple(int(c) for c in caps), protocol.fsp)


def write_observed(path: Path, species: Sequence[str], counts: np.ndarray, truth: dict[str, float],
                   protocol: str, description: str = "") -> None:
    """observed.h5 in surrogate_abc.data.observed's layout: one int64 dataset per species, true_<param> attrs."""
    import h5py

    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for j, s in enumerate(species):
            f.create_dataset(s, data=np.asarray(counts[:, j], np.int64))
        for k, v in truth.items():
            f.attrs[f"true_{k}"] = float(v)
        f.attrs["protocol"] = protocol
        f.attrs["description"] = description
    os.replace(tmp, path)


def make_dataset(protocol: Any, theta: np.ndarray, index: int, seed: int, n_cells: int, path: Path,
                 extra_caps: Sequence[int] | None = None):
    """Solve FSP at theta, write n_cells exact draws to `path`; returns the FSPResult (caps: the protocol's,
    raised to extra_caps where those are larger, e.g. an emulator's last edges)."""
    caps = [int(a.cap) for a in protocol.axes]
    if extra_caps is not None:
        caps = [max(c, int(e)) for c, e in zip(caps, extra_caps)]
    res = exact_pmf(protocol, theta, caps)
    rng = np.random.default_rng([int(seed), int(index), 1])
    counts = sample_cells(res.pmf, res.overflow, n_cells, rng)
    truth = dict(zip(protocol.param_names, map(float, theta)))
    write_observed(path, protocol.species, counts, truth, protocol.name,
                   f"calibration dataset {index} (seed {seed}): {n_cells} cells from the exact FSP distribution")
    return res


def resolve_protocol(emulator_spec: str | None, protocol_arg: str | None):
    """The protocol datasets are drawn from: --protocol, else exact:<protocol>'s, else gene_protein (the default
    emulator's protocol)."""
    from surrogate_abc.config import load_protocol

    if protocol_arg:
        return load_protocol(protocol_arg)
    if emulator_spec and emulator_spec.startswith("exact:"):
        return load_protocol(emulator_spec[len("exact:"):])
    return load_protocol("gene_protein")


def load_weighted_posterior(out_dir: Path) -> tuple[Any, dict[str, np.ndarray], np.ndarray]:
    """(idata, {param: values}, weights) of infer's output folder: the final weighted population of every chain
    from abc.db (each chain's weights scaled to 1/chains), falling back to posterior.nc's equal-weight draws."""
    import arviz as az

    idata = az.from_netcdf(str(out_dir / "posterior.nc"))
    names = list(idata.posterior.data_vars)
    db = out_dir / "abc.db"
    try:
        import pyabc

        vals: dict[str, list] = {k: [] for k in names}
        ws = []
        run_ids = np.atleast_1d(idata.sample_stats["run_id"].values)
        for rid in run_ids:
            h = pyabc.History(f"sqlite:///{db.resolve()}", _id=int(rid), create=False)
            df, w = h.get_distribution(m=0)
            for k in names:  # log-uniform parameters are sampled (and stored) as log10_<name>
                vals[k].append(df[k].to_numpy(float) if k in df else 10.0 ** df[f"log10_{k}"].to_numpy(float))
            ws.append(np.asarray(w, float) / np.sum(w) / len(run_ids))
        return idata, {k: np.concatenate(v) for k, v in vals.items()}, np.concatenate(ws)
    except Exception:  # no database: equal-weight draws
        post = {k: idata.posterior[k].values.ravel() for k in names}
        n = len(next(iter(post.values())))
        return idata, post, np.full(n, 1.0 / n)


# ------------------------------------------------------------------------------------------ one dataset
@dataclass(frozen=True)
class Task:
    """Everything one worker needs for one dataset (picklable)."""

    index: int
    theta: tuple[float, ...]
    protocol: str
    emulator: str | None
    workdir: str
    seed: int
    cells: int
    mode: str
    population: int
    generations: int
    max_walltime: float | None


def _worker_init() -> None:
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[k] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    warnings.simplefilter("ignore")
    import arviz

    from surrogate_abc.inference.output import arviz_logger

    arviz_logger(arviz).setLevel(logging.ERROR)  # single-chain runs: r_hat is undefined, no need to say so per run


def run_dataset(task: Task) -> dict[str, Any]:
    """Make dataset task.index, run infer on it, and return its metrics (also written to result.json)."""
    from surrogate_abc.config import load_protocol
    from surrogate_abc.emulators.exact import bin_integer_pmf
    from surrogate_abc.inference.infer import infer
    from surrogate_abc.inference.priors import prior_box
    from surrogate_abc.inference.run import InferenceSettings

    out = Path(task.workdir) / f"ds_{task.index:03d}"
    result_path = out / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    protocol = load_protocol(task.protocol)
    theta = np.asarray(task.theta, float)
    obs = out / "observed.h5"
    t0 = time.perf_counter()
    res = make_dataset(protocol, theta, task.index, task.seed, task.cells, obs)
    t_data = time.perf_counter() - t0
    settings = InferenceSettings(mode=task.mode, population=task.population, generations=task.generations,
                                 max_walltime=task.max_walltime, sampler="single", seed=task.seed * 100_003 + task.index)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        infer(obs, task.emulator, settings, out, command=f"benchmarks/calibration.py dataset {task.index}",
              log=lambda _msg: None)
    t_infer = time.perf_counter() - t0
    idata, post, w = load_weighted_posterior(out)
    box = prior_box(load_protocol(task.protocol))
    row: dict[str, Any] = {"index": task.index, "wall_data_s": t_data, "wall_infer_s": t_infer}
    eps = idata.sample_stats["epsilon"].values
    row["generations"] = int(np.isfinite(eps).sum(axis=-1).max())
    row["final_epsilon"] = float(eps[np.isfinite(eps)][-1])
    row["n_simulations"] = float(np.nansum(idata.sample_stats["n_simulations"].values))
    for j, k in enumerate(protocol.param_names):
        kind, lo, hi = box[k]
        x = to_feature(kind, post[k])
        t = float(to_feature(kind, theta[j]))
        row[f"true_{k}"] = float(theta[j])
        for prob in (0.5, 0.9):
            a, b = central_interval(x, prob, w)
            row[f"in{int(prob * 100)}_{k}"] = int(a <= t <= b)
        row[f"contraction_{k}"] = contraction(weighted_var(x, w), prior_variance(kind, lo, hi))
    # posterior predictive (mean emulated pmf over the posterior draws) against the exact pmf on the same edges
    edges = tuple(np.asarray(e, float) for e in json.loads(idata.posterior.attrs["edges"]).values())
    caps_needed = [int(math.ceil(e[-1])) for e in edges]
    if any(c > s for c, s in zip(caps_needed, res.pmf.shape)):
        res = exact_pmf(protocol, theta, [max(c, s) for c, s in zip(caps_needed, res.pmf.shape)])
    exact_binned, exact_over = bin_integer_pmf(np.asarray(res.pmf, float), edges)
    pp = idata.posterior_predictive
    pred = pp["hist"].values.reshape((-1,) + exact_binned.shape).mean(axis=0)
    pred_over = float(pp["overflow"].values.mean())
    row["hellinger_ppc"] = hellinger(np.append(pred.ravel(), pred_over), np.append(exact_binned.ravel(), exact_over))
    result_path.write_text(json.dumps(row, indent=1))
    return row


# ------------------------------------------------------------------------------------------ summary
def summarise(rows: list[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The calibration table: per parameter coverage of the 50% / 90% intervals with their binomial 95% bands
    and the mean contraction; a last row with the posterior predictive's mean and max Hellinger distance."""
    n = len(rows)
    b50, b90 = binomial_band(n, 0.5), binomial_band(n, 0.9)
    table = []
    for k in names:
        c = np.array([r[f"contraction_{k}"] for r in rows])
        table.append({"parameter": k, "datasets": n,
                      "coverage_50": np.mean([r[f"in50_{k}"] for r in rows]), "band50_lo": b50[0], "band50_hi": b50[1],
                      "coverage_90": np.mean([r[f"in90_{k}"] for r in rows]), "band90_lo": b90[0], "band90_hi": b90[1],
                      "contraction_mean": float(c.mean()), "contraction_sd": float(c.std(ddof=1)) if n > 1 else 0.0,
                      "hellinger_mean": "", "hellinger_max": ""})
    h = np.array([r["hellinger_ppc"] for r in rows])
    table.append({"parameter": "posterior_predictive", "datasets": n, "coverage_50": "", "band50_lo": "",
                  "band50_hi": "", "coverage_90": "", "band90_lo": "", "band90_hi": "", "contraction_mean": "",
                  "contraction_sd": "", "hellinger_mean": float(h.mean()), "hellinger_max": float(h.max())})
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    """The calibration table as aligned text."""
    lines = [f"{'parameter':<22}{'cover 50%':>10}{'band 95%':>14}{'cover 90%':>10}{'band 95%':>14}"
             f"{'contraction':>13}{'Hellinger':>11}"]
    for r in table:
        if r["coverage_50"] == "":
            lines.append(f"{r['parameter']:<22}{'':>61}{r['hellinger_mean']:>11.4f}  (mean; max {r['hellinger_max']:.4f})")
            continue
        band50 = f"[{r['band50_lo']:.2f}, {r['band50_hi']:.2f}]"
        band90 = f"[{r['band90_lo']:.2f}, {r['band90_hi']:.2f}]"
        lines.append(f"{r['parameter']:<22}{r['coverage_50']:>10.3f}{band50:>14}{r['coverage_90']:>10.3f}{band90:>14}"
                     f"{r['contraction_mean']:>13.3f}{'':>11}")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """rows (dicts) as CSV; the columns are the union of their keys in first-seen order, missing cells empty."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default=None, help="emulator .safetensors or exact:<protocol> (default: the shipped "
                    "gene_protein emulator)")
    ap.add_argument("--protocol", default=None, help="protocol the datasets are drawn from (default: exact:<protocol>'s, "
                    "else gene_protein)")
    ap.add_argument("--datasets", type=int, default=50, help="number of prior draws / datasets (>= 50 for the benchmark)")
    ap.add_argument("--cells", type=int, default=1000, help="cells per dataset")
    ap.add_argument("--mode", choices=("likelihood", "simulator"), default="likelihood")
    ap.add_argument("--population", type=int, default=400)
    ap.add_argument("--generations", type=int, default=10, help="maximum generations (likelihood mode stops at T = 1)")
    ap.add_argument("--max-walltime", type=float, default=None, help="seconds per dataset's ABC run")
    ap.add_argument("--seed", type=int, default=0, help="prior draws, cells and ABC seeds derive from it")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="datasets run in parallel (default: cores)")
    ap.add_argument("--workdir", default="runs/calibration")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    from surrogate_abc.errors import UserError

    try:
        protocol = resolve_protocol(args.emulator, args.protocol)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    thetas = protocol.sample(args.datasets, args.seed)
    tasks = [Task(i, tuple(map(float, th)), protocol.source, args.emulator, str(work), args.seed, args.cells,
                  args.mode, args.population, args.generations, args.max_walltime) for i, th in enumerate(thetas)]
    print(f"{len(tasks)} datasets of {args.cells} cells from {protocol.name} (exact FSP); emulator "
          f"{args.emulator or 'default (gene_protein.safetensors)'}; mode {args.mode}, population {args.population}, "
          f"<= {args.generations} generations; {args.jobs} job(s); writing {work}", flush=True)
    rows, failed = [], []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=get_context("spawn"),
                             initializer=_worker_init) as pool:
        futs = {pool.submit(run_dataset, t): t.index for t in tasks}
        for fut in tqdm(as_completed(futs), total=len(futs), disable=args.quiet, desc="datasets"):
            try:
                rows.append(fut.result())
            except Exception as exc:  # report and go on: one failed dataset must not lose the others
                failed.append(futs[fut])
                print(f"dataset {futs[fut]} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    if not rows:
        print("error: every dataset failed", file=sys.stderr)
        return 1
    rows.sort(key=lambda r: r["index"])
    write_csv(work / "datasets.csv", rows)
    table = summarise(rows, protocol.param_names)
    write_csv(work / "calibration.csv", table)
    print(format_table(table))
    walls = np.array([r["wall_infer_s"] for r in rows])
    ok_t = sum(1 for r in rows if args.mode != "likelihood" or r["final_epsilon"] <= 1 + 1e-9)
    print(f"infer wall time per dataset: median {np.median(walls):.1f} s, max {walls.max():.1f} s; total "
          f"{time.perf_counter() - t0:.0f} s. {ok_t}/{len(rows)} runs finished"
          f"{' at temperature 1' if args.mode == 'likelihood' else ''}.")
    if failed:
        print(f"{len(failed)} dataset(s) failed: {sorted(failed)}", file=sys.stderr)
    print(f"wrote {work / 'calibration.csv'} and {work / 'datasets.csv'}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
