"""`surrogate-abc infer`: observed data + emulator -> ABC-SMC chains -> posterior.nc, summary.csv, PNGs.

run_dataset (and infer) return a DatasetResult: the InferenceData, the summary table and the chains' final
weighted populations in memory, so that callers (the per-gene path, calibration, the Python API) need not read
back the files just written."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..data.observed import (
    Observed,
    check_observed_in_domain,
    check_observed_predictive,
    load_observed,
    observed_histogram,
    select_species,
)
from ..emulators.base import EmulatorLike
from ..emulators.resolve import model_specs, resolve_models
from ..report import warn
from .exact_check import N_CHECK_DRAWS, exact_counterpart
from .pyabc_bridge.history import ChainResult
from .results_table import default_out_dir
from .run import InferenceSettings, model_boxes, run_chains


def emulator_error_note(emulator: EmulatorLike, n_cells: int, max_nats: float = 1.0) -> str | None:
    """A note when the emulator's held-out error, summed over the observed cells, exceeds max_nats.

    An emulator off by KL per cell shifts the log-likelihood of N cells by about N x KL nats (KLD: the
    max-divergence of its validation metrics, else H2); above ~1 nat the posterior may be shifted or too narrow."""
    vm = emulator.metadata.get("validation_metrics") or {}
    kl = vm.get("KLD", vm.get("H2"))
    if not isinstance(kl, (int, float)) or not np.isfinite(kl) or n_cells * kl <= max_nats:
        return None
    return (f"this emulator's held-out error is KLD {kl:.2g} per cell (H2 {vm.get('H2', float('nan')):.2g}), "
            f"about {n_cells * kl:.1f} nats over {n_cells} cells: the posterior may be shifted or too narrow; "
            "an emulator trained to a smaller error (README: training your own) gives calibrated intervals")


def check_observed(observed: Observed, hist: np.ndarray, overflow: int, emulator: EmulatorLike,
                   ranges: dict | None = None) -> None:
    """DataFileError when the data lie outside what the emulator covers (observed.check_observed_predictive;
    for exact models that solve each set (FSP, the gene model's generating function), whose predictive check would
    solve thousands of sets, the range of means)."""
    from ..emulators.exact import ExactEmulator

    base = getattr(emulator, "inner", emulator)
    if isinstance(base, ExactEmulator) and base.solves_each_set:
        check_observed_in_domain(observed, base.protocol, emulator.source)
    else:
        check_observed_predictive(observed, hist, overflow, emulator, emulator.source, ranges=ranges)


@dataclass(frozen=True)
class DatasetResult:
    """What run_dataset and infer return: the run's outputs in memory.

    idata: the InferenceData (as written to posterior.nc, with the exact check's groups when it ran); table: the
    summary table text; chains: the ChainResults (each chain's final weighted population, natural scale, in
    param_names order); param_names: the parameters of the chains' model; path: posterior.nc, or None when
    nothing was written (run_dataset(write=False))."""

    idata: Any
    table: str
    chains: tuple[Any, ...]
    param_names: tuple[str, ...]
    path: Path | None

    def weighted_particles(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """({parameter: values}, weights) of every chain's final weighted population, each chain's weights scaled
        to 1/chains (they sum to 1). Derived variables (burst_frequency, burst_size) are not among them: they
        are in idata.posterior."""
        params = np.concatenate([np.asarray(c.params, float) for c in self.chains])
        weights = np.concatenate([np.asarray(c.weights, float) / len(self.chains) for c in self.chains])
        return {k: params[:, j] for j, k in enumerate(self.param_names)}, weights


def infer(observed_path: str | Path, emulator_spec: str | None, settings: InferenceSettings, out_dir: Path | None,
          command: str = "", log: Callable[[str], None] = print, sampler_factory=None,
          compare: Sequence[str] | None = None, capture: float | tuple[float, float] | None = None,
          capture_prior: tuple[float, float] | None = None,
          on_table: Callable[[str], None] | None = None, write: bool = True) -> DatasetResult:
    """Run the whole inference on observed.h5; returns the DatasetResult (posterior.nc's path in .path).

    `compare`: several models (protocol names or emulator files) in one ABC-SMC (model selection);
    `capture` / `capture_prior`: the detection probability of each molecule, fixed or with a uniform prior;
    `write` False: only pyabc's abc.db goes to the output folder (run_dataset)."""
    settings.check()
    specs = model_specs(emulator_spec, compare)
    if specs[0] is None:  # the data's species choose the default emulator
        observed = load_observed(observed_path)
        models = resolve_models(specs, observed.species, capture, capture_prior)
    else:  # the emulator's protocol names the datasets to read
        models = resolve_models(specs, (), capture, capture_prior)
        observed = load_observed(observed_path, tuple(models[0][0].species))
    observed = select_species(observed, tuple(models[0][0].species))
    hist, overflow = observed_histogram(observed, tuple(models[0][0].edges))
    for em, _ in models:
        check_observed(observed, hist, overflow, em)
    out = Path(out_dir) if out_dir else default_out_dir(observed_path)
    return run_dataset(observed, hist, overflow, models, settings, out, command=command, log=log,
                       sampler_factory=sampler_factory, on_table=on_table, write=write)


def run_dataset(observed: Observed, hist: np.ndarray, overflow: int, models: Sequence[tuple[EmulatorLike, str]],
                settings: InferenceSettings, out: Path, command: str = "", log: Callable[[str], None] = print,
                sampler_factory=None, attrs: dict | None = None,
                on_table: Callable[[str], None] | None = None, write: bool = True) -> DatasetResult:
    """ABC-SMC on one checked dataset against one model (or several, compared) -> outputs in `out`; returns the
    DatasetResult. In order: summary.csv, the table to `on_table`, the plots; then the exact check and
    reweighting (settings.exact.exact_check, settings.exact.reweight; summary_exact.csv); then posterior.nc, written once with
    every group (also when the exact follow-ups fail, without theirs). `write` False: only abc.db goes to `out`
    (the table still goes to on_table, the exact groups still into the InferenceData) and .path is None."""
    from .output import build_inference_data, write_outputs, write_posterior
    from .prior_bounds import bound_lines, prior_bound_flags

    emulators = [em for em, _ in models]
    for em in emulators:
        note = emulator_error_note(em, observed.n_cells)
        if note:
            warn(note)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "abc.db"
    if db.exists():
        db.unlink()  # a fresh database: chains of an earlier run must not mix with this one's
    names = ", ".join(em.source for em in emulators)
    log(f"{observed.n_cells} cells ({'+'.join(observed.species)}), {'models' if len(models) > 1 else 'emulator'} "
        f"{names}, mode {settings.algorithm.mode}, {settings.algorithm.chains} chain(s) of population {settings.algorithm.population}; writing {out}")
    chains = run_chains(emulators, hist, overflow, settings, db, log=log,
                        sampler_factory=sampler_factory)
    best = chains[0].model
    emulator, sha = models[best]
    box = model_boxes([emulator], settings.algorithm.prior)[0]
    info = {
        "emulator": emulator.source, "emulator_sha256": sha, "command": command, "mode": settings.algorithm.mode,
        "distance": settings.algorithm.distance if settings.algorithm.mode == "simulator" else "multinomial log-likelihood",
        "config_toml": emulator.protocol.toml_text, "network_toml": emulator.protocol.network_toml,
        "protocol": emulator.protocol.name,
        "prior": json.dumps({k: list(v) for k, v in box.items()}),
        "true_params": json.dumps(observed.true_params()),
        "edges": json.dumps({s: np.asarray(e, float).tolist() for s, e in zip(emulator.species, emulator.edges)}),
        "species": ",".join(emulator.species), "n_cells": int(observed.n_cells),
        "observed_file": str(observed.path), "abc_db": str(db), "seed": int(settings.algorithm.seed),
        **(attrs or {}),
    }
    model_names = [em.protocol.name for em in emulators]
    if len(models) > 1:
        probs = np.mean([c.model_probabilities for c in chains], axis=0)
        info.update({"models": json.dumps(model_names), "model": model_names[best],
                     "model_probabilities": json.dumps(dict(zip(model_names, map(float, probs))))})
    idata = build_inference_data(chains, emulator, hist, overflow, info, seed=settings.algorithm.seed,
                                 model_names=model_names if len(models) > 1 else None)
    folder = out if write else None
    flags = prior_bound_flags(idata, box)
    idata.posterior.attrs["prior_bound"] = json.dumps(flags)
    table = write_outputs(idata, folder, plots=settings.plots and write, on_table=on_table)
    for line in bound_lines(flags, box):  # under the table: which interval is one-sided
        warn(line)
    exact = exact_counterpart(emulator) if "exact" in (settings.exact.exact_check, settings.exact.reweight) else None
    nc: Path | None = None
    try:
        if exact is not None:  # after the table: the user has the posterior while the exact model runs
            exact_followups(idata, folder, chains, emulator, exact, hist, overflow, settings, log, on_table)
    finally:
        if write:
            nc = write_posterior(idata, out)
    return DatasetResult(idata=idata, table=table, chains=tuple(chains), param_names=tuple(emulator.param_names),
                         path=nc)


def exact_followups(idata: Any, out: Path | None, chains: Sequence[ChainResult], emulator: EmulatorLike, exact: EmulatorLike,
                    hist: np.ndarray, overflow: int, settings: InferenceSettings, log: Callable[[str], None],
                    on_table: Callable[[str], None] | None) -> None:
    """--check exact and --reweight exact: compute, report one line each, add their groups to idata (which
    run_dataset then writes to posterior.nc) and, when reweighted, write out/summary_exact.csv (out None: none)."""
    from .exact_check import budget_note, check_draws, check_exact, estimate_seconds, reweight_exact
    from .output import add_exact_groups, summarise

    draws = np.concatenate([c.params for c in chains])
    check = reweighted = None
    if settings.exact.exact_check == "exact":
        theta = check_draws(draws, N_CHECK_DRAWS, settings.algorithm.seed)
        estimate, first_row = estimate_seconds(exact, theta, settings.execution.chain_jobs)
        if estimate > settings.exact.check_budget:
            warn(budget_note(estimate, settings.exact.check_budget))
        else:
            check = check_exact(emulator, exact, draws, hist, overflow, seed=settings.algorithm.seed, jobs=settings.execution.chain_jobs,
                                first_row=first_row)
            log(check.line())
            if check.sd > 1.0:
                warn(f"the emulator's log-likelihood differs from the exact one by {check.sd:.1f} nats (sd over "
                     "posterior draws): the posterior may be shifted or too narrow; --reweight exact corrects it")
    if settings.exact.reweight == "exact":
        n = sum(len(c.params) for c in chains)
        log(f"reweighting {n} particles with the exact model {exact.source} ...")
        reweighted = reweight_exact(emulator, exact, chains, hist, overflow, jobs=settings.execution.chain_jobs)
        log(reweighted.line())
        if not reweighted.healthy(settings.algorithm.population):
            warn(f"after exact reweighting the ESS is {min(reweighted.ess):.0f} of {settings.algorithm.population} particles "
                 "(< 10%): posterior_exact rests on few particles; the emulator is far off here (retrain it, or "
                 "run --emulator exact:<protocol>)")
    if check is None and reweighted is None:
        return
    add_exact_groups(idata, check, reweighted, chains, emulator, seed=settings.algorithm.seed)
    if reweighted is not None:
        exact_table = summarise(idata, group="posterior_exact")
        if out is not None:
            exact_table.to_csv(out / "summary_exact.csv")
        if on_table is not None:
            on_table("posterior reweighted to the exact likelihood (posterior_exact):\n" + exact_table.to_string())

