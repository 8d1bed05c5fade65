"""`surrogate-abc calibrate`: calibration of the posteriors over the prior (simulation-based calibration).

For each of `datasets` parameter sets drawn from the protocol's prior, draw `cells` cells from the *exact*
stationary distribution (closed form where the network has one, else FSP; seeded by (seed, index)), write them
as OUT/ds_XXX/observed.h5 (true_<param> attributes), run `infer` on it (one chain, no exact check, no plots) and
record per parameter whether the 50% and 90% central credible intervals contain the truth, the posterior
contraction, the SBC rank of the truth among 99 posterior draws, and the Hellinger distance between the
posterior predictive and the exact distribution. Coverage should match 50% and 90% within the binomial 95%
band for the number of datasets, and the rank histograms should be flat.

Outputs in OUT: ds_XXX/ (observed.h5, infer's outputs, result.json; a rerun reuses datasets whose result.json
exists), datasets.csv (one row per dataset), calibration.csv (the coverage table), sbc_ranks.png and, when
datasets failed, failed.csv. Contraction 1 - var_post / var_prior and the ranks are computed on the
emulator's feature scale (log10 for log-uniform priors).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

from ..errors import UserError
from ..metrics import hellinger_distance
from ..report import warn

PROBS = (0.5, 0.9)  # central credible intervals whose coverage is tabulated
N_RANK_DRAWS = 99  # posterior draws per SBC rank: ranks 0..99
RANK_BINS = 10  # bars of each rank histogram
DEFAULT_OUT = "surrogate-abc-calibration"


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


def from_feature(kind: str, x: float) -> float:
    """The inverse of to_feature for one value."""
    return float(10.0 ** x) if kind == "loguniform" else float(x)


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


def sbc_rank(draws: np.ndarray, truth: float, rng: np.random.Generator, n_draws: int = N_RANK_DRAWS) -> int:
    """Rank of the truth among n_draws equal-weight posterior draws (0..n_draws): the number of draws below it,
    ties broken at random. Fewer draws than n_draws are drawn with replacement."""
    x = np.asarray(draws, float).ravel()
    if x.size == 0:
        raise ValueError("need at least one posterior draw")
    pick = x[rng.choice(x.size, n_draws, replace=x.size < n_draws)]
    below, ties = int((pick < truth).sum()), int((pick == truth).sum())
    return below + (int(rng.integers(0, ties + 1)) if ties else 0)


def rank_band(n: int, bins: int = RANK_BINS, level: float = 0.95) -> tuple[float, float]:
    """Central `level` range of the count in one of `bins` equal bars of a uniform rank histogram of n ranks."""
    lo, hi = stats.binom.interval(level, int(n), 1.0 / bins)
    return float(lo), float(hi)


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


def ppc_hellinger(pred: np.ndarray, pred_overflow: float, exact: np.ndarray, exact_overflow: float) -> float:
    """Hellinger distance between two binned distributions, each with its overflow mass (renormalised)."""
    p = np.clip(np.append(np.asarray(pred, float).ravel(), pred_overflow), 0, None)
    q = np.clip(np.append(np.asarray(exact, float).ravel(), exact_overflow), 0, None)
    return float(hellinger_distance(p / p.sum(), q / q.sum()))


# ------------------------------------------------------------------------------------------ datasets
def exact_counts_pmf(protocol: Any, theta: np.ndarray, caps: Sequence[int]) -> tuple[np.ndarray, float]:
    """(pmf on 0..cap-1 per observed species, mass beyond the grid) at one parameter set: the closed-form law
    where the network has one (networks.find_closed_form), else the exact FSP solver."""
    from ..networks import find_closed_form

    rates = dict(zip(protocol.rate_names, protocol.rates(np.atleast_2d(theta))[0]))
    caps = tuple(int(c) for c in caps)
    law = find_closed_form(protocol.network, protocol.species)
    if law is not None:
        pmf = np.clip(np.asarray(law.pmf(rates, caps[0]), float), 0, None)
        return pmf, float(max(1.0 - pmf.sum(), 0.0))
    from ..simulate.fsp import solve_stationary

    res = solve_stationary(protocol.network, rates, protocol.species, caps, protocol.fsp)
    return np.asarray(res.pmf, float), float(res.overflow)


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


def dataset_caps(protocol: Any, edges: Sequence[np.ndarray] | None = None) -> tuple[int, ...]:
    """Grid of the exact pmf: the protocol's caps, raised to the emulator's last edges where those are larger."""
    caps = [int(a.cap) for a in protocol.axes]
    if edges is not None:
        caps = [max(c, int(math.ceil(float(np.asarray(e)[-1])))) for c, e in zip(caps, edges)]
    return tuple(caps)


def make_dataset(protocol: Any, theta: np.ndarray, index: int, seed: int, n_cells: int, path: Path,
                 caps: Sequence[int] | None = None) -> tuple[np.ndarray, float]:
    """Write n_cells exact draws at theta to `path` (deterministic in (seed, index)); returns the exact
    (pmf, overflow) on `caps` (default: the protocol's)."""
    pmf, overflow = exact_counts_pmf(protocol, theta, caps or dataset_caps(protocol))
    rng = np.random.default_rng([int(seed), int(index), 1])
    counts = sample_cells(pmf, overflow, n_cells, rng)
    truth = dict(zip(protocol.param_names, map(float, theta)))
    write_observed(path, protocol.species, counts, truth, protocol.name,
                   f"calibration dataset {index} (seed {seed}): {n_cells} cells from the exact distribution")
    return pmf, overflow


def resolve_target(emulator_spec: str | None, protocol_arg: str | None) -> tuple[str, Any]:
    """(emulator spec for infer, the emulator) for --emulator / --protocol: DEFAULT (or None) is the shipped
    emulator of --protocol (default gene_protein); a .safetensors file or exact:<protocol> brings its own
    protocol (emulator.protocol), which --protocol, when given, must name."""
    from ..config import load_protocol
    from .infer import RESOURCES, resolve_emulator

    if emulator_spec in (None, "", "DEFAULT"):
        name = load_protocol(protocol_arg or "gene_protein").name
        path = RESOURCES / f"{name}.safetensors"
        if not path.is_file():
            raise UserError(f"protocol {name} has no shipped emulator (looked for {path}); pass --emulator "
                            f"PATH.safetensors or --emulator exact:{protocol_arg or name}")
        spec = str(path)
    elif emulator_spec.startswith("exact:"):
        spec = emulator_spec
    else:
        p = Path(emulator_spec)
        if p.suffix == ".safetensors" and not p.is_file():
            raise UserError(f"--emulator {emulator_spec}: file not found")
        spec = str(p.resolve()) if p.is_file() else emulator_spec
    emulator, _ = resolve_emulator(spec)
    if protocol_arg and emulator_spec not in (None, "", "DEFAULT"):
        wanted = load_protocol(protocol_arg).name
        if wanted != emulator.protocol.name:
            raise UserError(f"--protocol {protocol_arg} ({wanted}) differs from the emulator's protocol "
                            f"{emulator.protocol.name}; leave --protocol out (the emulator names its protocol)")
    return spec, emulator


def load_weighted_posterior(out_dir: Path) -> tuple[Any, dict[str, np.ndarray], np.ndarray]:
    """(idata, {param: values}, weights) of infer's output folder: the final weighted population of every chain
    from abc.db (each chain's weights scaled to 1/chains), falling back to posterior.nc's equal-weight draws."""
    import arviz as az

    idata = az.from_netcdf(str(out_dir / "posterior.nc"))
    names = list(idata.posterior.data_vars)
    try:
        import pyabc

        vals: dict[str, list] = {k: [] for k in names}
        ws = []
        run_ids = np.atleast_1d(idata.sample_stats["run_id"].values)
        for rid in run_ids:
            h = pyabc.History(f"sqlite:///{(out_dir / 'abc.db').resolve()}", _id=int(rid), create=False)
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
    protocol: Any  # config.Protocol: the emulator's
    emulator: str
    out: str  # this dataset's folder
    seed: int
    cells: int
    caps: tuple[int, ...]
    settings: Any  # InferenceSettings


def _worker_init() -> None:
    """One core per dataset (datasets are the parallel unit); arviz's single-chain r_hat remarks silenced."""
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[k] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    import arviz

    from .output import arviz_logger

    arviz_logger(arviz).setLevel(logging.ERROR)


def run_dataset(task: Task) -> dict[str, Any]:
    """Make dataset task.index, run infer on it, and return its metrics (also written to result.json)."""
    from .infer import infer

    out = Path(task.out)
    out.mkdir(parents=True, exist_ok=True)
    theta = np.asarray(task.theta, float)
    t0 = time.perf_counter()
    pmf, overflow = make_dataset(task.protocol, theta, task.index, task.seed, task.cells, out / "observed.h5",
                                 task.caps)
    t_data = time.perf_counter() - t0
    infer(out / "observed.h5", task.emulator, task.settings, out, command=f"surrogate-abc calibrate dataset {task.index}",
          log=lambda _msg: None)
    row = {"index": task.index, "wall_data_s": t_data, "wall_infer_s": time.perf_counter() - t0 - t_data}
    row.update(dataset_metrics(task, out, pmf, overflow))
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(row, indent=1))
    tmp.replace(out / "result.json")
    return row


