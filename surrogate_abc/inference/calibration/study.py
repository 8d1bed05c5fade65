"""`surrogate-abc calibrate`: calibration of the posteriors over the prior (simulation-based calibration).

For each of `datasets` parameter sets drawn from the protocol's prior, draw `cells` cells from the *exact*
stationary distribution (closed form where the network has one, the generating-function law for the gene
model's joint (mRNA, protein) counts, else FSP; seeded by (seed, index)), write them
as OUT/ds_XXX/observed.h5 (true_<param> attributes), run `infer` on it (one chain, no exact check, no plots) and
record, from infer's result in memory (its InferenceData and final weighted populations: the files it wrote
are not read back), per parameter whether the 50% and 90% central credible intervals and the 94% HDI (on the
prior's sampling scale, log for log-uniform priors, as infer's summary computes it) contain the truth, whether infer's prior_bound flag fired, the
posterior contraction, the SBC rank of the truth among 99 posterior draws, and the Hellinger distance between
the posterior predictive and the exact distribution. Coverage should match 50% and 90% within the binomial 95%
band for the number of datasets, and the rank histograms should be flat. With `near_bounds` each truth has
one parameter drawn near a bound of the prior instead (bounds.py), and the table is over those datasets.

Outputs in OUT: ds_XXX/ (observed.h5, infer's outputs, result.json; a rerun reuses datasets whose result.json
exists), datasets.csv (one row per dataset), calibration.csv (the coverage table), sbc_ranks.png and, when
datasets failed, failed.csv. Contraction 1 - var_post / var_prior and the ranks are computed on the
emulator's feature scale (log10 for log-uniform priors).

The statistics are in stats.py, the exact datasets in datasets.py, the outputs in report.py (this package).
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ...config import Protocol
from ...emulators.base import EmulatorLike
from ...errors import UserError
from ...report import warn
from ..settings import Algorithm, InferenceSettings
from ..workers import die_with_parent, one_core, with_notes
from .bounds import check_fraction, flagged_sides, near_thetas
from .datasets import dataset_caps, exact_counts_pmf, make_dataset
from .report import finish
from .stats import parameter_metrics, ppc_hellinger

if TYPE_CHECKING:
    from ..infer import DatasetResult

DEFAULT_OUT = "surrogate-abc-calibration"


# ------------------------------------------------------------------------------------------ the target
def resolve_target(emulator_spec: str | None, protocol_arg: str | None) -> tuple[str, EmulatorLike]:
    """(emulator spec for infer, the emulator) for --emulator / --protocol: DEFAULT (or None) is the shipped
    emulator of --protocol (default gene_protein); a .safetensors file or exact:<protocol> brings its own
    protocol (emulator.protocol), which --protocol, when given, must name."""
    from ...config import load_protocol
    from ...emulators.resolve import RESOURCES, resolve_emulator

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
    """(idata, {param: values}, weights) of a finished infer output folder: the final weighted population of every
    chain from abc.db (each chain's weights scaled to 1/chains), or posterior.nc's equal-weight draws where there
    is no abc.db. Derived variables (burst_frequency, burst_size) are left out: they are not in the database.
    For folders written earlier (benchmarks/ssa_abc_comparison.py); the study takes the same from infer's
    DatasetResult in memory (DatasetResult.weighted_particles)."""
    import arviz as az

    from ...networks.bursts import BURST_VARIABLES

    idata = az.from_netcdf(str(out_dir / "posterior.nc"))
    names = [k for k in idata.posterior.data_vars if k not in BURST_VARIABLES]  # derived ones are not in abc.db
    db = out_dir / "abc.db"
    if not db.is_file():  # no database: equal-weight draws
        post = {k: idata.posterior[k].values.ravel() for k in names}
        n = len(next(iter(post.values())))
        return idata, post, np.full(n, 1.0 / n)
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


# ------------------------------------------------------------------------------------------ one dataset
@dataclass(frozen=True)
class Task:
    """Everything one worker needs for one dataset (picklable)."""

    index: int
    theta: tuple[float, ...]
    protocol: Protocol  # the emulator's
    emulator: str
    out: str  # this dataset's folder
    seed: int
    cells: int
    caps: tuple[int, ...]
    settings: InferenceSettings
    near: tuple[str, str] | None = None  # (parameter, side) drawn near a bound of the prior (--near-bounds)
    near_bounds: float | None = None  # the study's --near-bounds fraction


def _worker_init(parent: int) -> None:
    """One core per dataset (datasets are the parallel unit), an end with the process `parent`; arviz's
    single-chain r_hat remarks silenced."""
    one_core(environment=True)
    die_with_parent(parent)
    import arviz

    from ..output import arviz_logger

    arviz_logger(arviz).setLevel(logging.ERROR)


def infer_dataset(task: Task) -> dict[str, Any]:
    """Make dataset task.index, run infer on it, and return its metrics (also written to result.json)."""
    from ..infer import infer

    out = Path(task.out)
    out.mkdir(parents=True, exist_ok=True)
    theta = np.asarray(task.theta, float)
    t0 = time.perf_counter()
    law = make_dataset(task.protocol, theta, task.index, task.seed, task.cells, out / "observed.h5", task.caps)
    t_data = time.perf_counter() - t0
    result = infer(out / "observed.h5", task.emulator, task.settings, out,
                   command=f"surrogate-abc calibrate dataset {task.index}", log=lambda _msg: None)
    row = {"index": task.index, **task_key(task), "wall_data_s": t_data, "wall_infer_s": time.perf_counter() - t0 - t_data,
           "fsp_tail_mass": law.tail_mass}
    if task.near is not None:
        row.update({"near_parameter": task.near[0], "near_side": task.near[1]})
    row.update(dataset_metrics(task, result, law.pmf, law.overflow))
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(row, indent=1))
    tmp.replace(out / "result.json")
    return row


def task_key(task: Task) -> dict[str, Any]:
    """What makes a dataset's result: stored in its result.json, compared before a rerun reuses it."""
    st = task.settings.algorithm
    return {"emulator": task.emulator, "seed": task.seed, "cells": task.cells, "mode": st.mode,
            "population": st.population, "max_generations": st.generations, "chains": st.chains,
            "min_acceptance_rate": st.min_acceptance_rate, "near_bounds": task.near_bounds}


def reusable(task: Task) -> dict[str, Any] | None:
    """The finished result of task's folder, None when there is none; UserError when it was made with other
    settings or another parameter set (a rerun must not mix them into this study)."""
    path = Path(task.out, "result.json")
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text())
    except ValueError:
        return None  # a damaged result: run the dataset again
    fields = {**task_key(task), **{f"true_{k}": v for k, v in zip(task.protocol.param_names, task.theta)}}
    for name, want in fields.items():
        got = row.get(name)
        same = (isinstance(want, float) and isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-9)) \
            or got == want
        if not same:
            raise UserError(f"{path}: made with {name} {got!r}, this run has {want!r}; use another --out or "
                            f"delete {Path(task.out).parent}/ds_* to start the study again")
    return row


