"""differential_<pair>.png: the log2 fold change of burst size against that of burst frequency for every gene
compared (posterior medians, coloured by which variable was called changed), and a volcano-style plot per
variable: the median log2 fold change against the evidence for its sign, -log10 of 2 min(P(<= 0), P(>= 0)) (what
the Benjamini-Hochberg procedure of the call takes; its cut drawn dashed), coloured by the call. Figure objects
only: the caller's matplotlib backend is left alone."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from .foldchange import CallRule, FoldChanges, benjamini_hochberg

CALL_COLOURS = {"up": "tab:red", "down": "tab:blue", "unchanged": "tab:green", "undecided": "0.6"}


def plot_pair(pair: str, changes: Mapping[str, tuple[list[str], FoldChanges]], rule: CallRule, path: Path) -> Path:
    """Draw the three panels of one pair to `path`."""
    from matplotlib.figure import Figure

    _, freq = changes["burst_frequency"]
    _, size = changes["burst_size"]
    fig = Figure(figsize=(15.0, 5.0), dpi=110)
    ax = fig.add_subplot(1, 3, 1)
    f_hit, s_hit = np.isin(freq.call, ("up", "down")), np.isin(size.call, ("up", "down"))
    groups = (("neither called", ~f_hit & ~s_hit, "0.6"), ("frequency only", f_hit & ~s_hit, "tab:blue"),
              ("size only", ~f_hit & s_hit, "tab:orange"), ("both", f_hit & s_hit, "tab:red"))
    alpha = float(np.clip(30.0 / np.sqrt(max(len(freq.median), 1)), 0.15, 0.9))
    for label, mask, colour in groups:
        if mask.any():
            ax.scatter(freq.median[mask], size.median[mask], s=9, color=colour, alpha=alpha if label == "neither "
                       "called" else 0.9, label=f"{label} ({int(mask.sum())})")
    for t in (-rule.threshold, rule.threshold):
        ax.axvline(t, color="0.4", lw=0.6, ls="--")
        ax.axhline(t, color="0.4", lw=0.6, ls="--")
    ax.set_xlabel("log2 fold change of burst frequency")
    ax.set_ylabel("log2 fold change of burst size")
    ax.set_title(f"{pair}: {len(freq.median)} genes (posterior medians)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, alpha=0.3)
    for k, (variable, fc) in enumerate((("burst frequency", freq), ("burst size", size))):
        ax = fig.add_subplot(1, 3, k + 2)
        y = -np.log10(fc.p_sign)
        for call, colour in CALL_COLOURS.items():
            mask = fc.call == call
            if mask.any():
                ax.scatter(fc.median[mask], y[mask], s=9, color=colour,
                           alpha=alpha if call == "undecided" else 0.9, label=f"{call} ({int(mask.sum())})")
        for t in (-rule.threshold, rule.threshold):
            ax.axvline(t, color="0.4", lw=0.6, ls="--")
        found = benjamini_hochberg(fc.p_sign, 1.0 - rule.probability)
        if found.any():
            ax.axhline(-np.log10(fc.p_sign[found].max()), color="0.4", lw=0.6, ls="--")
        ax.set_xlabel(f"log2 fold change of {variable} (median)")
        ax.set_ylabel("-log10 2 min(P(<= 0), P(>= 0))")
        ax.set_title(f"{variable}: P >= {rule.probability:g}, |log2 FC| > {rule.threshold:g}, "
                     f"FDR {1 - rule.probability:.3g}")
        ax.legend(loc="best", fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