def _worker(task: Task) -> tuple[dict[str, Any], list[str]]:
    """run_dataset in a worker process, with its warnings collected as note lines for the parent."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = run_dataset(task)
    return row, list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))


def dataset_metrics(task: Task, out: Path, pmf: np.ndarray, overflow: float) -> dict[str, Any]:
    """Run statistics, per-parameter coverage, contraction and SBC rank, and the predictive Hellinger distance."""
    from .priors import prior_box

    idata, post, w = load_weighted_posterior(out)
    eps = idata.sample_stats["epsilon"].values
    row: dict[str, Any] = {"generations": int(np.isfinite(eps).sum(axis=-1).max()),
                           "final_epsilon": float(eps[np.isfinite(eps)][-1]),
                           "n_simulations": float(np.nansum(idata.sample_stats["n_simulations"].values))}
    box = prior_box(task.protocol, task.settings.prior)
    rng = np.random.default_rng([task.seed, task.index, 2])
    for j, k in enumerate(task.protocol.param_names):
        row.update(parameter_metrics(k, box[k], task.theta[j], post[k], w, idata.posterior[k].values, rng))
    row["hellinger_ppc"] = predictive_hellinger(idata, task, pmf, overflow)
    idata.close()
    return row


def parameter_metrics(k: str, prior: tuple[str, float, float], truth: float, values: np.ndarray,
                      weights: np.ndarray, draws: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """One parameter's datasets.csv entries: truth, interval bounds and hits, contraction, SBC rank."""
    kind, lo, hi = prior
    x, t = to_feature(kind, values), float(to_feature(kind, truth))
    row: dict[str, Any] = {f"true_{k}": float(truth)}
    for prob in PROBS:
        a, b = central_interval(x, prob, weights)
        pct = int(prob * 100)
        row.update({f"lo{pct}_{k}": from_feature(kind, a), f"hi{pct}_{k}": from_feature(kind, b),
                    f"in{pct}_{k}": int(a <= t <= b)})
    row[f"contraction_{k}"] = contraction(weighted_var(x, weights), prior_variance(kind, lo, hi))
    row[f"rank_{k}"] = sbc_rank(to_feature(kind, np.asarray(draws, float).ravel()), t, rng)
    return row


