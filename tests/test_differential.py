"""Bursting compared between groups of cells (`surrogate-abc infer TABLE --groupby COLUMN`, inference/differential):
the log2 fold change posterior against a closed form, the call rule's properties, reading groups, reading a
subset of cells, and whole runs: calls on genes with known changes, the outputs (differential.csv, the AnnData,
the figure), capture on one scale across groups, the capture warning, and bad input."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from surrogate_abc.data.gene_histograms import gene_histograms, read_gene_counts
from surrogate_abc.errors import DataFileError, UserError
from surrogate_abc.inference.differential import CallRule, cell_groups, infer_differential
from surrogate_abc.inference.differential.foldchange import COLUMNS, benjamini_hochberg, fold_changes
from surrogate_abc.inference.transcriptome import BatchSettings, TableRun

from conftest import run_cli, write_table

anndata = pytest.importorskip("anndata")
pd = pytest.importorskip("pandas")
sp = pytest.importorskip("scipy.sparse")

FAST = BatchSettings(shared_sets=1024, ess_target=400, draws=1000, ppc_draws=50, block_size=4)
QUIET = {"progress": False, "log": lambda _m: None}


# --------------------------------------------------------------------------------------------- fold changes


def test_fold_change_posterior_matches_the_normal_closed_form():
    """log2 A ~ N(0, 0.3^2), log2 B ~ N(mu, 0.4^2) independent: log2(B/A) ~ N(mu, 0.5^2)."""
    rng = np.random.default_rng(0)
    mus = np.array([-1.0, 0.0, 0.3, 1.2])
    n = 40000
    a = 2.0 ** rng.normal(0.0, 0.3, (len(mus), n))
    b = 2.0 ** (mus[:, None] + rng.normal(0.0, 0.4, (len(mus), n)))
    fc = fold_changes(a, b, CallRule(0.5, 0.95), np.random.default_rng(1))
    ref = stats.norm(mus, 0.5)
    np.testing.assert_allclose(fc.median, mus, atol=0.015)
    np.testing.assert_allclose(fc.q05, ref.ppf(0.05), atol=0.02)
    np.testing.assert_allclose(fc.q95, ref.ppf(0.95), atol=0.02)
    np.testing.assert_allclose(fc.p_positive, ref.sf(0.0), atol=0.01)
    # P(> 0.5) for mu = 1.2 is 0.919 < 0.95: undecided; mu = 0: P(|x| <= 0.5) = 0.683: undecided
    assert list(fc.call) == ["undecided", "undecided", "undecided", "undecided"]
    wide = fold_changes(a, b, CallRule(0.5, 0.6), np.random.default_rng(1))
    assert list(wide.call) == ["down", "unchanged", "undecided", "up"]  # BH at FDR 0.4 keeps the first two by p_sign
    np.testing.assert_allclose(fc.p_sign, 2 * np.minimum(ref.cdf(0.0), ref.sf(0.0)), atol=0.01, rtol=0.05)
    np.testing.assert_allclose(wide.p_call[3], ref.sf(0.5)[3], atol=0.01)
    np.testing.assert_allclose(wide.p_call[0], ref.cdf(-0.5)[0], atol=0.01)


@settings(max_examples=60, deadline=None)
@given(mu=st.floats(-3, 3), sd=st.floats(0.02, 2), t=st.floats(0, 1.5), p=st.floats(0.51, 0.99),
       seed=st.integers(0, 2**31))
def test_each_gene_gets_one_call_consistent_with_its_summary(mu, sd, t, p, seed):
    rng = np.random.default_rng(seed)
    a = 2.0 ** rng.normal(0, sd, (3, 500))
    b = 2.0 ** rng.normal(mu, sd, (3, 500))
    fc = fold_changes(a, b, CallRule(t, p), np.random.default_rng(seed + 1))
    assert set(fc.call) <= {"up", "down", "unchanged", "undecided"}
    for k, call in enumerate(fc.call):
        assert (call == "undecided") == np.isnan(fc.p_call[k])
        if call == "up":  # probabilities: counted over the same D x D pairs, so these hold exactly
            assert fc.p_positive[k] + 1e-12 >= fc.p_call[k] >= p
        elif call == "down":
            assert fc.p_positive[k] <= 1 - fc.p_call[k] + 1e-12 and fc.p_call[k] >= p
        elif call == "unchanged":
            assert fc.p_call[k] >= p
        assert fc.q05[k] <= fc.median[k] <= fc.q95[k]
    changed = np.isin(fc.call, ("up", "down"))
    assert np.all(fc.p_sign[changed] <= 1 - p) and np.all(benjamini_hochberg(fc.p_sign, 1 - p)[changed])


@settings(max_examples=100, deadline=None)
@given(p=st.lists(st.floats(0, 1), min_size=0, max_size=40), alpha=st.floats(0.001, 0.5))
def test_benjamini_hochberg_rejects_the_largest_set_its_definition_allows(p, alpha):
    p = np.array(p)
    m = len(p)
    k = max([i for i in range(1, m + 1) if np.sort(p)[i - 1] <= alpha * i / m], default=0)
    expect = p <= np.sort(p)[k - 1] if k else np.zeros(m, bool)
    np.testing.assert_array_equal(benjamini_hochberg(p, alpha), expect)


def test_calls_control_the_false_discovery_rate_where_per_gene_probabilities_do_not():
    """4,000 genes, 90% unchanged, each gene's log2 fold change posterior N(estimate, s^2) with the estimate
    N(truth, s^2) (a flat prior: P(opposite sign) is a one-sided p-value), s from 0.2 to 0.6, changes +-1: the
    calls' false discovery proportion stays under 5%, while P >= 0.95 gene by gene alone calls more nulls."""
    rng = np.random.default_rng(11)
    g, d = 4000, 1000
    truth = np.where(rng.random(g) < 0.1, rng.choice([-1.0, 1.0], g), 0.0)
    s = rng.uniform(0.2, 0.6, g)
    est = truth + s * rng.normal(size=g)
    a = 2.0 ** (s[:, None] / np.sqrt(2) * rng.normal(size=(g, d)))
    b = 2.0 ** (est[:, None] + s[:, None] / np.sqrt(2) * rng.normal(size=(g, d)))
    fc = fold_changes(a, b, CallRule(0.0, 0.95), np.random.default_rng(2))
    called = np.isin(fc.call, ("up", "down"))
    sign = np.where(fc.call == "up", 1.0, -1.0)
    false = called & (np.sign(truth) != sign)
    assert called.sum() > 150 and false.sum() / called.sum() < 0.05
    per_gene = np.maximum(fc.p_positive, 1 - fc.p_positive) >= 0.95
    assert (per_gene & (truth == 0)).sum() > 2 * false.sum()


