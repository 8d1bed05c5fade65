"""`surrogate-abc infer TABLE --method batch` (inference/transcriptome): posteriors against closed forms, outputs,
bad input, skipped genes, resuming a stopped run, the fit checks, capture and the ABC-SMC fallback."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from surrogate_abc.errors import UserError
from surrogate_abc.inference.transcriptome import BatchSettings, TableRun, infer_transcriptome
from surrogate_abc.inference.transcriptome import run as batch_run
from surrogate_abc.inference.transcriptome.checks import bound_flags, ppc_pvalue

from conftest import run_cli, write_protocol, write_table

FAST = BatchSettings(shared_sets=1024, ess_target=400, draws=400, ppc_draws=50, block_size=3)


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as fh:
        return {r["gene"]: r for r in csv.DictReader(fh)}


def poisson_genes(tmp_path: Path, rates: dict[str, float], cells: int = 400, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write_table(tmp_path / "counts.csv", {g: rng.poisson(a, cells) for g, a in rates.items()})


def gamma_posterior(x: np.ndarray, beta: float = 1.0):
    """Exact posterior of a Poisson rate a (counts Poisson(beta a)) under a log-uniform prior: Gamma(sum x, N beta)
    (the prior box [0.5, 50] cuts nothing at these rates)."""
    return stats.gamma(x.sum(), scale=1.0 / (len(x) * beta))


def test_batch_posterior_is_the_exact_gamma_posterior_and_outputs(tmp_path):
    rates = {"A": 2.0, "B": 7.5, "C": 15.0, "D": 30.0}
    table = poisson_genes(tmp_path, rates)
    proto = write_protocol(tmp_path)
    csv_path, text = infer_transcriptome(TableRun(str(table), f"exact:{proto}"), tmp_path / "out", FAST,
                                         progress=False, log=lambda _m: None)
    rows = read_csv(csv_path)
    cols = np.loadtxt(table, delimiter=",", skiprows=1)
    for j, g in enumerate(rates):
        ref = gamma_posterior(cols[:, j])
        width = ref.ppf(0.95) - ref.ppf(0.05)
        for key, q in (("median", 0.5), ("q05", 0.05), ("q95", 0.95)):
            assert abs(float(rows[g][f"a_{key}"]) - ref.ppf(q)) < 0.1 * width, (g, key)
        assert float(rows[g]["a_ess"]) >= FAST.min_ess
        assert rows[g]["method"] == "batch" and rows[g]["cells"] == "400"
        assert float(rows[g]["mean"]) == pytest.approx(cols[:, j].mean())
    assert "4 gene(s) inferred" in text
    import arviz as az

    idata = az.from_netcdf(str(tmp_path / "out" / "posterior.nc"))
    a = idata.posterior["a"]
    assert a.dims == ("chain", "draw", "gene") and a.shape == (1, FAST.draws, 4)
    assert list(idata.posterior["gene"].values) == list(rates)
    draws = a.sel(gene="C").values.ravel()
    ref = gamma_posterior(cols[:, 2])
    assert abs(np.median(draws) - ref.median()) < 0.1 * (ref.ppf(0.95) - ref.ppf(0.05))
    assert set(idata.sample_stats["ppc_p"].dims) == {"gene"}
    assert not any((tmp_path / "out" / g).exists() for g in rates)  # no folder per gene by default


def test_burst_variables_and_the_figure(tmp_path):
    rng = np.random.default_rng(1)
    genes = {f"g{i}": rng.poisson(v * rng.beta(k0, k1, 300)) for i, (k0, k1, v) in
             enumerate([(0.5, 2.0, 40.0), (2.0, 1.0, 10.0), (0.2, 5.0, 200.0)])}
    table = write_table(tmp_path / "t.csv", genes)
    csv_path, _ = infer_transcriptome(TableRun(str(table), "exact:telegraph_mrna"), tmp_path / "o",
                                      dataclasses.replace(FAST, ess_target=200, min_ess=100), progress=False,
                                      log=lambda _m: None)
    rows = read_csv(csv_path)
    for r in rows.values():
        for v in ("k0", "k1", "v0", "burst_frequency", "burst_size"):
            assert float(r[f"{v}_q05"]) <= float(r[f"{v}_median"]) <= float(r[f"{v}_q95"])
    assert 0.5 * 0.2 < float(rows["g0"]["burst_frequency_median"]) < 0.5 * 5
    png = tmp_path / "o" / "genes.png"
    assert png.stat().st_size > 10_000


def test_capture_in_the_batch_method(tmp_path):
    """Counts thinned with beta = 0.5: the posterior of the true rate is Gamma(sum x, N beta)."""
    rng = np.random.default_rng(3)
    x = rng.binomial(rng.poisson(20.0, 500), 0.5)
    table = write_table(tmp_path / "t.csv", {"G": x})
    proto = write_protocol(tmp_path)
    csv_path, _ = infer_transcriptome(TableRun(str(table), f"exact:{proto}", capture=0.5), tmp_path / "o", FAST,
                                      progress=False, log=lambda _m: None)
    row = read_csv(csv_path)["G"]
    ref = gamma_posterior(x, 0.5)
    width = ref.ppf(0.95) - ref.ppf(0.05)
    assert abs(float(row["a_median"]) - ref.median()) < 0.1 * width
    assert abs(float(row["a_q95"]) - ref.ppf(0.95)) < 0.1 * width


def test_skipped_genes_are_counted_and_min_cells_changes_it(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.poisson(5.0, 200)
    sparse = np.zeros(200, int)
    sparse[:5] = 30  # 5 non-zero cells (mean 0.75, inside the prior's range)
    table = write_table(tmp_path / "t.csv", {"A": x, "Z": np.zeros(200, int), "S": sparse})
    proto = write_protocol(tmp_path)
    csv_path, text = infer_transcriptome(TableRun(str(table), f"exact:{proto}"), tmp_path / "o", FAST,
                                         progress=False, log=lambda _m: None)
    assert set(read_csv(csv_path)) == {"A"}
    assert "2 skipped (all zero: 1, fewer than 10 non-zero cells: 1)" in text
    skipped = read_csv(tmp_path / "o" / "skipped.csv")
    assert skipped["Z"]["reason"] == "all zero" and "fewer than 10" in skipped["S"]["reason"]
    csv_path, text = infer_transcriptome(TableRun(str(table), f"exact:{proto}", min_cells=5), tmp_path / "o2", FAST,
                                         progress=False, log=lambda _m: None)
    assert set(read_csv(csv_path)) == {"A", "S"}


@pytest.mark.parametrize("values, message", [
    ("1.5", "fractional"),
    ("-2", "negative"),
])
def test_bad_matrices_stop_with_one_line_and_write_nothing(tmp_path, values, message):
    (tmp_path / "t.csv").write_text(f"A,B\n1,2\n3,{values}\n4,5\n")
    proto = write_protocol(tmp_path)
    res = run_cli(["infer", "t.csv", "--emulator", f"exact:{proto}", "--out", "o"], tmp_path)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "'B'" in err[0], res.stderr
    assert not (tmp_path / "o").exists()


def test_duplicate_gene_names_are_an_error_naming_them(tmp_path):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    x = np.random.default_rng(5).poisson(3.0, (50, 3)).astype(np.float32)
    anndata.AnnData(X=x, var=pd.DataFrame(index=["Actb", "Sox2", "Actb"])).write_h5ad(tmp_path / "d.h5ad")
    with pytest.raises(UserError, match="Actb"):
        infer_transcriptome(TableRun(str(tmp_path / "d.h5ad"), f"exact:{write_protocol(tmp_path)}"), tmp_path / "o",
                            FAST, progress=False, log=lambda _m: None)
    assert not (tmp_path / "o").exists()


def test_a_stopped_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    rates = {f"g{i}": r for i, r in enumerate([1.0, 3.0, 6.0, 9.0, 12.0, 20.0, 25.0])}
    table = poisson_genes(tmp_path, rates, cells=300, seed=6)
    run = TableRun(str(table), f"exact:{write_protocol(tmp_path)}", seed=7)
    quiet = {"progress": False, "log": lambda _m: None}
    whole, _ = infer_transcriptome(run, tmp_path / "whole", FAST, **quiet)

    calls = {"n": 0}
    real = batch_run.run_block

    def stop_after_first(*args, **kwargs):
        if calls["n"] == 1:
            raise KeyboardInterrupt  # as Ctrl-C between two blocks
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_run, "run_block", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        infer_transcriptome(run, tmp_path / "part", FAST, **quiet)
    assert len(list((tmp_path / "part" / ".batch").glob("block_*.npz"))) == 1
    assert not (tmp_path / "part" / "genes.csv").exists()
    monkeypatch.setattr(batch_run, "run_block", real)
    logs: list[str] = []
    resumed, _ = infer_transcriptome(run, tmp_path / "part", FAST, progress=False, log=logs.append)
    assert any("1 of 3 blocks already done" in m for m in logs)

    def strip(rows):
        return {g: {k: v for k, v in r.items() if k != "seconds"} for g, r in rows.items()}

    assert strip(read_csv(resumed)) == strip(read_csv(whole))
    import arviz as az

    a = az.from_netcdf(str(tmp_path / "whole" / "posterior.nc")).posterior["a"].values
    b = az.from_netcdf(str(tmp_path / "part" / "posterior.nc")).posterior["a"].values
    np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match="seed"):
        infer_transcriptome(dataclasses.replace(run, seed=8), tmp_path / "part", FAST, **quiet)


def test_genes_made_to_fail_are_flagged(tmp_path):
    """Telegraph genes pass; an under-dispersed gene (Fano 0.5), a mixture of two cell types and a zero-inflated
    gene fail the predictive check; a Poisson gene (the constitutive limit) piles against k0's upper bound."""
    rng = np.random.default_rng(8)
    n = 2000
    genes = {
        "telegraph": rng.poisson(30.0 * rng.beta(0.8, 1.5, n)),
        "underdispersed": rng.binomial(40, 0.5, n),
        "two_types": np.where(rng.random(n) < 0.5, rng.poisson(5.0, n), rng.poisson(60.0, n)),
        "zero_inflated": np.where(rng.random(n) < 0.3, 0, rng.poisson(25.0, n)),
        "constitutive": rng.poisson(40.0, n),
    }
    table = write_table(tmp_path / "t.csv", genes)
    csv_path, text = infer_transcriptome(TableRun(str(table), "exact:telegraph_mrna"), tmp_path / "o",
                                         dataclasses.replace(FAST, ess_target=300, ppc_draws=200), progress=False,
                                         log=lambda _m: None)
    rows = read_csv(csv_path)
    assert "ppc" not in rows["telegraph"]["flags"]
    for g in ("underdispersed", "two_types", "zero_inflated"):
        assert "ppc" in rows[g]["flags"].split(";"), (g, rows[g]["ppc_p"])
        assert float(rows[g]["ppc_p"]) <= 0.01
    assert "bound:k0_high" in rows["constitutive"]["flags"]
    assert "gene(s) flagged" in text and "posterior-predictive" in text


