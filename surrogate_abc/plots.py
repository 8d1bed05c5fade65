"""Matplotlib figures: histogram step plots, joint-histogram heatmaps, example figures, and the posterior
figures of `surrogate-abc infer` / `report` (marginals.png, pair.png with arviz; ppc.png).

Every figure is a `matplotlib.figure.Figure` drawn and saved here (arviz draws onto its axes), never a pyplot
figure: nothing here chooses or changes the caller's backend (a notebook keeps its own after `sa.infer()`), and
nothing is left open."""
from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .arviz_import import import_arviz
from .metrics import total_variation

PROB_LABEL = "probability per bin"
DENSITY_LABEL = "probability per count (bin mass / width)"


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8), squeeze: bool = True,
             constrained_layout: bool = False) -> tuple[Figure, Any]:
    """(figure, axes) like pyplot.subplots, without pyplot: a Figure of no backend's, saved with savefig."""
    fig = Figure(figsize=figsize, layout="constrained" if constrained_layout else None)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def uniform_widths(edges: np.ndarray) -> bool:
    """True when all bins have the same width (then bin masses are plotted as they are)."""
    w = np.diff(np.asarray(edges, float))
    return bool(np.allclose(w, w[0], rtol=1e-9))


def as_density(edges: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, str]:
    """Bin masses as plotted: unchanged for equal-width bins, divided by the width otherwise (so a
    histogram whose bins widen with the count keeps its shape). Returns (values, y-axis label)."""
    if uniform_widths(edges):
        return np.asarray(probs, float), PROB_LABEL
    return np.asarray(probs, float) / np.diff(np.asarray(edges, float)), DENSITY_LABEL


def axis_label(species: str) -> str:
    """Axis label for a species: '<species> count' for molecule counts, the bare name for the toy 'x'."""
    return species if species == "x" else f"{species} count"


def plot_histograms(ax, edges: np.ndarray, probs: np.ndarray, label: str | None = None, **kwargs):
    """Draw one 1-D histogram (probability per bin) as a step line on `ax`; returns the artist.

    Call it repeatedly on the same axes to compare, e.g., SSA against the exact FSP histogram.
    """
    edges, probs = np.asarray(edges, float), np.asarray(probs, float)
    if probs.shape != (len(edges) - 1,):
        raise ValueError(f"probs must have len(edges) - 1 = {len(edges) - 1} entries, got shape {probs.shape}")
    return ax.stairs(probs, edges, label=label, **kwargs)


def plot_heatmap(ax, edges_x: np.ndarray, edges_y: np.ndarray, probs: np.ndarray, vmin: float | None = None,
                 vmax: float | None = None):
    """Draw a joint histogram (Bx, By) as a heatmap with a log colour scale (x: first species); returns the mesh."""
    p = np.asarray(probs, float)
    positive = p[p > 0]
    lo = vmin if vmin is not None else (positive.min() if positive.size else 1e-12)
    hi = vmax if vmax is not None else (positive.max() if positive.size else 1.0)
    masked = np.ma.masked_less_equal(p.T, 0.0)
    return ax.pcolormesh(edges_x, edges_y, masked, norm=LogNorm(vmin=lo, vmax=max(hi, lo * 10)), shading="flat")


def format_params(names: Sequence[str], values: Sequence[float]) -> str:
    """'k0=0.12, k1=3.4' with 3 significant digits."""
    return ", ".join(f"{k}={v:.3g}" for k, v in zip(names, values))


