"""`infer` on count tables: per-gene runs, genes.csv, derived burst variables, the log_likelihood group, model
selection against a closed-form Bayes factor, and bad input (exit 2, one line, nothing written)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from surrogate_abc.inference.output import pointwise_log_likelihood
from surrogate_abc.inference.pyabc_bridge.parts import multinomial_loglik

from conftest import run_cli, write_protocol, write_table


def test_cli_runs_every_gene_and_writes_genes_csv(tmp_path):
    rng = np.random.default_rng(3)
    table = write_table(tmp_path / "counts.csv", {"Low": rng.poisson(3.0, 300), "High gene": rng.poisson(20.0, 300),
                                                    "Unused": rng.poisson(5.0, 300)})
    proto = write_protocol(tmp_path)
    out = tmp_path / "out"
    r = run_cli(["infer", str(table), "--method", "smc", "--emulator", f"exact:{proto}", "--genes", "Low,High gene",
                 "--population", "150",
                 "--generations", "5", "--chains", "2", "--jobs", "2", "--out", str(out), "--quiet"], cwd=tmp_path,
                timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Low" in r.stdout and "High gene" in r.stdout
    rows = list(csv.DictReader((out / "genes.csv").open()))
    assert [row["gene"] for row in rows] == ["Low", "High gene"]
    for row, truth in zip(rows, (3.0, 20.0)):
        assert int(row["cells"]) == 300
        assert float(row["a_q05"]) < float(row["a_median"]) < float(row["a_q95"])
        assert abs(float(row["a_median"]) - truth) < 4 * math.sqrt(truth / 300) + 0.05 * truth
        assert float(row["mean"]) == pytest.approx(truth, rel=0.15)
        assert 0.7 < float(row["fano"]) < 1.3
        assert float(row["a_ess"]) > 50 and np.isfinite(float(row["a_r_hat"]))
    assert (out / "High_gene" / "posterior.nc").is_file() and (out / "Low" / "summary.csv").is_file()
    assert not (out / "Unused").exists() and not list(out.glob(".*partial"))

    import arviz as az

    idata = az.from_netcdf(str(out / "Low" / "posterior.nc"))
    ll = idata.log_likelihood["cells"]
    assert ll.shape == (2, idata.posterior.sizes["draw"], 300)
    assert idata.posterior.attrs["gene"] == "Low"
    assert np.isfinite(az.loo(idata).elpd_loo)


def test_pointwise_log_likelihood_sums_to_the_abc_likelihood():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=4)
    hist, overflow = np.array([3, 0, 5, 1, 0, 2]), 4
    ll = pointwise_log_likelihood(probs[:, :-1], probs[:, -1], hist, overflow)
    assert ll.shape == (4, hist.sum() + overflow)
    counts = np.concatenate([hist, [overflow]])
    for i in range(4):
        assert ll[i].sum() == pytest.approx(multinomial_loglik(counts, probs[i]), rel=1e-12)


def test_model_probabilities_match_the_closed_form_bayes_factor(tmp_path):
    """Two Poisson models that differ only in their prior's range: with the likelihood concentrated well inside
    both, the Bayes factor is the ratio of the prior densities there, log(20 / 0.5) / log(200 / 0.5)."""
    from surrogate_abc.api import infer_genes

    rng = np.random.default_rng(5)
    table = write_table(tmp_path / "c.csv", {"g": rng.poisson(3.0, 400)})
    wide, narrow = write_protocol(tmp_path, "wide", 200.0), write_protocol(tmp_path, "narrow", 20.0)
    df = infer_genes(table, out=tmp_path / "o", compare=[str(wide), str(narrow)], population=400, generations=6,
                     chains=2, jobs=1)
    bf = math.log(20 / 0.5) / math.log(200 / 0.5)  # p(data | wide) / p(data | narrow)
    expected = bf / (1 + bf)
    assert df.loc[0, "p_wide"] == pytest.approx(expected, abs=0.08)
    assert df.loc[0, "model"] == "narrow"
    import arviz as az

    idata = az.from_netcdf(str(tmp_path / "o" / "g" / "posterior.nc"))
    ms = idata["model_selection"]["probability"]
    assert list(ms["model"].values) == ["wide", "narrow"]
    assert json.loads(idata.posterior.attrs["model_probabilities"])["wide"] == pytest.approx(df.loc[0, "p_wide"])


def test_burst_kinetics_of_the_telegraph_model():
    from surrogate_abc.config import load_protocol
    from surrogate_abc.networks.bursts import burst_kinetics

    proto = load_protocol("telegraph_mrna")
    theta = np.array([[0.5, 2.0, 40.0], [3.0, 0.2, 100.0]])  # k0, k1, v0
    got = burst_kinetics(proto, theta)
    assert np.allclose(got["burst_frequency"], theta[:, 0] / 1.0)
    assert np.allclose(got["burst_size"], theta[:, 2] / theta[:, 1])
    assert burst_kinetics(load_protocol("gene_protein"), load_protocol("gene_protein").sample(2, 0)) == {}


@pytest.mark.parametrize("columns, extra, message", [
    ({"A": ["1", "2", "0.5"]}, [], "fractional"),
    ({"A": ["0", "0", "0"]}, ["--method", "smc"], "zero in every cell"),
    ({"A": ["0", "0", "0"]}, [], "no gene to infer (all zero: 1)"),
    ({"A": ["1", "x", "2"]}, [], "not a number"),
    ({"A": ["1", "-1", "2"]}, [], "negative"),
    ({"A": ["1", "2", "3"]}, ["--genes", "B"], "'B'"),
    ({"A": ["1", "2", "3"]}, ["--species", "mrna=A,protein=A"], "--species"),
])
def test_bad_tables_exit_2_with_one_line_and_write_nothing(tmp_path, columns, extra, message):
    path = tmp_path / "bad.csv"
    path.write_text(",".join(columns) + "\n" + "\n".join(",".join(r) for r in zip(*columns.values())) + "\n")
    proto = write_protocol(tmp_path)
    out = tmp_path / "out"
    r = run_cli(["infer", str(path), "--emulator", f"exact:{proto}", "--out", str(out), *extra], cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_empty_table_and_bad_capture_exit_2(tmp_path):
    proto = write_protocol(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    r = run_cli(["infer", "empty.csv", "--emulator", f"exact:{proto}", "--out", "o"], cwd=tmp_path)
    assert r.returncode == 2 and "empty" in r.stderr and not (tmp_path / "o").exists()
    write_table(tmp_path / "c.csv", {"A": np.arange(20) % 4})
    r = run_cli(["infer", "c.csv", "--emulator", f"exact:{proto}", "--capture", "1.5", "--out", "o"], cwd=tmp_path)
    assert r.returncode == 2 and "(0, 1]" in r.stderr and not (tmp_path / "o").exists()


def test_anndata_layer_and_two_species_mapping(tmp_path):
    """An .h5ad layer runs gene by gene; --species maps two columns onto the joint emulator's species."""
    anndata = pytest.importorskip("anndata")
    import h5py
    import scipy.sparse as sp

    from surrogate_abc.api import infer_genes
    from surrogate_abc.emulators.resolve import RESOURCES

    rng = np.random.default_rng(9)
    raw = np.stack([rng.poisson(4.0, 200), rng.poisson(15.0, 200)], axis=1)
    ad = anndata.AnnData(X=np.log1p(raw), layers={"counts": sp.csr_matrix(raw)})
    ad.var_names = ["g1", "g2"]
    ad.write_h5ad(tmp_path / "c.h5ad")
    df = infer_genes(tmp_path / "c.h5ad", emulator=f"exact:{write_protocol(tmp_path)}", out=tmp_path / "a",
                     layer="counts", population=100, generations=4, jobs=1, plots=False, method="smc")
    assert list(df["gene"]) == ["g1", "g2"] and df.loc[1, "a_median"] == pytest.approx(15.0, rel=0.15)
    if not (RESOURCES / "gene_joint.safetensors").is_file():
        pytest.skip("the shipped joint emulator is not installed")
    with h5py.File(Path(__file__).resolve().parent.parent / "examples" / "observed_joint.h5") as f:
        m, p = f["mrna"][()], f["protein"][()]
    table = write_table(tmp_path / "joint.csv", {"Xist_mrna": m[:300], "Xist_protein": p[:300]})
    df = infer_genes(table, out=tmp_path / "j", species={"mrna": "Xist_mrna", "protein": "Xist_protein"},
                     population=60, generations=3, jobs=1, plots=False)
    assert list(df["gene"]) == ["Xist_mrna+Xist_protein"] and "mean_protein_median" in df.columns
    assert (tmp_path / "j" / "Xist_mrna+Xist_protein" / "posterior.nc").is_file()


