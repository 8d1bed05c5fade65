"""Matplotlib helpers (Agg backend): histogram step plots, joint-histogram heatmaps, example figures."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

PROB_LABEL = "probability per bin"
DENSITY_LABEL = "probability per count (bin mass / width)"


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
        fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
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
        fig, axs = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False, constrained_layout=True)
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
    plt.close(fig)
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
    fig, axs = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.6 * rows), squeeze=False, constrained_layout=True)
    ylabel = PROB_LABEL
    for ax, ref, oth, th in zip(axs.flat, reference, other, thetas):
        r, ylabel = as_density(edges, ref)
        o, _ = as_density(edges, oth)
        plot_histograms(ax, edges, r, label=labels[0], linewidth=1.6, color="black")
        plot_histograms(ax, edges, o, label=labels[1], linewidth=1.2, color="tab:orange", linestyle="--")
        tv = 0.5 * np.abs(np.asarray(ref) - np.asarray(oth)).sum()
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
    plt.close(fig)
    return path