def predictive_hellinger(idata: Any, task: Task, pmf: np.ndarray, overflow: float) -> float:
    """Hellinger distance between the posterior predictive (mean emulated pmf over the posterior draws) and the
    exact pmf binned on the emulator's edges."""
    from ..emulators.exact import bin_integer_pmf

    edges = tuple(np.asarray(e, float) for e in json.loads(idata.posterior.attrs["edges"]).values())
    need = dataset_caps(task.protocol, edges)
    if any(c > s for c, s in zip(need, pmf.shape)):
        pmf, overflow = exact_counts_pmf(task.protocol, np.asarray(task.theta), need)
    exact_binned, exact_over = bin_integer_pmf(pmf, edges)
    pp = idata.posterior_predictive
    pred = pp["hist"].values.reshape((-1,) + exact_binned.shape).mean(axis=0)
    return ppc_hellinger(pred, float(pp["overflow"].values.mean()), exact_binned, exact_over)


# ------------------------------------------------------------------------------------------ summary
def summarise(rows: list[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The calibration table: per parameter coverage of the 50% / 90% intervals with their binomial 95% bands
    and the mean contraction; a last row with the posterior predictive's mean and max Hellinger distance."""
    n = len(rows)
    b50, b90 = binomial_band(n, 0.5), binomial_band(n, 0.9)
    empty = dict.fromkeys(("coverage_50", "band50_lo", "band50_hi", "coverage_90", "band90_lo", "band90_hi",
                           "contraction", "contraction_sd", "hellinger_mean", "hellinger_max"), "")
    table = []
    for k in names:
        c = np.array([r[f"contraction_{k}"] for r in rows])
        table.append({"parameter": k, "datasets": n, **empty,
                      "coverage_50": float(np.mean([r[f"in50_{k}"] for r in rows])), "band50_lo": b50[0],
                      "band50_hi": b50[1], "coverage_90": float(np.mean([r[f"in90_{k}"] for r in rows])),
                      "band90_lo": b90[0], "band90_hi": b90[1], "contraction": float(c.mean()),
                      "contraction_sd": float(c.std(ddof=1)) if n > 1 else 0.0})
    h = np.array([r["hellinger_ppc"] for r in rows])
    table.append({"parameter": "posterior_predictive", "datasets": n, **empty, "hellinger_mean": float(h.mean()),
                  "hellinger_max": float(h.max())})
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
                     f"{r['contraction']:>13.3f}")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """rows (dicts) as CSV; the columns are the union of their keys in first-seen order, missing cells empty;
    written to a temporary name and renamed."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
    return path


def plot_sbc_ranks(rows: list[dict[str, Any]], names: Sequence[str], path: Path, bins: int = RANK_BINS) -> Path:
    """sbc_ranks.png: one histogram of the ranks 0..N_RANK_DRAWS per parameter, the 95% band of a uniform
    histogram of as many ranks shaded (bars outside it point at a miscalibrated posterior)."""
    from ..plots import _save, plt

    n = len(rows)
    lo, hi = rank_band(n, bins)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
    edges = np.linspace(0, N_RANK_DRAWS + 1, bins + 1)
    for ax, k in zip(axes.ravel(), names):
        ax.axhspan(lo, hi, color="0.85", label="uniform 95% band")
        ax.axhline(n / bins, color="0.5", lw=1)
        ax.hist([r[f"rank_{k}"] for r in rows], bins=edges, color="C0", edgecolor="white")
        ax.set(title=k, xlabel=f"rank of the truth among {N_RANK_DRAWS} draws", ylabel="datasets",
               xlim=(0, N_RANK_DRAWS + 1))
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    axes[0, 0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"SBC rank histograms ({n} datasets)")
    _save(fig, path)
    return path


# ------------------------------------------------------------------------------------------ driver
def plan(emulator_spec: str | None, datasets: int, cells: int, settings: Any, seed: int, out: Path,
         protocol: str | None) -> tuple[Any, list[Task]]:
    """Check the input and build one Task per dataset (UserError before anything is written)."""
    from ..networks import ReactionNetwork

    if datasets < 1:
        raise UserError(f"--datasets must be >= 1, got {datasets}")
    if cells < 1:
        raise UserError(f"--cells must be >= 1, got {cells}")
    settings.check()
    spec, emulator = resolve_target(emulator_spec, protocol)
    proto = emulator.protocol
    if not isinstance(proto.network, ReactionNetwork):
        raise UserError(f"protocol {proto.name}: calibrate draws exact cell counts and needs a reaction network")
    caps = dataset_caps(proto, emulator.edges)
    thetas = proto.sample(datasets, seed)
    tasks = [Task(i, tuple(map(float, th)), proto, spec, str(out / f"ds_{i:03d}"), seed, cells, caps,
                  dataclasses.replace(settings, seed=seed * 100_003 + i)) for i, th in enumerate(thetas)]
    return emulator, tasks


def run_tasks(tasks: Sequence[Task], jobs: int, progress: bool) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Run the tasks (in `jobs` spawned worker processes when jobs > 1); (rows, [(index, error line)])."""
    rows, failed = [], []
    if not tasks:
        return rows, failed
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="datasets", unit="dataset", dynamic_ncols=True, disable=not progress)

    def fail(index: int, exc: BaseException) -> None:
        line = f"dataset {index} failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
        failed.append((index, line))
        warn(line)

    try:
        if jobs == 1:
            for t in tasks:
                try:
                    rows.append(run_dataset(t))
                except Exception as exc:  # one failed dataset must not lose the others
                    fail(t.index, exc)
                bar.update(1)
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
                futures = {pool.submit(_worker, t): t.index for t in tasks}
                for f in as_completed(futures):
                    try:
                        row, notes = f.result()
                        rows.append(row)
                        for note in notes:
                            warn(note)
                    except Exception as exc:
                        fail(futures[f], exc)
                    bar.update(1)
    finally:
        bar.close()
    return rows, failed


