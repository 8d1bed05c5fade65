"""Results in the AnnData (issue 26, section 2): `infer counts.h5ad` writes OUT/bursting.h5ad (the input AnnData
with genes.csv's per-gene columns in var, the run in uns["surrogate_abc"]; `--no-matrix` without X and layers),
for the batch and the per-gene ABC-SMC method; `surrogate_abc.tl.bursting` fills an in-memory AnnData's var
(dense, CSR or CSC, read in blocks with the file's value checks) and writes nothing."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import surrogate_abc as sa
from surrogate_abc.cli import main
from surrogate_abc.errors import UserError
from surrogate_abc.inference.transcriptome import BatchSettings, TableRun, infer_transcriptome

from conftest import cli_env, write_protocol

anndata = pytest.importorskip("anndata")
pd = pytest.importorskip("pandas")

FAST = BatchSettings(shared_sets=1024, ess_target=400, draws=400, ppc_draws=50, block_size=3)
RATES = {"A": 2.0, "B": 7.5, "Z": 0.0, "C": 15.0, "S": 0.0, "D": 30.0}  # Z all zero; S: 5 non-zero cells
INFERRED = {"A", "B", "C", "D"}
SKIPPED = {"Z": "all zero", "S": "fewer than 10 non-zero cells"}


def counts(cells: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.stack([rng.poisson(r, cells) for r in RATES.values()], axis=1)
    x[:5, list(RATES).index("S")] = 30
    return x


def make_adata(x: np.ndarray, fmt: str = "csr"):
    as_fmt = {"dense": np.asarray, "csr": sp.csr_matrix, "csc": sp.csc_matrix}[fmt]
    obs = pd.DataFrame({"sample": pd.Categorical(["s1", "s2"] * (len(x) // 2))},
                       index=[f"cell-{i}" for i in range(len(x))])
    var = pd.DataFrame({"symbol": [g.lower() for g in RATES]}, index=list(RATES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = anndata.AnnData(X=as_fmt(x.astype(np.float32)), obs=obs, var=var)
        adata.layers["counts"] = sp.csc_matrix(x)
        adata.obsm["X_umap"] = np.random.default_rng(1).normal(size=(len(x), 2))
        adata.uns["note"] = "kept"
    return adata


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory) -> tuple[Path, Path]:
    """(counts.h5ad, the Poisson protocol) in a folder of their own."""
    d = tmp_path_factory.mktemp("h5ad")
    path = d / "counts.h5ad"
    make_adata(counts()).write_h5ad(path)
    return path, write_protocol(d)


def read_h5ad(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anndata.read_h5ad(path)


def assert_var_matches_csv(var, csv_path: Path, inferred: set[str]) -> list[str]:
    """Every genes.csv value of every inferred gene is in var, to the digit (text columns as text); returns the
    columns."""
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["gene"] for r in rows} == inferred
    cols = [c for c in rows[0] if c != "gene"]
    assert set(cols) <= set(var.columns), set(cols) - set(var.columns)
    for r in rows:
        for c in cols:
            v, text = var.loc[r["gene"], c], r[c]
            try:
                x = float(text)
            except ValueError:
                assert str(v) == text, (r["gene"], c)
                continue
            assert (pd.isna(v) if np.isnan(x) else float(v) == x), (r["gene"], c, v, text)
    assert (var.loc[sorted(inferred), "skipped"] == "").all()
    return cols


def assert_skipped_are_nan(var, cols: list[str], reasons: dict[str, str]) -> None:
    for g, reason in reasons.items():
        assert var.loc[g, "skipped"].startswith(reason), (g, var.loc[g, "skipped"])
        for c in cols:
            v = var.loc[g, c]
            assert pd.isna(v) or v == "", (g, c, v)


def test_batch_run_writes_bursting_h5ad(h5ad, tmp_path, capsys):
    path, proto = h5ad
    out = tmp_path / "o"
    assert main(["infer", str(path), "--emulator", f"exact:{proto}", "--out", str(out), "--quiet",
                 "--no-plots"]) == 0
    assert f"wrote {out / 'bursting.h5ad'}" in capsys.readouterr().out
    src, res = read_h5ad(path), read_h5ad(out / "bursting.h5ad")
    cols = assert_var_matches_csv(res.var, out / "genes.csv", INFERRED)
    for c in ("a_median", "a_q05", "a_q95", "ess", "flags", "ppc_p", "method"):
        assert c in cols
    assert_skipped_are_nan(res.var, cols, SKIPPED)
    assert list(res.var_names) == list(src.var_names) and list(res.obs_names) == list(src.obs_names)
    pd.testing.assert_frame_equal(res.obs, src.obs)
    assert list(res.var["symbol"]) == list(src.var["symbol"])  # the input's own columns are kept
    assert (res.X != src.X).nnz == 0 and (res.layers["counts"] != src.layers["counts"]).nnz == 0
    assert np.array_equal(res.obsm["X_umap"], src.obsm["X_umap"]) and res.uns["note"] == "kept"
    run = res.uns["surrogate_abc"]
    assert run["method"] == "batch" and run["seed"] == 0 and run["emulator"] == f"exact:{proto}"
    assert len(run["emulator_sha256"]) == 64 and "--no-plots" in run["command"]
    assert {"surrogate_abc", "numpy", "anndata"} <= set(run["versions"])
    assert run["genes_inferred"] == 4 and run["genes_skipped"] == 2
    assert run["settings"]["draws"] == BatchSettings().draws


def test_no_matrix_leaves_x_and_layers_out(h5ad, tmp_path):
    path, proto = h5ad
    out = tmp_path / "o"
    assert main(["infer", str(path), "--emulator", f"exact:{proto}", "--out", str(out), "--quiet", "--no-plots",
                 "--no-matrix", "--layer", "counts", "--genes", "A,C,Z"]) == 0
    src, res = read_h5ad(path), read_h5ad(out / "bursting.h5ad")
    assert res.X is None and not list(res.layers) and res.shape == src.shape
    pd.testing.assert_frame_equal(res.obs, src.obs)
    assert list(res.var_names) == list(src.var_names)
    assert np.array_equal(res.obsm["X_umap"], src.obsm["X_umap"])
    cols = assert_var_matches_csv(res.var, out / "genes.csv", {"A", "C"})
    assert_skipped_are_nan(res.var, cols, {"Z": "all zero", "B": "not selected", "D": "not selected"})
    assert res.uns["surrogate_abc"]["layer"] == "counts"
    assert os.path.getsize(out / "bursting.h5ad") < os.path.getsize(path)


def test_no_matrix_is_refused_for_a_csv_table(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("A\n1\n2\n")
    assert main(["infer", str(tmp_path / "t.csv"), "--no-matrix", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--no-matrix applies to .h5ad" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_smc_method_writes_bursting_h5ad(h5ad, tmp_path):
    path, proto = h5ad
    out = tmp_path / "s"
    assert main(["infer", str(path), "--emulator", f"exact:{proto}", "--method", "smc", "--genes", "A,B",
                 "--population", "40", "--generations", "2", "--check", "none", "--jobs", "1", "--no-plots",
                 "--quiet", "--out", str(out)]) == 0
    res = read_h5ad(out / "bursting.h5ad")
    cols = assert_var_matches_csv(res.var, out / "genes.csv", {"A", "B"})
    assert_skipped_are_nan(res.var, cols, {g: "not selected" for g in ("C", "D", "Z", "S")})
    assert list(res.var.loc[["A", "B"], "method"]) == ["smc", "smc"]
    assert np.allclose(res.var.loc[["A", "B"], "ess"], res.var.loc[["A", "B"], "a_ess"])
    assert res.uns["surrogate_abc"]["method"] == "smc" and res.X is not None


@pytest.fixture(scope="module")
def file_run(h5ad, tmp_path_factory):
    """genes.csv of the batch method with FAST settings on counts.h5ad (the reference for in-memory runs)."""
    path, proto = h5ad
    csv_path, _ = infer_transcriptome(TableRun(str(path), f"exact:{proto}"), tmp_path_factory.mktemp("ref"), FAST,
                                      plots=False, progress=False, log=lambda _m: None)
    return pd.read_csv(csv_path, index_col="gene", dtype={"gene": str, "flags": str}, keep_default_na=False,
                       na_values=["nan"])


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_tl_bursting_fills_var_in_place_and_writes_nothing(h5ad, file_run, tmp_path, monkeypatch, fmt):
    _, proto = h5ad
    work, tmp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    adata = make_adata(counts(), fmt)
    table = sa.tl.bursting(adata, emulator=f"exact:{proto}", batch=FAST)
    assert not list(work.iterdir()) and not list(tmp.iterdir())  # the run's folder was temporary
    assert set(table.index) == INFERRED and table.index.name == "gene"
    same = [c for c in file_run.columns if c != "seconds"]
    pd.testing.assert_frame_equal(table.loc[list(file_run.index), same], file_run[same], check_dtype=False)
    var = adata.var
    assert list(var["symbol"]) == [g.lower() for g in RATES]
    for c in table.columns:  # the returned table is what var holds
        got = var.loc[list(table.index), c]
        assert list(got.astype(str)) == list(table[c].astype(str)), c
    assert_skipped_are_nan(var, list(table.columns), SKIPPED)
    assert adata.uns["surrogate_abc"]["method"] == "batch" and adata.uns["surrogate_abc"]["input"] == "adata"
    assert "tl.bursting" in adata.uns["surrogate_abc"]["command"]


def test_tl_bursting_layer_gene_mask_and_a_rerun_replaces_its_columns(h5ad, tmp_path):
    _, proto = h5ad
    adata = make_adata(counts())
    adata.X = adata.X * 0.37  # normalised: the raw counts are in the layer
    mask = adata.var_names.isin(["B", "D"])
    t1 = sa.tl.bursting(adata, layer="counts", genes=mask, emulator=f"exact:{proto}", batch=FAST,
                        capture_prior=(0.5, 1.0))
    assert set(t1.index) == {"B", "D"} and "capture_median" in adata.var
    assert adata.var.loc["A", "skipped"] == "not selected"
    t2 = sa.tl.bursting(adata, layer="counts", genes=["A"], emulator=f"exact:{proto}", batch=FAST,
                        out=tmp_path / "keep")
    assert set(t2.index) == {"A"} and (tmp_path / "keep" / "genes.csv").is_file()
    assert "capture_median" not in adata.var  # the first run's columns went with it
    assert np.isnan(adata.var.loc["B", "a_median"]) and adata.var.loc["B", "skipped"] == "not selected"
    assert "symbol" in adata.var
    other = make_adata(counts(seed=5))  # other counts, same genes: the kept folder is not resumed
    with pytest.raises(UserError, match="another input_sha256"):
        sa.tl.bursting(other, layer="counts", genes=["A"], emulator=f"exact:{proto}", batch=FAST,
                       out=tmp_path / "keep")


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
@pytest.mark.parametrize("value, message", [(-1.0, "negative counts"), (0.5, "fractional values"),
                                            (np.nan, "missing value (NaN)")])
def test_tl_bursting_bad_values_stop_with_one_line(h5ad, fmt, value, message):
    _, proto = h5ad
    x = counts().astype(float)
    x[7, list(RATES).index("B")] = value
    adata = make_adata(x, fmt)
    with pytest.raises(UserError) as err:
        sa.tl.bursting(adata, emulator=f"exact:{proto}", batch=FAST)
    text = str(err.value)
    assert text.startswith("adata.X: gene 'B'") and message in text and "cell 8" in text and "\n" not in text
    assert "a_median" not in adata.var


def test_tl_bursting_argument_errors(h5ad):
    _, proto = h5ad
    adata = make_adata(counts())
    with pytest.raises(UserError, match=r"no layer 'raw' \(layers: counts\)"):
        sa.tl.bursting(adata, layer="raw", emulator=f"exact:{proto}")
    with pytest.raises(UserError, match="not an AnnData"):
        sa.tl.bursting(np.zeros((3, 3)), emulator=f"exact:{proto}")
    with pytest.raises(UserError, match=r"gene 'nope' named in genes= is not in the var_names"):
        sa.tl.bursting(adata, genes=["A", "nope"], emulator=f"exact:{proto}")
    with pytest.raises(UserError, match="boolean mask of 2 values for 6 genes"):
        sa.tl.bursting(adata, genes=[True, False], emulator=f"exact:{proto}")
    import dataclasses

    if "size_factors" not in {f.name for f in dataclasses.fields(TableRun)}:  # not there yet: only None
        with pytest.raises(UserError, match="size_factors"):
            sa.tl.bursting(adata, size_factors="total", emulator=f"exact:{proto}")


def test_import_stays_light_and_exposes_tl():
    code = ("import sys, surrogate_abc as sa; assert callable(sa.tl.bursting) and 'tl' in sa.__all__; "
            "print(sorted(m for m in ('torch', 'pyabc', 'pandas', 'anndata', 'xarray') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