def test_ppc_pvalue_and_bound_flags_on_arrays():
    rng = np.random.default_rng(9)
    p = stats.poisson(10.0).pmf(np.arange(40))
    p = np.append(p, 1 - p.sum())
    log_p = np.log(np.tile(p, (200, 1)))
    good = np.bincount(rng.poisson(10.0, 3000), minlength=41)[:41]
    bad = np.bincount(rng.binomial(20, 0.5, 3000), minlength=41)[:41]
    assert ppc_pvalue(good, log_p, rng)[1] > 0.05
    assert ppc_pvalue(bad, log_p, rng)[1] <= 1 / 201 + 1e-12
    low, high = np.array([0.0, 0.0]), np.array([1.0, 1.0])
    w = np.full(4000, 1 / 4000)
    piled = np.column_stack([1 - np.abs(rng.normal(0, 0.02, 4000)), rng.uniform(0.45, 0.55, 4000)])
    assert bound_flags(piled, w, low, high, ("x", "y")) == ["x_high"]
    inside = np.column_stack([rng.normal(0.9, 0.02, 4000), rng.uniform(0, 1, 4000)])  # 5 sd inside; flat y
    assert bound_flags(np.clip(inside, 0, 1), w, low, high, ("x", "y")) == []


def test_low_ess_genes_are_rerun_with_abc_smc(tmp_path):
    table = poisson_genes(tmp_path, {"A": 4.0, "B": 8.0}, cells=200, seed=10)
    from surrogate_abc.inference.run import InferenceSettings

    smc = InferenceSettings(population=200, generations=3, plots=False, exact_check="none", chain_jobs=1)
    logs: list[str] = []
    csv_path, text = infer_transcriptome(TableRun(str(table), f"exact:{write_protocol(tmp_path)}", genes=("A",)),
                                         tmp_path / "o", dataclasses.replace(FAST, min_ess=1e9), smc,
                                         progress=False, log=logs.append)
    row = read_csv(csv_path)["A"]
    assert row["method"] == "smc" and "1 rerun with ABC-SMC" in text
    assert any("rerun with ABC-SMC: A" in m for m in logs)
    x = np.loadtxt(table, delimiter=",", skiprows=1)[:, 0]
    ref = gamma_posterior(x)
    assert abs(float(row["a_median"]) - ref.median()) < 0.3 * (ref.ppf(0.95) - ref.ppf(0.05))
    assert not (tmp_path / "o" / "A").exists()  # its ABC-SMC folder stays in the run's state, not in OUT


