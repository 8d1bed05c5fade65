"""Inference outputs: posterior.nc (ArviZ InferenceData), summary.csv and the PNG plots (drawn by
surrogate_abc.plots.plot_posterior_figures). infer.run_dataset writes summary.csv and the plots first
(write_outputs), then posterior.nc once (write_posterior), after the exact check's groups are in.

posterior.nc groups:
  posterior            one variable per parameter (chain, draw): equal-weight draws resampled from each
                       chain's final weighted population (one chain per ABC run)
  sample_stats         weight, particle (chain, draw): normalised importance weight and index of the particle
                       each draw was resampled from; epsilon (or temperature), acceptance_rate, ess,
                       n_simulations, wall_time (chain, generation), NaN-padded when chains differ in length
  posterior_predictive hist (chain, draw, bin...) emulated bin probabilities at the draws, overflow (chain, draw)
  observed_data        hist (bin...) observed fraction of cells per bin, counts (bin...), overflow_count
  log_likelihood       cells (chain, draw, cell): log-likelihood of each observed cell (its bin's emulated
                       probability) at the draws, for arviz.loo / arviz.compare
  model_selection      (with --compare) probability (chain, model): posterior model probabilities of each
                       chain's last population; `posterior` then holds the most probable model's parameters
  diagnostics          (with --check exact) h2, kld, dloglik and the parameters (check_draw): the emulator
                       against the exact model at posterior draws (exact_check.py), its summary in attributes
  posterior_exact      (with --reweight exact) equal-weight draws from the final populations reweighted to the
                       exact likelihood (chain, draw), and their weight
  posterior also holds burst_frequency and burst_size (chain, draw) for bursty mRNA models (networks/bursts.py)
  attributes (every group) emulator, emulator_sha256, command, mode, protocol config_toml, network_toml, prior (JSON),
                       true parameters (JSON), edges (JSON), species, n_cells, observed_file
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..arviz_import import import_arviz
from ..emulators.base import EmulatorLike
from ..metrics import log_probs
from .pyabc_bridge.history import ChainResult
from .settings import HDI_PROB

SUMMARY_COLUMNS = ("mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "r_hat")


def resample_indices(weights: np.ndarray, n_draws: int, seed: Sequence[int]) -> np.ndarray:
    """Indices of n_draws equal-weight draws from a weighted population: pyabc.weighted_statistics.resample
    (multinomial, with numpy's global generator) seeded by `seed`; the global generator's state is restored."""
    from pyabc.weighted_statistics import resample

    state = np.random.get_state()
    np.random.seed([int(s) % 2**32 for s in seed])
    try:
        return resample(np.arange(len(weights)), weights, n_draws)
    finally:
        np.random.set_state(state)


def build_inference_data(chains: Sequence[ChainResult], emulator: EmulatorLike, hist: np.ndarray, overflow: int,
                         attrs: dict[str, Any], seed: int = 0, model_names: Sequence[str] | None = None):
    """ArviZ InferenceData from ChainResults (see the module docstring for the layout)."""
    az = import_arviz()
    import xarray as xr

    from ..networks.bursts import burst_kinetics

    names = tuple(emulator.param_names)
    n_draws = min(len(c.params) for c in chains)
    idx = np.stack([resample_indices(c.weights, n_draws, (seed, 7, c.chain)) for c in chains])  # (C, N)
    draws = np.stack([c.params[i] for c, i in zip(chains, idx)])  # (C, N, d)
    weights = np.stack([c.weights[i] for c, i in zip(chains, idx)])
    posterior = {k: draws[..., j] for j, k in enumerate(names)}
    C, N = draws.shape[:2]
    flat = draws.reshape(-1, len(names))
    posterior.update({k: v.reshape(C, N) for k, v in burst_kinetics(emulator.protocol, flat).items()})

    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    probs, ovf = emulator.pmf(uniq)
    probs, ovf = np.asarray(probs)[inv.ravel()], np.asarray(ovf)[inv.ravel()]
    bin_dims = ["bin"] if hist.ndim == 1 else [f"bin_{s}" for s in emulator.species]
    n_cells = int(hist.sum() + overflow)
    dims = {"hist": bin_dims, "counts": bin_dims, "cells": ["cell"]}
    idata = az.from_dict(
        posterior=posterior,
        posterior_predictive={"hist": probs.reshape((C, N) + hist.shape), "overflow": ovf.reshape(C, N)},
        observed_data={"hist": hist / max(n_cells, 1), "counts": hist, "overflow_count": np.array([overflow])},
        log_likelihood={"cells": pointwise_log_likelihood(probs, ovf, hist, overflow).reshape(C, N, n_cells)},
        dims=dims,
    )
    G = max(len(c.epsilon) for c in chains)

    def pad(key):
        out = np.full((C, G), np.nan)
        for i, c in enumerate(chains):
            v = getattr(c, key)
            out[i, : len(v)] = v
        return out

    stats = xr.Dataset(
        {"weight": (("chain", "draw"), weights), "particle": (("chain", "draw"), idx),
         **{k: (("chain", "generation"), pad(k)) for k in ("epsilon", "acceptance_rate", "ess", "n_simulations", "wall_time")},
         "run_id": (("chain",), np.array([c.run_id for c in chains]))},
        coords={"chain": np.arange(C), "draw": np.arange(N), "generation": np.arange(G)},
        attrs={**attrs, "epsilon_kind": "temperature" if attrs.get("mode") == "likelihood" else "epsilon"},
    )
    groups = {"sample_stats": stats}
    if model_names is not None:
        groups["model_selection"] = xr.Dataset(
            {"probability": (("chain", "model"), np.stack([c.model_probabilities for c in chains]))},
            coords={"chain": np.arange(C), "model": list(model_names)})
    with warnings.catch_warnings():  # model_selection is not one of arviz's schema groups
        warnings.simplefilter("ignore", UserWarning)
        idata.add_groups(groups)
    for g in idata.groups():
        idata[g].attrs.update(attrs)
    return idata


def add_exact_groups(idata, check: Any, reweighted: Any, chains: Sequence[ChainResult], emulator: EmulatorLike, seed: int = 0) -> None:
    """Groups `diagnostics` (the exact check at its draws, its summary in attributes) and `posterior_exact`
    (equal-weight draws from each chain's final population reweighted to the exact likelihood)."""
    import xarray as xr

    from ..networks.bursts import burst_kinetics

    names = tuple(emulator.param_names)
    attrs = dict(idata.posterior.attrs)
    groups = {}
    if check is not None:
        groups["diagnostics"] = xr.Dataset(
            {"h2": (("check_draw",), check.h2), "kld": (("check_draw",), check.kld),
             "dloglik": (("check_draw",), check.dloglik),
             **{k: (("check_draw",), check.theta[:, j]) for j, k in enumerate(names)}},
            attrs={**attrs, **check.attrs(), "dloglik": "emulator minus exact log-likelihood of the observed data"})
    if reweighted is not None:
        n_draws = min(len(c.params) for c in chains)
        idx = np.stack([resample_indices(w, n_draws, (seed, 11, c.chain)) for c, w in zip(chains, reweighted.weights)])
        draws = np.stack([c.params[i] for c, i in zip(chains, idx)])
        C, N = draws.shape[:2]
        data = {k: (("chain", "draw"), draws[..., j]) for j, k in enumerate(names)}
        data.update({k: (("chain", "draw"), v.reshape(C, N))
                     for k, v in burst_kinetics(emulator.protocol, draws.reshape(-1, len(names))).items()})
        groups["posterior_exact"] = xr.Dataset(
            {**data, "weight": (("chain", "draw"), np.stack([w[i] for w, i in zip(reweighted.weights, idx)]))},
            coords={"chain": np.arange(C), "draw": np.arange(N)},
            attrs={**attrs, "ess": json_list(reweighted.ess), "ess_before": json_list(reweighted.ess_before),
                   "reweight_seconds": float(reweighted.seconds)})
    with warnings.catch_warnings():  # not among arviz's schema groups
        warnings.simplefilter("ignore", UserWarning)
        idata.add_groups(groups)


def json_list(values: Sequence[float]) -> str:
    import json

    return json.dumps([float(v) for v in values])


def pointwise_log_likelihood(probs: np.ndarray, overflow_probs: np.ndarray, hist: np.ndarray,
                             overflow: int) -> np.ndarray:
    """(draws, cells) log-likelihood of each observed cell at each draw: log of the emulated probability of the
    cell's bin (or of the overflow), the terms whose sum is the likelihood ABC used; cells ordered by bin."""
    flat = np.concatenate([np.asarray(probs).reshape(len(probs), -1), np.asarray(overflow_probs)[:, None]], axis=1)
    counts = np.concatenate([np.asarray(hist).ravel(), [overflow]]).astype(np.int64)
    cell_category = np.repeat(np.arange(len(counts)), counts)
    return log_probs(flat[:, cell_category])


def arviz_logger(az) -> logging.Logger:
    """arviz's own logger: arviz 0.x builds it as logging.Logger("arviz"), outside logging.getLogger's registry."""
    log = getattr(az, "_log", None)
    return log if isinstance(log, logging.Logger) else logging.getLogger("arviz")


def summarise(idata, group: str = "posterior") -> "Any":
    """arviz.summary (mean, sd, 94% HDI, ess, r_hat) of a posterior group's variables, as a DataFrame.

    The HDI of a parameter with a log-uniform prior (the run's `prior` attribute) is taken on the log scale, the
    prior's sampling scale, where the prior is flat (`log_scale_hdi`). With one chain r_hat is undefined (NaN);
    arviz's log warning about the chain count is silenced then."""
    az = import_arviz()
    log = arviz_logger(az)
    level = log.level
    post = idata[group]
    if post.sizes.get("chain", 1) < 2:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = az.summary(post, var_names=[v for v in post.data_vars if v != "weight"], hdi_prob=HDI_PROB)
    finally:
        log.setLevel(level)
    stats = idata["sample_stats"] if "sample_stats" in idata.groups() else None
    prior = json.loads(stats.attrs.get("prior", "{}")) if stats is not None else {}
    for name, (kind, *_bounds) in prior.items():
        if kind == "loguniform" and name in post.data_vars and name in table.index:
            lo, hi = log_scale_hdi(np.asarray(post[name], float).ravel(), az)
            table.loc[name, ["hdi_3%", "hdi_97%"]] = round(lo, 3), round(hi, 3)
    return table


def log_scale_hdi(x: np.ndarray, az: Any) -> tuple[float, float]:
    """The 94% HDI of positive draws x taken on log x and mapped back. For a log-uniform prior the log is the
    scale on which the prior is flat; on the natural scale the HDI of a posterior spread over decades leans to its
    low end and misses truths near the upper bound (`calibrate --near-bounds` on the protein emulator: k0 in the
    top tenth of its range inside the natural-scale HDI 5 of 12 times, the log-scale one 12 of 12)."""
    lo, hi = az.hdi(np.log(np.maximum(x, 1e-300)), hdi_prob=HDI_PROB)
    return float(np.exp(lo)), float(np.exp(hi))


def write_outputs(idata, out_dir: Path | None, plots: bool = True,
                  on_table: Callable[[str], None] | None = None) -> str:
    """summary.csv into out_dir, the summary table to `on_table` (the command line prints it there, before the
    plots are drawn), then the PNGs (unless plots is False; `surrogate-abc report` draws them later); returns the
    summary table text. A posterior.nc of an earlier run in out_dir is removed: write_posterior writes this run's,
    once the exact follow-ups have added their groups. out_dir None: nothing is written, the table is returned."""
    if out_dir is None:
        table = summarise(idata).to_string()
        if on_table is not None:
            on_table(table)
        return table
    out_dir.mkdir(parents=True, exist_ok=True)
    nc = out_dir / "posterior.nc"
    if nc.exists():
        nc.unlink()
    table = report_from_idata(idata, out_dir, plots=False)
    if on_table is not None:
        on_table(table)
    if plots:
        from ..plots import plot_posterior_figures

        plot_posterior_figures(idata, out_dir)
    return table


def write_posterior(idata, out_dir: Path) -> Path:
    """out_dir/posterior.nc (written to posterior.nc.partial and renamed, so it is never half-written); its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    nc = out_dir / "posterior.nc"
    tmp = nc.with_suffix(".nc.partial")
    idata.to_netcdf(str(tmp))
    tmp.replace(nc)
    return nc


def report_from_idata(idata, out_dir: Path, plots: bool = True) -> str:
    """summary.csv (and marginals.png, pair.png, ppc.png) from an InferenceData; returns the summary table text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    df = summarise(idata)
    df.to_csv(out_dir / "summary.csv")
    if plots:
        from ..plots import plot_posterior_figures

        plot_posterior_figures(idata, out_dir)
    return df.to_string()


def report(posterior_nc: Path, out_dir: Path | None = None) -> str:
    """Regenerate summary.csv and the PNGs from a posterior.nc (`surrogate-abc report`)."""
    from ..errors import DataFileError

    p = Path(posterior_nc)
    if not p.is_file():
        raise DataFileError(f"{p}: file not found; give the posterior.nc written by `surrogate-abc infer`")
    az = import_arviz()
    try:
        idata = az.from_netcdf(str(p))
    except Exception as exc:
        raise DataFileError(f"{p}: not an ArviZ netCDF file ({type(exc).__name__}); give the posterior.nc written "
                            "by `surrogate-abc infer`") from None
    if "posterior" not in idata.groups() or "observed_data" not in idata.groups():
        raise DataFileError(f"{p}: groups posterior and observed_data are missing; it was not written by surrogate-abc")
    table = report_from_idata(idata, Path(out_dir) if out_dir else p.parent)
    return table
