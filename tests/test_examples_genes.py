"""The shipped multi-gene example (examples/genes/, written by examples/genes/make_genes.py): the committed tables
are what the script writes, they read as a count table, and `infer_genes` with the exact telegraph likelihood
recovers the true burst kinetics of two of its genes."""
from __future__ import annotations

import csv
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from surrogate_abc.config import load_protocol
from surrogate_abc.data.tables import read_count_table

ROOT = Path(__file__).resolve().parent.parent
GENES_DIR = ROOT / "examples" / "genes"
TABLE = GENES_DIR / "genes.csv"
RATES = GENES_DIR / "true_rates.csv"


def _true_rates() -> dict[str, dict[str, float]]:
    with RATES.open(newline="") as fh:
        return {r.pop("gene"): {k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)}


def _make_genes(monkeypatch):
    spec = importlib.util.spec_from_file_location("make_genes", GENES_DIR / "make_genes.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_genes", mod)
    spec.loader.exec_module(mod)
    return mod


def test_committed_tables_are_what_make_genes_writes(tmp_path, monkeypatch):
    mod = _make_genes(monkeypatch)
    genes_csv, rates_csv = mod.make_tables(tmp_path)
    assert genes_csv.read_bytes() == TABLE.read_bytes()
    assert rates_csv.read_bytes() == RATES.read_bytes()


def test_example_table_reads_and_rates_lie_in_the_prior():
    table = read_count_table(TABLE)
    rates = _true_rates()
    assert table.genes == tuple(rates) and table.counts.shape == (300, 6)
    protocol = load_protocol("telegraph_mrna")
    box = dict(zip(protocol.param_names, protocol.bounds()))
    for g, r in rates.items():
        for k in ("k0", "k1", "v0"):
            assert box[k][0] < r[k] < box[k][1], (g, k)
        assert r["burst_frequency"] == r["k0"] and r["burst_size"] == pytest.approx(r["v0"] / r["k1"], rel=1e-5)
        x = table.column(g)
        assert 0.5 < x.mean() <= 300 and np.count_nonzero(x) >= 50, g
    # the constitutive gene is nearly Poisson, the others clearly over-dispersed
    fano = {g: table.column(g).var(ddof=1) / table.column(g).mean() for g in rates}
    assert fano["constitutive"] < 1.3
    assert all(f > 2 for g, f in fano.items() if g != "constitutive")


def test_infer_genes_exact_recovers_burst_kinetics(tmp_path):
    """Two genes, exact Beta-Poisson likelihood, a prior box of a factor 2 either side of each true rate (within
    the protocol's prior; cheap and quick): the true burst frequency and size lie inside the 90% posterior
    intervals. One process (jobs=1): spawning workers costs more than these two small runs; no PNGs (they
    take longer than the ABC here, and tests/test_inference.py checks them)."""
    from surrogate_abc.api import infer_genes

    rates = _true_rates()
    genes = ["rare_large", "frequent_small"]
    box = dict(zip(*(lambda p: (p.param_names, p.bounds()))(load_protocol("telegraph_mrna"))))
    prior = {}  # one box for both genes: the union of the two boxes
    for k in ("k0", "k1", "v0"):
        lo = max(min(rates[g][k] for g in genes) / 2, float(box[k][0]))
        hi = min(max(rates[g][k] for g in genes) * 2, float(box[k][1]))
        prior[k] = (lo, hi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = infer_genes(TABLE, emulator="exact:telegraph_mrna", out=tmp_path / "out", genes=genes, method="smc",
                         population=120, generations=6, chains=1, seed=2, jobs=1, prior=prior, plots=False)
    assert list(df["gene"]) == genes
    assert (tmp_path / "out" / "genes.csv").is_file()
    for g in genes:
        row = df.set_index("gene").loc[g]
        assert (tmp_path / "out" / g / "posterior.nc").is_file() and not (tmp_path / "out" / g / "pair.png").exists()
        for v in ("burst_frequency", "burst_size"):
            lo, hi, true = row[f"{v}_q05"], row[f"{v}_q95"], rates[g][v]
            assert lo <= true <= hi, f"{g} {v}: true {true:.4g}, 90% [{lo:.4g}, {hi:.4g}]"
