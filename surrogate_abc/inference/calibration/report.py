"""Outputs of `surrogate-abc calibrate`: the coverage table as text and CSV, datasets.csv, the SBC rank
histograms (sbc_ranks.png; not for a --near-bounds study) and failed.csv."""
from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import UserError
from .bounds import format_near_table, summarise_near
from .datasets import EXACT_TAIL_MASS
from .stats import N_RANK_DRAWS, RANK_BINS, rank_band, summarise


def format_table(table: list[dict[str, Any]]) -> str:
    """The calibration table as aligned text."""
    lines = [f"{'parameter':<22}{'cover 50%':>10}{'band 95%':>14}{'cover 90%':>10}{'band 95%':>14}{'HDI 94%':>9}"
             f"{'band 95%':>14}{'contraction':>13}{'rank z':>8}{'Hellinger':>11}"]
    for r in table:
        if r["coverage_50"] == "":
            lines.append(f"{r['parameter']:<22}{'':>92}{r['hellinger_mean']:>11.4f}  (mean; max {r['hellinger_max']:.4f})")
            continue
        band50 = f"[{r['band50_lo']:.2f}, {r['band50_hi']:.2f}]"
        band90 = f"[{r['band90_lo']:.2f}, {r['band90_hi']:.2f}]"
        band94 = f"[{r['band94_lo']:.2f}, {r['band94_hi']:.2f}]"
        hdi = "-" if r["coverage_94"] == "" else f"{r['coverage_94']:.3f}"  # "-": datasets finished before the HDI
        z = "-" if r.get("rank_z", "") == "" else f"{r['rank_z']:+.1f}"
        lines.append(f"{r['parameter']:<22}{r['coverage_50']:>10.3f}{band50:>14}{r['coverage_90']:>10.3f}{band90:>14}"
                     f"{hdi:>9}{band94:>14}{r['contraction']:>13.3f}{z:>8}")
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
    from ...plots import _save, subplots

    n = len(rows)
    lo, hi = rank_band(n, bins)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
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


NEAR_NOTE = ("near-bounds study: each parameter over the datasets that drew it in the outer fraction of its prior "
             "range (near: how many, low/high side), coverage of the 94% HDI and the 90% central interval, and the "
             "fraction flagged by infer's prior_bound at that side. Coverage conditional on a region of the prior "
             "need not be nominal even for the exact posterior: read it as how the intervals treat a marginal "
             "piled at a bound (a central interval cuts its 5% tail there, an HDI takes the bound in). The truths "
             "are not prior draws, so coverage over all datasets and SBC ranks (no sbc_ranks.png) are left out.")


def finish(rows: list[dict[str, Any]], failed: list[tuple[int, str]], n_datasets: int, names: Sequence[str],
           out: Path, reused: int, near_bounds: bool = False) -> tuple[str, dict[str, Path]]:
    """Write datasets.csv, calibration.csv, sbc_ranks.png (and failed.csv); the printed text and the paths.

    When some datasets' references are not exact (FSP tail mass > EXACT_TAIL_MASS: their cells come from a
    truncated chain, and no emulator is trained there), calibration.csv has a second table, subset
    "exact reference", over the others; the column `subset` tells them apart. `near_bounds`: the study put one
    parameter of each truth near a bound; the tables are bounds.summarise_near's (subset "near bound"), and
    there is no sbc_ranks.png (a stale one is removed)."""
    summary, fmt, label = (summarise_near, format_near_table, "near bound") if near_bounds else \
        (summarise, format_table, "all")
    table = [{"subset": label, **r} for r in summary(rows, names)]
    inexact = [r["index"] for r in rows if float(r.get("fsp_tail_mass") or 0.0) > EXACT_TAIL_MASS]
    exact_rows = [r for r in rows if r["index"] not in inexact]
    sub = [{"subset": "exact reference", **r} for r in summary(exact_rows, names)] if inexact and exact_rows else []
    paths = {"out": out, "datasets": write_csv(out / "datasets.csv", rows),
             "calibration": write_csv(out / "calibration.csv", table + sub)}
    ranks = out / "sbc_ranks.png"
    if not near_bounds:
        paths["sbc_ranks"] = plot_sbc_ranks(rows, names, ranks)
    elif ranks.exists():
        ranks.unlink()
    fail_path = out / "failed.csv"
    if failed:
        paths["failed"] = write_csv(fail_path, [{"index": i, "error": e} for i, e in sorted(failed)])
    elif fail_path.exists():
        fail_path.unlink()
    text = (textwrap.fill(NEAR_NOTE, 110) + "\n" if near_bounds else "") + fmt(table) + \
        f"\n{n_datasets} datasets ({reused} finished earlier, reused)"
    if inexact:
        text += (f"; {len(inexact)} with a reference that is not exact (FSP tail mass > {EXACT_TAIL_MASS:g}; "
                 f"fsp_tail_mass in datasets.csv): {', '.join(map(str, inexact))}")
    tempered = [r["index"] for r in rows if r.get("mode", "likelihood") == "likelihood" and r["final_epsilon"] > 1 + 1e-9]
    if tempered:
        text += (f"; {len(tempered)} stopped above temperature 1 (tempered posteriors, wider than the posterior; "
                 f"see final_epsilon in datasets.csv): {', '.join(map(str, tempered))}")
    if failed:
        text += f"; {len(failed)} failed: {', '.join(str(i) for i, _ in sorted(failed))} (see {fail_path})"
    if sub:
        text += f"\n\nthe {len(exact_rows)} datasets with an exact reference:\n" + fmt(sub)
    return text, paths


def finished_datasets(dirs: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, its result.json) of every finished dataset (ds_*/result.json) of `calibrate --out` folders, in
    folder order; UserError when there is none."""
    out = [(d, json.loads((d / "result.json").read_text())) for root in dirs for d in sorted(Path(root).glob("ds_*"))
           if (d / "result.json").exists()]
    if not out:
        raise UserError(f"no finished datasets (ds_*/result.json) under {', '.join(map(str, dirs))}: "
                        "give the --out folders of surrogate-abc calibrate")
    return out