def calibrate(emulator_spec: str | None, datasets: int, cells: int, population: int = 400, generations: int = 10,
              mode: str = "likelihood", seed: int = 0, jobs: int | None = None, out: Path | str | None = None,
              protocol: str | None = None, progress: bool = True, chains: int = 1,
              max_walltime: float | None = None, log: Callable[[str], None] = print) -> tuple[str, dict[str, Path]]:
    """Calibrate an emulator's posteriors over its protocol's prior (module docstring); returns (the printed
    text: coverage table and a line on reused datasets, {name: path} of calibration.csv, datasets.csv,
    sbc_ranks.png, the folder and, when datasets failed, failed.csv)."""
    from .run import InferenceSettings

    out = Path(out) if out is not None else Path.cwd() / DEFAULT_OUT
    settings = InferenceSettings(mode=mode, population=population, generations=generations, chains=chains,
                                 max_walltime=max_walltime, exact_check="none", plots=False, chain_jobs=1)
    emulator, tasks = plan(emulator_spec, datasets, cells, settings, seed, out, protocol)
    out.mkdir(parents=True, exist_ok=True)
    done = {t.index: json.loads(Path(t.out, "result.json").read_text()) for t in tasks
            if Path(t.out, "result.json").is_file()}
    todo = [t for t in tasks if t.index not in done]
    n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    log(f"{len(tasks)} datasets of {cells} cells drawn exactly from {emulator.protocol.name}; emulator {emulator.source}; "
        f"mode {mode}, population {population}, <= {generations} generations; {len(todo)} to run on {n_jobs} "
        f"job(s); writing {out}")
    rows, failed = run_tasks(todo, n_jobs, progress)
    rows = sorted([*done.values(), *rows], key=lambda r: r["index"])
    if not rows:
        raise UserError(f"every dataset failed; the first: {failed[0][1]}")
    return finish(rows, failed, tasks, emulator.protocol.param_names, out, len(done))


def finish(rows: list[dict[str, Any]], failed: list[tuple[int, str]], tasks: Sequence[Task], names: Sequence[str],
           out: Path, reused: int) -> tuple[str, dict[str, Path]]:
    """Write datasets.csv, calibration.csv, sbc_ranks.png (and failed.csv); the printed text and the paths."""
    table = summarise(rows, names)
    paths = {"out": out, "datasets": write_csv(out / "datasets.csv", rows),
             "calibration": write_csv(out / "calibration.csv", table),
             "sbc_ranks": plot_sbc_ranks(rows, names, out / "sbc_ranks.png")}
    fail_path = out / "failed.csv"
    if failed:
        paths["failed"] = write_csv(fail_path, [{"index": i, "error": e} for i, e in sorted(failed)])
    elif fail_path.exists():
        fail_path.unlink()
    text = format_table(table) + f"\n{len(tasks)} datasets ({reused} finished earlier, reused)"
    if failed:
        text += f"; {len(failed)} failed: {', '.join(str(i) for i, _ in sorted(failed))} (see {fail_path})"
    return text, paths