def test_capture_on_an_fsp_model_checks_the_domain_not_thousands_of_fsp_solves(tmp_path, monkeypatch):
    """--capture wraps an FSP-backed exact model: the table is checked by the model's domain (cheap), never by the
    predictive range of means, which would solve the FSP at ~6000 prior draws (`genes.plan_tasks`)."""
    from surrogate_abc.inference import genes as genes_module
    from surrogate_abc.inference.run import InferenceSettings

    toml = write_protocol(tmp_path, "pair").read_text().replace("[parameters.a]", (
        '[[network.reactions]]\nname = "pair"\nreactants = { mrna = 2 }\nproducts = { mrna = 1 }\nrate = "c"\n\n'
        "[parameters.a]")).replace("b = 1.0", "b = 1.0\nc = 0.05")
    (tmp_path / "pair.toml").write_text(toml)
    from surrogate_abc.emulators.exact import exact_emulator

    assert exact_emulator(f"exact:{tmp_path / 'pair.toml'}").uses_fsp
    table = write_table(tmp_path / "c.csv", {"g": np.random.default_rng(0).poisson(3.0, 100)})

    def forbidden(*_a, **_k):
        raise AssertionError("predictive_mean_ranges solved the FSP model")

    monkeypatch.setattr(genes_module, "predictive_mean_ranges", forbidden)
    tasks = genes_module.plan_tasks(table, [f"exact:{tmp_path / 'pair.toml'}"], InferenceSettings(), tmp_path / "o",
                                    capture=0.5)
    assert [t.name for t in tasks] == ["g"]