def _worker(task: Task) -> tuple[dict[str, Any], list[str]]:
    """infer_dataset in a worker process, with its warnings collected as note lines for the parent."""
    return with_notes(infer_dataset, task, category=UserWarning)


def dataset_metrics(task: Task, result: DatasetResult, pmf: np.ndarray, overflow: float) -> dict[str, Any]:
    """Run statistics, per-parameter coverage, contraction and SBC rank, and the predictive Hellinger distance, of
    infer's result in memory (its InferenceData and the chains' final weighted populations)."""
    from ..priors import prior_box

    idata = result.idata
    post, w = result.weighted_particles()
    eps = idata.sample_stats["epsilon"].values
    row: dict[str, Any] = {"generations": int(np.isfinite(eps).sum(axis=-1).max()),
                           "final_epsilon": float(eps[np.isfinite(eps)][-1]),
                           "n_simulations": float(np.nansum(idata.sample_stats["n_simulations"].values))}
    box = prior_box(task.protocol, task.settings.algorithm.prior)
    rng = np.random.default_rng([task.seed, task.index, 2])
    for j, k in enumerate(task.protocol.param_names):
        row.update(parameter_metrics(k, box[k], task.theta[j], post[k], w, idata.posterior[k].values, rng))
    row["hellinger_ppc"] = predictive_hellinger(idata, task, pmf, overflow)
    flags = json.loads(idata.posterior.attrs.get("prior_bound", "[]"))  # infer's flags (inference/prior_bounds.py)
    row["prior_bound"] = " ".join(flags)
    row.update(flagged_sides(flags, task.protocol.param_names))
    if task.near is not None:
        row["near_flagged"] = int(row[f"bound_{task.near[0]}"] in (task.near[1], "both"))
    return row


def predictive_hellinger(idata: Any, task: Task, pmf: np.ndarray, overflow: float) -> float:
    """Hellinger distance between the posterior predictive (mean emulated pmf over the posterior draws) and the
    exact pmf binned on the emulator's edges."""
    from ...emulators.exact import bin_integer_pmf

    edges = tuple(np.asarray(e, float) for e in json.loads(idata.posterior.attrs["edges"]).values())
    need = dataset_caps(task.protocol, edges)
    if any(c > s for c, s in zip(need, pmf.shape)):
        pmf, overflow, _ = exact_counts_pmf(task.protocol, np.asarray(task.theta), need)
    exact_binned, exact_over = bin_integer_pmf(pmf, edges)
    pp = idata.posterior_predictive
    pred = pp["hist"].values.reshape((-1,) + exact_binned.shape).mean(axis=0)
    return ppc_hellinger(pred, float(pp["overflow"].values.mean()), exact_binned, exact_over)


# ------------------------------------------------------------------------------------------ summary

