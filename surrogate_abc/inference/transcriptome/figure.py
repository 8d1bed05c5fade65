"""genes.png: burst size against burst frequency across genes (log axes), each gene with its 90% intervals;
flagged genes (poor fit, against a prior bound, low ESS) drawn apart. It takes the genes.csv rows and leaves
the caller's matplotlib backend alone (a figure object, saved and closed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

X, Y = "burst_frequency", "burst_size"


def plot_genes(rows: Sequence[Mapping[str, Any]], path: Path, reference: Mapping[str, tuple[float, float]] | None = None
               ) -> Path | None:
    """Draw the figure to `path`; None when the rows have no burst variables (a model without bursts).
    `reference`: optional {gene: (burst_frequency, burst_size)} true values, drawn as crosses."""
    if not rows or f"{X}_median" not in rows[0]:
        return None
    from matplotlib.figure import Figure

    def col(key: str) -> np.ndarray:
        return np.array([float(r.get(key, np.nan)) for r in rows])

    flagged = np.array([bool(str(r.get("flags", ""))) for r in rows])
    fig = Figure(figsize=(7.0, 6.0), dpi=120)
    ax = fig.add_subplot()
    alpha = float(np.clip(30.0 / np.sqrt(len(rows)), 0.05, 0.8))
    for mask, colour, label in ((~flagged, "tab:blue", "fits"), (flagged, "tab:red", "flagged")):
        if not mask.any():
            continue
        x, y = col(f"{X}_median")[mask], col(f"{Y}_median")[mask]
        xerr = np.abs(np.stack([x - col(f"{X}_q05")[mask], col(f"{X}_q95")[mask] - x]))
        yerr = np.abs(np.stack([y - col(f"{Y}_q05")[mask], col(f"{Y}_q95")[mask] - y]))
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="none", ecolor=colour, alpha=alpha, lw=0.8)
        ax.scatter(x, y, s=10, color=colour, label=f"{label} ({int(mask.sum())})", zorder=3,
                   marker="o" if label == "fits" else "^")
    if reference:
        ref = np.array([reference[str(r["gene"])] for r in rows if str(r["gene"]) in reference])
        if len(ref):
            ax.scatter(ref[:, 0], ref[:, 1], marker="x", s=12, color="black", label="true", zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("burst frequency (per mRNA lifetime)")
    ax.set_ylabel("burst size (mRNA per burst)")
    ax.set_title(f"{len(rows)} genes: posterior median and 90% intervals")
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
