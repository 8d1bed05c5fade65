"""notebooks/posterior_diagnostics.ipynb runs end to end on a real `surrogate-abc infer` output of the shipped
protein example and draws its figures, and its many-genes section draws a small genes.csv (written here: the
layout of `surrogate-abc infer counts.csv`'s OUT/genes.csv, with model probabilities); its AnnData section runs
`sa.tl.bursting` on 20 genes x 300 cells it simulates."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "posterior_diagnostics.ipynb"
OBSERVED = ROOT / "examples" / "observed_protein.h5"
NEURAL = ROOT / "surrogate_abc" / "resources" / "gene_protein.safetensors"
FIGURES = ("trace", "rank", "pair", "ppc", "abc_convergence", "marginals")
# The exact FSP emulator costs 0.05-2 s per particle over the full prior: with it, a narrow box around the truth
# (this run only has to produce a posterior.nc for the notebook; tests/test_examples.py checks recovery).
EXACT_ARGS = ["--emulator", "exact:gene_protein", "--prior", "k0=0.65:1.0", "--prior", "k1=1.2:1.9",
              "--prior", "v0=0.5:0.75", "--prior", "d1=0.25:0.38", "--prior", "mean_protein=72:90"]


def test_committed_notebook_has_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)
    src = "".join("".join(c["source"]) for c in nb["cells"])
    for needle in ("SURROGATE_ABC_POSTERIOR", "plot_rank", "plot_trace", "plot_pair", "posterior_predictive",
                   "observed_data", "acceptance_rate", "ess", "summary", "SURROGATE_ABC_GENES", "burst_size_q95",
                   "sa.tl.bursting"):
        assert needle in src, needle


# genes.csv of `infer counts.csv --compare telegraph_mrna,poisson,negbin`, abridged (the notebook reads only the
# columns below); the poisson gene has no burst variables (empty cells)
GENES_CSV = """gene,cells,mean,fano,model,p_telegraph_mrna,p_poisson,p_negbin,burst_frequency_median,burst_frequency_q05,\
burst_frequency_q95,burst_size_median,burst_size_q05,burst_size_q95
bursty,300,11.4,71.9,telegraph_mrna,0.7,0.0,0.3,0.11,0.08,0.15,95,70,130
frequent,300,6.8,2.8,negbin,0.4,0.1,0.5,2.5,1.2,5.1,3.4,2.1,5.0
flat,300,29.3,1.1,poisson,0.05,0.9,0.05,,,,,,
"""


def test_notebook_runs_on_infer_output(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    out = tmp_path / "run"
    emulator = [] if NEURAL.is_file() else EXACT_ARGS
    r = run_cli(["infer", str(OBSERVED), *emulator, "--mode", "simulator", "--population", "20", "--generations", "2",
                 "--chains", "2", "--sampler", "single", "--seed", "1", "--out", str(out)], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "posterior.nc").is_file()

    figs = tmp_path / "figures"
    monkeypatch.setenv("SURROGATE_ABC_POSTERIOR", str(out / "posterior.nc"))
    monkeypatch.setenv("SURROGATE_ABC_FIGURES", str(figs))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    genes_csv = tmp_path / "genes.csv"
    genes_csv.write_text(GENES_CSV)
    monkeypatch.setenv("SURROGATE_ABC_GENES", str(genes_csv))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= len(FIGURES)
    for name in (*FIGURES, "genes"):
        png = figs / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 5_000, name
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in nb.cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "mean_protein" in text and "true in 90%" in text  # summary table with the true values from the file
    assert "3 gene(s) from" in text
    assert "20 gene(s) inferred by sa.tl.bursting" in text and "burst_frequency_q95" in text  # section 8