@pytest.mark.parametrize("kwargs, message", [({"threshold": -0.1}, "--lfc-threshold"),
                                             ({"probability": 0.5}, "--call-probability"),
                                             ({"probability": 1.0}, "--call-probability")])
def test_call_rule_rejects_bad_values(kwargs, message):
    with pytest.raises(UserError, match=message):
        CallRule(**kwargs)


# -------------------------------------------------------------------------------------------------- groups


def _adata(obs: dict, n_genes: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = len(next(iter(obs.values())))
    return anndata.AnnData(X=sp.csr_matrix(rng.poisson(3.0, (n, n_genes)).astype(np.float32)),
                           obs=pd.DataFrame(obs, index=[f"c{i}" for i in range(n)]),
                           var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))


def test_groups_from_every_source_and_their_order(tmp_path):
    labels = ["ko", "wt", None, "ko", "wt", "het"]
    cat = pd.Categorical(labels, categories=["wt", "het", "ko"])
    adata = _adata({"geno": cat, "text": [x or "" for x in labels], "batch": [1, 2, 1, 2, 2, 1]})
    adata.obs.loc["c2", "text"] = np.nan
    path = tmp_path / "d.h5ad"
    adata.write_h5ad(path)
    for source in (adata, path):
        g = cell_groups(source, "geno")
        assert g.names == ("wt", "het", "ko") and g.outside == 1  # categories' order; a missing label: no group
        assert [m.tolist() for m in g.masks][0] == [False, True, False, False, True, False]
        assert cell_groups(source, "text").names == ("het", "ko", "wt")  # text: sorted
        assert cell_groups(source, "batch").names == ("1", "2")  # numbers without ".0"
        chosen = cell_groups(source, "geno", ["ko", "wt"])
        assert chosen.names == ("ko", "wt") and chosen.outside == 2 and chosen.pair_name(0, 1) == "wt_vs_ko"
    table = write_table(tmp_path / "t.csv", {"g0": np.arange(4), "g1": np.arange(4)})
    text = table.read_text().splitlines()
    table.write_text("\n".join([text[0] + ",cond"] + [r + f",{c}" for r, c in zip(text[1:], "ABAB")]) + "\n")
    g = cell_groups(table, "cond")
    assert g.names == ("A", "B") and g.sizes() == [2, 2] and g.pairs() == [(0, 1)]