def plot_examples(path: Path, species: Sequence[str], edges: Sequence[np.ndarray], hists: np.ndarray,
                  thetas: np.ndarray, param_names: Sequence[str], title: str = "") -> Path:
    """Write a PNG of example histograms: 1-D step plots on one axes, or one log heatmap per set in 2-D."""
    path = Path(path)
    if len(species) == 1:
        fig, ax = subplots(figsize=(8, 5), constrained_layout=True)
        ylabel = PROB_LABEL
        for h, th in zip(hists, thetas):
            values, ylabel = as_density(edges[0], h)
            plot_histograms(ax, edges[0], values, label=format_params(param_names, th), linewidth=1.4)
        ax.set_xlabel(axis_label(species[0]))
        ax.set_ylabel(ylabel)
        ax.set_xlim(edges[0][0], edges[0][-1])
        ax.set_ylim(bottom=0)
        # Below the axes, so long parameter lists never hide the histograms.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), title="parameters",
                  title_fontsize=8, frameon=False)
    else:
        k = len(hists)
        cols = min(k, 3)
        rows = -(-k // cols)
        fig, axs = subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False, constrained_layout=True)
        positive = hists[hists > 0]
        vmax = float(positive.max()) if positive.size else 1.0
        vmin = max(float(positive.min()) if positive.size else 1e-12, vmax * 1e-6)
        mesh = None
        for ax, h, th in zip(axs.flat, hists, thetas):
            mesh = plot_heatmap(ax, edges[0], edges[1], h, vmin=vmin, vmax=vmax)
            ax.set_xlabel(axis_label(species[0]))
            ax.set_ylabel(axis_label(species[1]))
            ax.set_title(format_params(param_names, th), fontsize=7)
        for ax in list(axs.flat)[k:]:
            ax.set_visible(False)
        if mesh is not None:
            fig.colorbar(mesh, ax=axs, label=PROB_LABEL + " (log scale)", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return path


def plot_comparison(path: Path, species: str, edges: np.ndarray, reference: np.ndarray, other: np.ndarray,
                    thetas: np.ndarray, param_names: Sequence[str], labels: tuple[str, str],
                    title: str = "") -> Path:
    """One panel per set: `reference` (solid) against `other` (dashed) 1-D histograms, with their total
    variation distance in each panel's title. Used by `show --compare` (e.g. FSP against SSA)."""
    path = Path(path)
    k = len(reference)
    cols = min(k, 2)
    rows = -(-k // cols)
    fig, axs = subplots(rows, cols, figsize=(5.5 * cols, 3.6 * rows), squeeze=False, constrained_layout=True)
    ylabel = PROB_LABEL
    for ax, ref, oth, th in zip(axs.flat, reference, other, thetas):
        r, ylabel = as_density(edges, ref)
        o, _ = as_density(edges, oth)
        plot_histograms(ax, edges, r, label=labels[0], linewidth=1.6, color="black")
        plot_histograms(ax, edges, o, label=labels[1], linewidth=1.2, color="tab:orange", linestyle="--")
        tv = total_variation(ref, oth)
        ax.set_title(f"{format_params(param_names, th)}\nTV = {tv:.4f}", fontsize=7)
        ax.set_xlabel(axis_label(species))
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    for ax in list(axs.flat)[k:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return path


# ------------------------------------------------------------------------------- posterior figures
POSTERIOR_FIGURES = ("marginals.png", "pair.png", "ppc.png")


def plot_posterior_figures(idata, out_dir: Path) -> None:
    """marginals.png, pair.png and ppc.png of an `infer` InferenceData in out_dir."""
    with _quiet_drawing():
        for name, plot in zip(POSTERIOR_FIGURES, (plot_marginals, plot_pair, plot_ppc)):
            plot(idata, Path(out_dir) / name)


@contextmanager
def _quiet_drawing() -> Iterator[None]:
    """Remarks of matplotlib and arviz while drawing are not for the user: layout UserWarnings, deprecations
    between their versions, and the font
    manager's log line that the semibold weight arviz asks for falls back to bold."""
    fonts = logging.getLogger("matplotlib.font_manager")
    level = fonts.level
    fonts.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # arviz 0.23 on matplotlib 3.11
            yield
    finally:
        fonts.setLevel(level)


def _json_attr(idata, key: str) -> dict:
    """A JSON attribute of the posterior group (prior, true_params, edges); {} when absent or unreadable."""
    v = idata.posterior.attrs.get(key)
    try:
        return json.loads(v) if v else {}
    except (TypeError, ValueError):
        return {}


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _draw_marginal(az: Any, idata, k: str, ax, prior: dict, truth: dict, legend: bool = True) -> None:
    """arviz.plot_posterior of parameter k on ax (histogram of all chains, 94% HDI, median; the true value as
    ref_val) plus the prior density (dashed). A log-uniform parameter is drawn on the log10 scale, where its prior
    is flat and the density is per log10 unit."""
    from .inference.priors import prior_pdf_1d

    kind, lo, hi = prior.get(k, (None, None, None))
    log = kind == "loguniform"
    ref = truth.get(k)
    # a histogram, not a KDE: the posterior of a bounded prior stops at its bounds
    az.plot_posterior(idata.posterior[[k]], transform=np.log10 if log else None, hdi_prob=0.94, ax=ax,
                      kind="hist", bins=30, density=True, point_estimate="median", round_to=3,
                      ref_val=None if ref is None else round(float(np.log10(ref) if log else ref), 3),
                      ref_val_color="r", textsize=8, **({"label": "posterior"} if legend else {}))
    if log:
        ax.plot(np.log10([lo, hi]), [1.0 / np.log10(hi / lo)] * 2, "k--", lw=1, label="prior")
    elif kind is not None:
        grid = np.linspace(lo, hi, 400)
        ax.plot(grid, prior_pdf_1d(kind, lo, hi, grid), "k--", lw=1, label="prior")
    ax.set_xlabel(f"log10 {k} (density per log10 unit)" if log else k, fontsize=8)
    if legend:
        ax.legend(fontsize=7)


def plot_marginals(idata, path: Path) -> None:
    """marginals.png: one panel per parameter (see _draw_marginal)."""
    az = import_arviz()
    names = list(idata.posterior.data_vars)
    prior, truth = _json_attr(idata, "prior"), _json_attr(idata, "true_params")
    fig, axes = subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for i, (ax, k) in enumerate(zip(axes[0], names)):
        _draw_marginal(az, idata, k, ax, prior, truth, legend=i == 0)
    _save(fig, path)


def plot_pair(idata, path: Path) -> None:
    """pair.png: arviz.plot_pair of the posterior draws (scatter, marginal densities on the diagonal, the true
    values as reference_values when all are known); a single parameter: its marginal."""
    az = import_arviz()
    names = list(idata.posterior.data_vars)
    if len(names) < 2:  # arviz.plot_pair needs two variables
        fig, ax = subplots(figsize=(3.4, 3.4))
        _draw_marginal(az, idata, names[0], ax, _json_attr(idata, "prior"), _json_attr(idata, "true_params"))
        _save(fig, path)
        return
    truth = _json_attr(idata, "true_params")
    d = len(names)
    fig, grid = subplots(d, d, figsize=(2.4 * d + 1, 2.4 * d + 1), squeeze=False)
    az.plot_pair(idata, var_names=names, kind="scatter", marginals=True, ax=grid,
                 scatter_kwargs={"s": 2, "alpha": 0.3},
                 reference_values={k: truth[k] for k in names} if all(k in truth for k in names) else None,
                 reference_values_kwargs={"color": "r", "markersize": 6})
    _save(fig, path)


def plot_ppc(idata, path: Path) -> None:
    """ppc.png: observed histogram against the posterior predictive (median and 90% band) per observed species
    (marginals for joint data); bin masses divided by bin widths."""
    edges = {k: np.asarray(v, float) for k, v in _json_attr(idata, "edges").items()}
    species = list(edges)
    obs = idata.observed_data["hist"].values
    pred = idata.posterior_predictive["hist"].values
    pred = pred.reshape((-1,) + pred.shape[2:])
    fig, axes = subplots(1, max(len(species), 1), figsize=(5 * max(len(species), 1), 3.2), squeeze=False)
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
    _save(fig, path)
