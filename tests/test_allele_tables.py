"""txburst's allele tables through `surrogate-abc infer`: genes as rows with missing allele calls dropped
(genes.csv's cells_used, the minimum-cells rule), the option checks, and two tables compared (--compare-table)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from surrogate_abc.errors import UserError
from surrogate_abc.inference.transcriptome import BatchSettings, TableRun
from surrogate_abc.inference.transcriptome.run import run_batch

from conftest import run_cli

FAST = BatchSettings(shared_sets=1024, ess_target=300, draws=400, ppc_draws=50, block_size=4)
QUIET = {"progress": False, "log": lambda _m: None}


def _allele_table(path: Path, truth: dict[str, tuple[float, float, float]], cells: int, seed: int,
                  missing: float = 0.1, sparse_gene: str | None = None) -> tuple[Path, dict[str, int]]:
    """A genes-by-cells CSV as txburst reads it (counts as 3.0, an empty field where no allele call); returns the
    path and each gene's cells with a value."""
    rng = np.random.default_rng(seed)
    lines = [",".join([""] + [f"cell{j}" for j in range(cells)])]
    used = {}
    for g, (k0, k1, v0) in truth.items():
        x = rng.poisson(v0 * rng.beta(k0, k1, cells)).astype(float)
        x[rng.random(cells) < (0.95 if g == sparse_gene else missing)] = np.nan
        used[g] = int((~np.isnan(x)).sum())
        lines.append(",".join([g] + ["" if np.isnan(v) else f"{v:.1f}" for v in x]))
    path.write_text("\n".join(lines) + "\n")
    return path, used


TRUTH = {"Actb": (0.8, 3.0, 40.0), "Gapdh": (2.0, 4.0, 20.0), "Rare": (1.0, 2.0, 30.0)}


def test_missing_drop_gives_cells_used_and_skips_genes_left_with_too_few_cells(tmp_path):
    table, used = _allele_table(tmp_path / "c57.csv", TRUTH, 150, seed=1, sparse_gene="Rare")
    assert used["Rare"] < 10 <= min(used["Actb"], used["Gapdh"])
    run = TableRun(str(table), layout="genes-by-cells", missing="drop", seed=2)
    done = run_batch(run, tmp_path / "out", FAST, plots=False, **QUIET)
    rows = {r["gene"]: r for r in csv.DictReader((tmp_path / "out" / "genes.csv").open())}
    assert set(rows) == {"Actb", "Gapdh"}
    for g in rows:
        assert int(rows[g]["cells"]) == 150 and int(rows[g]["cells_used"]) == used[g]
    skipped = list(csv.DictReader((tmp_path / "out" / "skipped.csv").open()))
    assert [(r["gene"], r["reason"]) for r in skipped] == [
        ("Rare", "fewer than 10 cells left after dropping missing values")]
    assert "1 skipped (fewer than 10 cells left after dropping missing values: 1)" in done.text
    with pytest.raises(UserError, match="--missing drop"):  # without the option: the error and its fix
        run_batch(TableRun(str(table), layout="genes-by-cells"), tmp_path / "o2", FAST, plots=False, **QUIET)


@pytest.mark.parametrize("kwargs, message", [
    ({"layout": "genes-by-cells", "size_factors": "total"}, "--size-factors applies to tables of cells as rows"),
    ({"missing": "drop", "size_factors": "total", "capture": 0.5}, "--size-factors needs every cell's counts"),
])
def test_options_a_table_format_cannot_serve_are_refused(tmp_path, kwargs, message):
    table, _ = _allele_table(tmp_path / "t.csv", TRUTH, 20, seed=3)
    with pytest.raises(UserError, match=message):
        run_batch(TableRun(str(table), **kwargs), tmp_path / "o", FAST, plots=False, **QUIET)
    assert not (tmp_path / "o").exists()


def test_compare_table_gives_the_differential_output_of_the_two_named_tables(tmp_path):
    c57, _ = _allele_table(tmp_path / "c57.csv", {"Up": (0.5, 2.0, 40.0), "Flat": (1.0, 4.0, 60.0)}, 300, seed=4)
    cast, _ = _allele_table(tmp_path / "cast.csv", {"Up": (2.0, 2.0, 40.0), "Flat": (1.0, 4.0, 60.0)}, 300, seed=5)
    out = tmp_path / "out"
    r = run_cli(["infer", str(c57), "--compare-table", str(cast), "--groups", "c57,cast", "--layout",
                 "genes-by-cells", "--missing", "drop", "--ess", "300", "--draws", "400", "--no-plots", "--quiet",
                 "--out", str(out)], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {(x["gene"], x["variable"]): x for x in csv.DictReader((out / "differential.csv").open())}
    assert {g for g, _ in rows} == {"Up", "Flat"} and {x["pair"] for x in rows.values()} == {"cast_vs_c57"}
    assert float(rows[("Up", "burst_frequency")]["log2fc_median"]) > 0.5  # cast's frequency 4x c57's
    for name in ("c57", "cast"):
        genes = list(csv.DictReader((out / "groups" / name / "genes.csv").open()))
        assert {g["gene"] for g in genes} == {"Up", "Flat"} and "cells_used" in genes[0]
    assert "cast_vs_c57" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--compare-table", "other.csv", "--groups", "a,b,c"], "with --compare-table name the two tables"),
    (["--compare-table", "nope.csv"], "--compare-table nope.csv: file not found"),
    (["--compare-table", "other.csv", "--method", "smc"], "--compare-table applies to --method batch"),
    (["--compare-table", "other.csv", "--groupby", "x"], "exclude each other"),
    (["--layout", "genes-by-cells", "--groupby", "x"], "--groupby applies to tables of cells as rows"),
    ([], "--layout genes-by-cells"),
])
def test_bad_allele_options_stop_with_one_line(tmp_path, args, message):
    _allele_table(tmp_path / "t.csv", TRUTH, 12, seed=6, missing=0.0)
    _allele_table(tmp_path / "other.csv", TRUTH, 12, seed=7, missing=0.0)
    r = run_cli(["infer", "t.csv", *args, "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert ".py" not in r.stderr and not (tmp_path / "o").exists()


def test_the_per_gene_smc_path_reads_the_same_tables(tmp_path):
    from surrogate_abc.data.table_format import TableFormat
    from surrogate_abc.emulators.resolve import model_specs
    from surrogate_abc.inference.genes import gene_row, plan_tasks
    from surrogate_abc.inference.run import InferenceSettings

    table, used = _allele_table(tmp_path / "t.csv", {"Actb": TRUTH["Actb"], "Gapdh": TRUTH["Gapdh"]}, 80, seed=8)
    tasks = plan_tasks(table, model_specs("exact:telegraph_mrna", None), InferenceSettings(), tmp_path / "o",
                       fmt=TableFormat("genes-by-cells", "drop"))
    assert [t.name for t in tasks] == ["Actb", "Gapdh"]
    assert [len(t.counts) for t in tasks] == [used["Actb"], used["Gapdh"]] and tasks[0].table_cells == 80
    with pytest.raises(UserError, match=r"row 2 \(gene 'Actb'\) is missing .*--missing drop"):
        plan_tasks(table, model_specs(None, None), InferenceSettings(), tmp_path / "o",
                   fmt=TableFormat("genes-by-cells"))
    assert callable(gene_row)
