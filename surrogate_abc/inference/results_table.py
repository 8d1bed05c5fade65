"""What every run over a table of genes shares: genes.csv (`write_genes_csv`), the printed table (`format_genes`),
the quantiles reported per variable and the default output folder. No pyabc, no torch."""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

QUANTILES = {"median": 0.5, "q05": 0.05, "q95": 0.95}


def default_out_dir(observed_path: str | Path) -> Path:
    """./surrogate-abc-<observed file stem>/"""
    return Path.cwd() / f"surrogate-abc-{Path(observed_path).stem}"


def write_genes_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """genes.csv (columns: the union of the rows' keys, in first-seen order); written to a temporary name and
    renamed, so the file is never half-written."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    tmp = path.with_suffix(".csv.partial")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    tmp.replace(path)
    return path


def format_genes(rows: Sequence[Mapping[str, Any]]) -> str:
    """The printed table: per gene cells, mean, Fano and median [5%, 95%] of each parameter/derived variable."""
    if not rows:
        return "(no genes)"
    variables = [k[: -len("_median")] for k in rows[0] if k.endswith("_median")]
    probs = [k for k in rows[0] if k.startswith("p_")]
    head = ["gene", "cells", "mean", "Fano"] + (["model"] + probs if probs else []) + variables
    lines = [head]
    for r in rows:
        cells = [str(r["gene"]), str(r["cells"]), f"{r['mean']:.4g}", f"{r['fano']:.4g}"]
        if probs:
            cells += [str(r.get("model", ""))] + [f"{r.get(p, float('nan')):.3f}" for p in probs]
        for v in variables:
            if f"{v}_median" in r:
                cells.append(f"{r[f'{v}_median']:.3g} [{r[f'{v}_q05']:.3g}, {r[f'{v}_q95']:.3g}]")
            else:
                cells.append("-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def dir_name(name: str) -> str:
    """A folder name for a gene or group: characters other than letters, digits, '.', '-', '_' and '+' become
    '_'."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name).strip(".")
    return safe or "gene"
