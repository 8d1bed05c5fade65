"""Inference outputs: posterior.nc (ArviZ InferenceData), summary.csv and the PNG plots.

posterior.nc groups:
  posterior            one variable per parameter (chain, draw): equal-weight draws resampled from each
                       chain's final weighted population (one chain per ABC run)
  sample_stats         weight, particle (chain, draw): normalised importance weight and index of the particle
                       each draw was resampled from; epsilon (or temperature), acceptance_rate, ess,
                       n_simulations, wall_time (chain, generation), NaN-padded when chains differ in length
  posterior_predictive hist (chain, draw, bin...) emulated bin probabilities at the draws, overflow (chain, draw)
  observed_data        hist (bin...) observed fraction of cells per bin, counts (bin...), overflow_count
  attributes (every group) emulator, emulator_sha256, command, mode, protocol config_toml, network_toml, prior (JSON),
                       true parameters (JSON), edges (JSON), species, n_cells, observed_file
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SUMMARY_COLUMNS = ("mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "r_hat")


def _az():
    os.environ.setdefault("MPLBACKEND", "Agg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def resample_equal(params: np.ndarray, weights: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of n_draws equal-weight draws from a weighted population (multinomial resampling)."""
    w = np.asarray(weights, float)
    return rng.choice(len(params), size=n_draws, replace=True, p=w / w.sum())