@pytest.mark.parametrize("column, groups, message", [
    ("nope", None, "obs has no column 'nope'"),
    ("one", None, r"holds one group \('x'\)"),
    ("geno", ["wt", "mut"], "'mut' not in column 'geno'"),
    ("geno", ["wt"], "name two or more groups"),
    ("geno", ["wt", "wt"], "more than once"),
    ("many", None, "30 distinct values"),
])
def test_bad_groups_name_the_column_and_the_fix(column, groups, message):
    adata = _adata({"geno": ["wt", "ko"] * 15, "one": ["x"] * 30, "many": np.arange(30) * 0.5})
    with pytest.raises((UserError, DataFileError), match=message):
        cell_groups(adata, column, groups)


# ---------------------------------------------------------------------------------------- a subset of cells


@pytest.mark.parametrize("layout", ["csr", "csc", "dense", "csv"])
def test_reading_a_subset_of_cells_equals_reading_those_cells_alone(tmp_path, layout):
    rng = np.random.default_rng(3)
    counts = rng.poisson(rng.uniform(0.2, 8, 7), (301, 7)).astype(np.float32)
    counts[:, 2] = 0
    mask = rng.random(301) < 0.4
    edges = np.array([0, 1, 2, 3, 5, 8, 13])

    def write(name: str, x: np.ndarray) -> Path:
        if layout == "csv":
            return write_table(tmp_path / f"{name}.csv", {f"g{j}": x[:, j] for j in range(x.shape[1])})
        m = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.asarray}[layout](x)
        p = tmp_path / f"{name}.h5ad"
        anndata.AnnData(X=m, var=pd.DataFrame(index=[f"g{j}" for j in range(x.shape[1])])).write_h5ad(p)
        return p

    whole, part = write("whole", counts), write("part", counts[mask])
    sub = gene_histograms(whole, edges, chunk=50, cells=mask)
    ref = gene_histograms(part, edges, chunk=50)
    assert sub.n_cells == ref.n_cells == mask.sum()
    for field in ("hist", "nonzero", "total", "sumsq", "max"):
        np.testing.assert_array_equal(getattr(sub, field), getattr(ref, field))
    np.testing.assert_array_equal(read_gene_counts(whole, ["g4", "g0"], cells=mask), counts[mask][:, [4, 0]])
    idx = rng.integers(0, 3, (mask.sum(), 2))
    w = rng.random((mask.sum(), 2))
    np.testing.assert_allclose(gene_histograms(whole, edges, nodes=(idx, w, 3), cells=mask).node_hist,
                               gene_histograms(part, edges, nodes=(idx, w, 3)).node_hist)
    with pytest.raises(ValueError, match="cell mask"):
        gene_histograms(whole, edges, cells=mask[:-1])


# ---------------------------------------------------------------------------------------------- whole runs

# genes of group "ctrl" (k0, k1, v0): bursty, moderately expressed; group "treated" changes some of them
BASE = [(0.5, 2.0, 40.0), (1.0, 4.0, 60.0), (0.3, 1.0, 20.0), (0.8, 3.0, 50.0), (0.6, 2.5, 30.0), (0.4, 1.5, 45.0)]
CHANGE = {"null0": (1, 1), "null1": (1, 1), "freq_up": (4, 1), "freq_down": (0.25, 1), "size_up": (1, 4),
          "both": (4, 0.25)}  # (factor on k0, factor on v0) of treated over ctrl