# ------------------------------------------------------------------------------------------ driver
def plan(emulator_spec: str | None, datasets: int, cells: int, settings: InferenceSettings, seed: int, out: Path,
         protocol: str | None, near_bounds: float | None = None) -> tuple[EmulatorLike, list[Task]]:
    """Check the input and build one Task per dataset (UserError before anything is written); `near_bounds`: one
    parameter of each truth near a bound of the prior (bounds.near_thetas)."""
    from ...networks import ReactionNetwork
    from ..priors import prior_box

    if datasets < 1:
        raise UserError(f"--datasets must be >= 1, got {datasets}")
    if cells < 1:
        raise UserError(f"--cells must be >= 1, got {cells}")
    if near_bounds is not None:
        near_bounds = check_fraction(near_bounds)
    settings.check()
    spec, emulator = resolve_target(emulator_spec, protocol)
    proto = emulator.protocol
    if not isinstance(proto.network, ReactionNetwork):
        raise UserError(f"protocol {proto.name}: calibrate draws exact cell counts and needs a reaction network")
    caps = dataset_caps(proto, emulator.edges)
    thetas = proto.sample(datasets, seed)
    near: list[tuple[str, str] | None] = [None] * datasets
    if near_bounds is not None:
        box = prior_box(proto, settings.algorithm.prior)
        thetas, targets = near_thetas(thetas, box, proto.param_names, near_bounds, seed)
        near = list(targets)
    tasks = [Task(i, tuple(map(float, th)), proto, spec, str(out / f"ds_{i:03d}"), seed, cells, caps,
                  settings.replace(seed=seed * 100_003 + i), near[i], near_bounds) for i, th in enumerate(thetas)]
    return emulator, tasks


def run_tasks(tasks: Sequence[Task], jobs: int, progress: bool) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Run the tasks (in `jobs` spawned worker processes when jobs > 1); (rows, [(index, error line)])."""
    rows: list[dict[str, Any]] = []
    failed: list[tuple[int, str]] = []
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
                    rows.append(infer_dataset(t))
                except Exception as exc:  # one failed dataset must not lose the others
                    fail(t.index, exc)
                bar.update(1)
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                     initargs=(os.getpid(),)) as pool:
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


# the ABC-SMC options of `calibrate` (their flags and help are inference/settings.py's Algorithm fields)
CALIBRATE_OPTIONS = ("mode", "population", "generations", "chains", "max_walltime", "min_acceptance_rate")
CALIBRATE_DEFAULTS = {"population": 400}  # smaller than infer's: many datasets


def calibration_algorithm(**options: Any) -> Algorithm:
    """The ABC-SMC settings of a calibration from CALIBRATE_OPTIONS (TypeError naming any other)."""
    other = sorted(set(options) - set(CALIBRATE_OPTIONS))
    if other:
        raise TypeError(f"calibrate: unknown option {other[0]!r}; the options are {', '.join(CALIBRATE_OPTIONS)}")
    return Algorithm(**{**CALIBRATE_DEFAULTS, **options})


def calibrate(emulator_spec: str | None, datasets: int, cells: int, algorithm: Algorithm | None = None, seed: int = 0,
              jobs: int | None = None, out: Path | str | None = None, protocol: str | None = None,
              progress: bool = True, log: Callable[[str], None] = print,
              near_bounds: float | None = None) -> tuple[str, dict[str, Path]]:
    """Calibrate an emulator's posteriors over its protocol's prior (module docstring); returns (the printed
    text: coverage table and a line on reused datasets, {name: path} of calibration.csv, datasets.csv,
    sbc_ranks.png (not with near_bounds), the folder and, when datasets failed, failed.csv). `algorithm`: the
    ABC-SMC's settings (default: calibration_algorithm()); `near_bounds`: FRACTION in (0, 0.5], each truth with
    one parameter in the outer FRACTION of its prior range (bounds.py)."""
    alg = algorithm or calibration_algorithm()
    out = Path(out) if out is not None else Path.cwd() / DEFAULT_OUT
    settings = InferenceSettings(algorithm=alg, exact_check="none", chain_jobs=1, plots=False)
    emulator, tasks = plan(emulator_spec, datasets, cells, settings, seed, out, protocol, near_bounds)
    out.mkdir(parents=True, exist_ok=True)
    done = {t.index: row for t in tasks if (row := reusable(t)) is not None}
    todo = [t for t in tasks if t.index not in done]
    n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    where = f" (each with one parameter in the outer {near_bounds:g} of its prior range)" if near_bounds else ""
    log(f"{len(tasks)} datasets of {cells} cells drawn exactly from {emulator.protocol.name}{where}; emulator {emulator.source}; "
        f"mode {alg.mode}, population {alg.population}, <= {alg.generations} generations; {len(todo)} to run on {n_jobs} "
        f"job(s); writing {out}")
    rows, failed = run_tasks(todo, n_jobs, progress)
    rows = sorted([*done.values(), *rows], key=lambda r: r["index"])
    if not rows:
        raise UserError(f"every dataset failed; the first: {failed[0][1]}")
    return finish(rows, failed, len(tasks), emulator.protocol.param_names, out, len(done),
                  near_bounds=near_bounds is not None)