def test_cli_batch_default_per_gene_outputs_and_method_errors(tmp_path):
    poisson_genes(tmp_path, {"A": 3.0, "B": 12.0}, cells=300)
    proto = write_protocol(tmp_path)
    res = run_cli(["infer", "counts.csv", "--emulator", f"exact:{proto}", "--out", "o", "--quiet",
                   "--per-gene-outputs", "--draws", "200"], tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "2 gene(s) inferred" in res.stdout and "genes.csv" in res.stdout
    for g in ("A", "B"):
        assert (tmp_path / "o" / g / "posterior.nc").is_file() and (tmp_path / "o" / g / "summary.csv").is_file()
    res = run_cli(["infer", "counts.csv", "--method", "batch", "--compare", "poisson,negbin", "--out", "c"], tmp_path)
    assert res.returncode == 2 and "--method smc" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = run_cli(["infer", "counts.csv", "--method", "smc", "--min-cells", "3", "--out", "c"], tmp_path)
    assert res.returncode == 2 and "--min-cells applies to --method batch" in res.stderr


def test_capture_prior_is_a_parameter_of_the_batch_posterior(tmp_path):
    """--capture-prior adds `capture` to the posterior; with a rate known to lie near 20 only beta x a is identified,
    and the posterior of that product is the exact Gamma(sum x, N) whatever the split."""
    rng = np.random.default_rng(11)
    x = rng.binomial(rng.poisson(20.0, 400), 0.5)
    table = write_table(tmp_path / "t.csv", {"G": x})
    proto = write_protocol(tmp_path, low=15.0, high=25.0)
    csv_path, _ = infer_transcriptome(TableRun(str(table), f"exact:{proto}", capture_prior=(0.3, 0.9)),
                                      tmp_path / "o", FAST, progress=False, log=lambda _m: None)
    row = read_csv(csv_path)["G"]
    assert 0.3 <= float(row["capture_q05"]) < float(row["capture_q95"]) <= 0.9
    import arviz as az

    post = az.from_netcdf(str(tmp_path / "o" / "posterior.nc")).posterior.sel(gene="G")
    product = (post["a"] * post["capture"]).values.ravel()
    ref = gamma_posterior(x)
    assert abs(np.median(product) - ref.median()) < 0.15 * (ref.ppf(0.95) - ref.ppf(0.05))


def test_a_killed_command_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL of the whole command once some blocks are stored; the same command then gives what one run gives."""
    import time

    from conftest import kill_tree, popen_cli

    poisson_genes(tmp_path, {f"g{i}": 1.0 + 2.5 * i for i in range(16)}, cells=300, seed=12)
    proto = write_protocol(tmp_path)
    args = ["infer", "counts.csv", "--emulator", f"exact:{proto}", "--block-size", "2", "--quiet", "--seed", "4"]
    r = run_cli([*args, "--out", "whole"], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    proc = popen_cli([*args, "--out", "part"], tmp_path)
    state = tmp_path / "part" / ".batch"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(state.glob("block_*.npz"))) >= 2:
            kill_tree(proc.pid)
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    proc.communicate()
    done = len(list(state.glob("block_*.npz")))
    assert 2 <= done < 8, f"the run was not stopped part-way ({done} of 8 blocks)"
    assert not (tmp_path / "part" / "genes.csv").exists()
    r = run_cli([*args, "--out", "part"], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr

    def rows(folder):
        return {g: {k: v for k, v in row.items() if k != "seconds"} for g, row in read_csv(tmp_path / folder /
                                                                                      "genes.csv").items()}

    assert rows("part") == rows("whole")


def test_a_weakly_informative_gene_keeps_its_whole_posterior(tmp_path):
    """12 cells: the likelihood is broad, most shared sets carry weight; the batch posterior is still the exact
    Gamma(sum x, N) truncated to the prior box [0.5, 50]."""
    x = np.array([0, 1, 3, 0, 2, 1, 0, 4, 1, 0, 2, 1])
    table = write_table(tmp_path / "t.csv", {"W": x})
    csv_path, _ = infer_transcriptome(TableRun(str(table), f"exact:{write_protocol(tmp_path)}", min_cells=5),
                                      tmp_path / "o", FAST, progress=False, log=lambda _m: None)
    row = read_csv(csv_path)["W"]
    ref = gamma_posterior(x)
    lo, hi = ref.cdf(0.5), ref.cdf(50.0)
    width = ref.ppf(lo + 0.95 * (hi - lo)) - ref.ppf(lo + 0.05 * (hi - lo))
    for key, q in (("median", 0.5), ("q05", 0.05), ("q95", 0.95)):
        assert abs(float(row[f"a_{key}"]) - ref.ppf(lo + q * (hi - lo))) < 0.1 * width, key


def test_mdn_category_probs_up_to_a_cut_equal_the_full_pmf():
    """The shipped mRNA MDN's pmf computed only up to the last category asked equals the full pmf's columns."""
    from surrogate_abc.emulators.resolve import RESOURCES, resolve_emulator

    if not (RESOURCES / "telegraph_mrna.safetensors").is_file():
        pytest.skip("the shipped telegraph_mrna emulator is not installed")
    em, _ = resolve_emulator("telegraph_mrna")
    em.model.double()  # the full pmf in float64 too: the categories' masses are walked in float64
    rng = np.random.default_rng(13)
    box = em.domain
    theta = 10 ** rng.uniform(np.log10(box[:, 0]), np.log10(box[:, 1]), size=(300, 3))
    probs, _ = em.pmf(theta)
    for cut in (1, 9, 50, 77, em.n_categories - 1):
        cats = np.arange(cut)
        got = em.category_probs(theta, cats)
        np.testing.assert_allclose(got, probs[:, cats], rtol=1e-9, atol=1e-15)