CELLS = 1500


def _telegraph(rng: np.random.Generator, k0: float, k1: float, v0: float, n: int) -> np.ndarray:
    return rng.poisson(v0 * rng.beta(k0, k1, n))


def _experiment(capture_treated: float = 1.0, seed: int = 5):
    """(counts (2 CELLS, genes), obs): exact telegraph cells; treated cells thinned by capture_treated."""
    rng = np.random.default_rng(seed)
    cols = []
    for (k0, k1, v0), (fk, fv) in zip(BASE, CHANGE.values()):
        ctrl = _telegraph(rng, k0, k1, v0, CELLS)
        treated = rng.binomial(_telegraph(rng, k0 * fk, k1, v0 * fv, CELLS), capture_treated)
        cols.append(np.concatenate([ctrl, treated]))
    obs = pd.DataFrame({"condition": pd.Categorical(["ctrl"] * CELLS + ["treated"] * CELLS),
                        "sf": [1.0] * CELLS + [capture_treated] * CELLS},
                       index=[f"cell{i}" for i in range(2 * CELLS)])
    return np.array(cols).T.astype(np.float32), obs


def _truth(variable: str, gene: str) -> str:
    fk, fv = CHANGE[gene]
    factor = fk if variable == "burst_frequency" else fv
    return "up" if factor > 1 else "down" if factor < 1 else "unchanged"


@pytest.fixture(scope="module")
def thinned_run(tmp_path_factory):
    """An .h5ad whose treated cells were captured at half the rate, given as an obs column of size factors."""
    tmp = tmp_path_factory.mktemp("diff")
    x, obs = _experiment(capture_treated=0.5)
    path = tmp / "counts.h5ad"
    anndata.AnnData(X=sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=list(CHANGE))).write_h5ad(path)
    run = TableRun(str(path), capture=0.75, size_factors="sf", seed=3)  # efficiencies 1 (ctrl) and 0.5 (treated)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = infer_differential(run, "condition", None, tmp / "out", settings=FAST, **QUIET)
    return done, tmp / "out", caught


def test_known_changes_are_called_and_nothing_else(thinned_run):
    done, out, caught = thinned_run
    rows = list(csv.DictReader((out / "differential.csv").open()))
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == 2 * len(CHANGE) and {r["pair"] for r in rows} == {"treated_vs_ctrl"}
    for r in rows:
        truth = _truth(r["variable"], r["gene"])
        if truth == "unchanged":
            assert r["call"] in ("unchanged", "undecided"), r
        else:
            assert r["call"] == truth, r
            assert float(r["log2fc_q05"]) < (2 if truth == "up" else -2) < float(r["log2fc_q95"]), r
    assert not any("capture" in str(w.message) for w in caught)  # size factors given: no warning


def test_outputs_of_a_comparison(thinned_run):
    done, out, _ = thinned_run
    for group in ("ctrl", "treated"):
        genes = list(csv.DictReader((out / "groups" / group / "genes.csv").open()))
        assert [g["gene"] for g in genes] == list(CHANGE) and int(genes[0]["cells"]) == CELLS
        assert (out / "groups" / group / "posterior.nc").is_file()
    assert (out / "differential_treated_vs_ctrl.png").stat().st_size > 10_000
    adata = anndata.read_h5ad(out / "bursting.h5ad")
    table = pd.read_csv(out / "differential.csv", keep_default_na=False)
    for r in table.itertuples():
        prefix = f"{r.pair}_{r.variable}_"
        assert adata.var.loc[r.gene, prefix + "call"] == r.call
        for col in ("log2fc_median", "log2fc_q05", "log2fc_q95", "p_positive"):
            assert adata.var.loc[r.gene, prefix + col] == getattr(r, col)
    ctrl = pd.read_csv(out / "groups" / "ctrl" / "genes.csv", index_col="gene")
    np.testing.assert_allclose(adata.var["ctrl_burst_size_median"], ctrl.loc[adata.var_names, "burst_size_median"])
    assert (adata.var["treated_skipped"] == "").all()
    assert adata.uns["surrogate_abc"]["groupby"] == "condition" and adata.uns["surrogate_abc"]["lfc_threshold"] == 0.5
    assert "treated_vs_ctrl" in done.text and "false discovery rate of 0.05" in done.text