def build_inference_data(chains: Sequence[Any], emulator: Any, hist: np.ndarray, overflow: int,
                         attrs: dict[str, Any], seed: int = 0):
    """ArviZ InferenceData from ChainResults (see the module docstring for the layout)."""
    az = _az()
    import xarray as xr

    names = tuple(emulator.param_names)
    n_draws = min(len(c.params) for c in chains)
    rng = np.random.default_rng([seed, 7])
    idx = np.stack([resample_equal(c.params, c.weights, n_draws, rng) for c in chains])  # (C, N)
    draws = np.stack([c.params[i] for c, i in zip(chains, idx)])  # (C, N, d)
    weights = np.stack([c.weights[i] for c, i in zip(chains, idx)])
    posterior = {k: draws[..., j] for j, k in enumerate(names)}

    flat = draws.reshape(-1, len(names))
    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    probs, ovf = emulator.pmf(uniq)
    probs, ovf = np.asarray(probs)[inv.ravel()], np.asarray(ovf)[inv.ravel()]
    C, N = draws.shape[:2]
    bin_dims = ["bin"] if hist.ndim == 1 else [f"bin_{s}" for s in emulator.species]
    n_cells = int(hist.sum() + overflow)
    dims = {"hist": bin_dims, "counts": bin_dims}
    idata = az.from_dict(
        posterior=posterior,
        posterior_predictive={"hist": probs.reshape((C, N) + hist.shape), "overflow": ovf.reshape(C, N)},
        observed_data={"hist": hist / max(n_cells, 1), "counts": hist, "overflow_count": np.array([overflow])},
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
    idata.add_groups({"sample_stats": stats})
    for g in idata.groups():
        idata[g].attrs.update(attrs)
    return idata


def arviz_logger(az) -> logging.Logger:
    """arviz's own logger: arviz 0.x builds it as logging.Logger("arviz"), outside logging.getLogger's registry."""
    log = getattr(az, "_log", None)
    return log if isinstance(log, logging.Logger) else logging.getLogger("arviz")


def summarise(idata) -> "Any":
    """arviz.summary (mean, sd, 94% HDI, ess, r_hat) of the posterior parameters, as a DataFrame.

    With one chain r_hat is undefined (NaN); arviz's log warning about the chain count is silenced then."""
    az = _az()
    log = arviz_logger(az)
    level = log.level
    if idata.posterior.sizes.get("chain", 1) < 2:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.summary(idata, var_names=list(idata.posterior.data_vars), hdi_prob=0.94)
    finally:
        log.setLevel(level)


def write_outputs(idata, out_dir: Path) -> tuple[Path, str]:
    """Write posterior.nc, summary.csv and the PNGs into out_dir; returns (posterior.nc path, printed table)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    nc = out_dir / "posterior.nc"
    if nc.exists():
        nc.unlink()
    idata.to_netcdf(str(nc))
    table = report_from_idata(idata, out_dir)
    return nc, table


def report_from_idata(idata, out_dir: Path) -> str:
    """summary.csv and marginals.png, pair.png, ppc.png from an InferenceData; returns the summary table text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    df = summarise(idata)
    df.to_csv(out_dir / "summary.csv")
    plot_marginals(idata, out_dir / "marginals.png")
    plot_pair(idata, out_dir / "pair.png")
    plot_ppc(idata, out_dir / "ppc.png")
    return df.to_string()


def report(posterior_nc: Path, out_dir: Path | None = None) -> str:
    """Regenerate summary.csv and the PNGs from a posterior.nc (`surrogate-abc report`)."""
    from ..errors import DataFileError

    p = Path(posterior_nc)
    if not p.is_file():
        raise DataFileError(f"{p}: file not found; give the posterior.nc written by `surrogate-abc infer`")
    az = _az()
    try:
        idata = az.from_netcdf(str(p))
    except Exception as exc:
        raise DataFileError(f"{p}: not an ArviZ netCDF file ({type(exc).__name__}); give the posterior.nc written "
                            "by `surrogate-abc infer`") from None
    if "posterior" not in idata.groups() or "observed_data" not in idata.groups():
        raise DataFileError(f"{p}: groups posterior and observed_data are missing; it was not written by surrogate-abc")
    table = report_from_idata(idata, Path(out_dir) if out_dir else p.parent)
    return table


# --------------------------------------------------------------------------------------- plots
def _attrs(idata) -> dict:
    return dict(idata.posterior.attrs)


def _json_attr(idata, key: str) -> dict:
    v = _attrs(idata).get(key)
    try:
        return json.loads(v) if v else {}
    except (TypeError, ValueError):
        return {}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_marginals(idata, path: Path) -> None:
    """Histogram of each parameter's posterior draws (all chains) with the prior density and the true value."""
    from .priors import prior_pdf_1d

    plt = _plt()
    names = list(idata.posterior.data_vars)
    prior, truth = _json_attr(idata, "prior"), _json_attr(idata, "true_params")
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, k in zip(axes[0], names):
        x = idata.posterior[k].values.ravel()
        kind, lo, hi = prior.get(k, ("uniform", float(x.min()), float(x.max())))
        if kind == "loguniform":  # log axis, densities per unit log10: the prior is flat and the posterior readable
            edges = np.geomspace(lo, hi, 41)
            ax.hist(x, bins=edges, weights=np.full(len(x), 1.0 / (len(x) * np.diff(np.log10(edges))[0])), alpha=0.6,
                    label="posterior")
            ax.set_xscale("log")
            ax.set_xlabel(f"{k} (density per log10 unit)")
            if k in prior:
                ax.plot([lo, hi], [1.0 / np.log10(hi / lo)] * 2, "k--", lw=1, label="prior")
        else:
            ax.hist(x, bins=40, density=True, alpha=0.6, label="posterior")
            ax.set_xlabel(k)
            if k in prior:
                grid = np.linspace(lo, hi, 400)
                ax.plot(grid, prior_pdf_1d(kind, lo, hi, grid), "k--", lw=1, label="prior")
        if k in truth:
            ax.axvline(truth[k], color="r", lw=1, label="true")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pair(idata, path: Path) -> None:
    """Pair plot of the posterior draws (scatter below the diagonal, histograms on it)."""
    plt = _plt()
    names = list(idata.posterior.data_vars)
    d = len(names)
    fig, axes = plt.subplots(d, d, figsize=(2.4 * d + 1, 2.4 * d + 1), squeeze=False)
    vals = {k: idata.posterior[k].values.ravel() for k in names}
    for i, ki in enumerate(names):
        for j, kj in enumerate(names):
            ax = axes[i][j]
            if i == j:
                ax.hist(vals[ki], bins=30, color="C0", alpha=0.7)
            elif i > j:
                ax.scatter(vals[kj], vals[ki], s=2, alpha=0.3)
            else:
                ax.axis("off")
            if i == d - 1:
                ax.set_xlabel(kj)
            if j == 0 and i > 0:
                ax.set_ylabel(ki)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ppc(idata, path: Path) -> None:
    """Observed histogram against the posterior predictive (median and 90% band) per observed species
    (marginals for joint data); bin masses divided by bin widths."""
    plt = _plt()
    edges = {k: np.asarray(v, float) for k, v in _json_attr(idata, "edges").items()}
    species = list(edges)
    obs = idata.observed_data["hist"].values
    pred = idata.posterior_predictive["hist"].values
    pred = pred.reshape((-1,) + pred.shape[2:])
    fig, axes = plt.subplots(1, max(len(species), 1), figsize=(5 * max(len(species), 1), 3.2), squeeze=False)
    for ax_i, s in enumerate(species):
        others = tuple(a for a in range(obs.ndim) if a != ax_i)
        o = obs.sum(axis=others) if others else obs
        p = pred.sum(axis=tuple(a + 1 for a in others)) if others else pred
        e = edges[s]
        w = np.diff(e)
        lo, med, hi = np.quantile(p, [0.05, 0.5, 0.95], axis=0)
        ax = axes[0][ax_i]
        ax.fill_between(e[:-1], lo / w, hi / w, step="post", alpha=0.3, color="C1", label="posterior predictive 90%")
        ax.step(e[:-1], med / w, where="post", color="C1", lw=1, label="posterior predictive median")
        ax.step(e[:-1], o / w, where="post", color="k", lw=1, label="observed")
        ax.set_xlabel(s)
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