def test_without_size_factors_a_capture_difference_reads_as_burst_size_and_warns():
    """The same kind of data in memory (sa.tl.differential_bursting): without size factors the halved capture
    of the treated cells is taken for smaller bursts in every gene, and the run says so."""
    import surrogate_abc as sa

    x, obs = _experiment(capture_treated=0.5, seed=6)
    adata = anndata.AnnData(X=sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=list(CHANGE)))
    with pytest.warns(UserWarning, match=r"mean total counts per cell differ .*--size-factors total"):
        table = sa.tl.differential_bursting(adata, "condition", batch=FAST, seed=1)
    size = table[table.variable == "burst_size"].set_index("gene")
    assert (size.loc[["null0", "null1", "freq_up"], "call"] == "down").all()  # unchanged genes read as smaller bursts
    assert list(table.columns) == list(COLUMNS)
    assert (adata.var["treated_vs_ctrl_burst_size_call"] == size.loc[adata.var_names, "call"]).all()
    assert "ctrl_burst_frequency_median" in adata.var and adata.uns["surrogate_abc"]["groups"] == '["ctrl", "treated"]'


def test_a_table_with_a_group_column_and_groups_in_a_given_order(tmp_path):
    rng = np.random.default_rng(8)
    n = 400
    cols = {"up": np.concatenate([_telegraph(rng, 0.5, 2, 40, n), _telegraph(rng, 2.0, 2, 40, n)]),
            "flat": np.concatenate([_telegraph(rng, 1.0, 4, 60, n), _telegraph(rng, 1.0, 4, 60, n)])}
    table = write_table(tmp_path / "counts.csv", cols)
    lines = table.read_text().splitlines()
    labels = ["a"] * n + ["b"] * n
    table.write_text("\n".join([lines[0] + ",state"] + [r + f",{s}" for r, s in zip(lines[1:], labels)]) + "\n")
    r = run_cli(["infer", str(table), "--groupby", "state", "--groups", "b,a", "--ess", "300", "--draws", "400",
                 "--no-plots", "--quiet", "--out", str(tmp_path / "out")], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {(x["gene"], x["variable"]): x for x in csv.DictReader((tmp_path / "out" / "differential.csv").open())}
    assert {g for g, _ in rows} == {"up", "flat"}  # the group column is no gene
    assert {x["pair"] for x in rows.values()} == {"a_vs_b"}
    assert rows[("up", "burst_frequency")]["call"] == "down"  # a over b: frequency 4x lower
    assert "a_vs_b" in r.stdout and not (tmp_path / "out" / "bursting.h5ad").exists()


@pytest.mark.parametrize("args, message", [
    (["--groups", "a,b"], "--groups applies with --groupby"),
    (["--lfc-threshold", "1"], "--lfc-threshold applies with --groupby"),
    (["--groupby", "state", "--method", "smc"], "--groupby applies to --method batch"),
    (["--groupby", "state", "--lfc-threshold", "-1"], "--lfc-threshold -1.0: give a log2 fold change >= 0"),
    (["--groupby", "nope"], "no column 'nope' for --groupby"),
    (["--groupby", "state", "--groups", "a,c"], "'c' not in column 'state'"),
])
def test_bad_comparisons_stop_with_one_line(tmp_path, args, message):
    table = write_table(tmp_path / "counts.csv", {"g": np.arange(6) % 3})
    lines = table.read_text().splitlines()
    table.write_text("\n".join([lines[0] + ",state"] + [r + f",{s}" for r, s in zip(lines[1:], "ababab")]) + "\n")
    r = run_cli(["infer", str(table), *args, "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_a_model_without_bursts_is_refused(tmp_path):
    from conftest import write_protocol

    run = TableRun(str(write_table(tmp_path / "c.csv", {"g": np.arange(4)})), f"exact:{write_protocol(tmp_path)}")
    with pytest.raises(UserError, match="compares burst frequency and burst size"):
        infer_differential(run, "state", out_dir=tmp_path / "o", **QUIET)
