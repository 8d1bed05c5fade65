"""Per-cell capture (size factors) in the batch method: the interpolation over efficiency nodes against the per-cell
likelihood, the node histograms of every reader, the exact posterior of Poisson genes with 5-fold efficiencies,
and bad size factors."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from surrogate_abc.emulators.capture import CapturedEmulator
from surrogate_abc.emulators.exact import exact_emulator
from surrogate_abc.inference.transcriptome import BatchSettings, TableRun, infer_transcriptome
from surrogate_abc.inference.transcriptome import efficiency as ef

from conftest import run_cli, write_protocol

FAST = BatchSettings(shared_sets=1024, ess_target=400, draws=400, ppc_draws=50, block_size=4)


def _table(path: Path, columns: dict[str, np.ndarray]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(columns))
        for row in zip(*columns.values()):
            w.writerow([f"{v:.6g}" if isinstance(v, float) else int(v) for v in row])
    return path


@settings(max_examples=30, deadline=None)
@given(k=st.sampled_from([1, 2, 3, 4, 7, 16]), seed=st.integers(0, 10_000))
def test_node_weights_sum_to_one_and_interpolate_cubics_exactly(k, seed):
    rng = np.random.default_rng(seed)
    s = np.exp(rng.uniform(np.log(0.2), np.log(3.0), 40))
    nodes = ef.EfficiencyNodes.spanning(s, k)
    idx, w = nodes.weights(s)
    assert np.allclose(w.sum(axis=1), 1.0)
    degree = min(k, 4) - 1  # m nodes reproduce polynomials of degree m - 1 in log s
    u = np.log(nodes.scales)
    for p in range(degree + 1):
        assert np.allclose((w * u[idx] ** p).sum(axis=1), np.log(s) ** p, atol=1e-9)
    assert np.all(w[np.array([0.0])[:0].astype(int)] == 0)  # nothing left out here
    _, w0 = nodes.weights(np.array([0.0, s[0]]))
    assert np.all(w0[0] == 0) and w0[1].sum() == pytest.approx(1.0)


def _poisson_case(tmp_path: Path, n: int = 2000, rate: float = 20.0, beta: float = 0.3, seed: int = 1):
    rng = np.random.default_rng(seed)
    s = np.exp(rng.uniform(np.log(0.45), np.log(2.25), n))  # 5-fold range
    s /= s.mean()
    x = rng.poisson(rate * beta * s)
    inner = exact_emulator(str(write_protocol(tmp_path)))
    return inner, CapturedEmulator(inner, capture=beta), s, x


def test_node_likelihood_converges_to_the_per_cell_one_and_choose_nodes_meets_the_tolerance(tmp_path):
    inner, em, s, x = _poisson_case(tmp_path)
    edges = np.asarray(inner.edges[0], float)
    cats = ef.count_categories(x[:, None], [edges])
    ref = ef.per_cell_loglik(em, np.array([20.0]), cats[:, 0], s)
    # the per-cell reference is the sum of Poisson log-pmfs at each cell's own rate
    assert ref == pytest.approx(stats.poisson.logpmf(x, 20.0 * 0.3 * s).sum(), rel=1e-9)
    errors = []
    for k in (4, 8, 16, 32):
        nodes = ef.EfficiencyNodes.spanning(s, k)
        hist = ef.node_histograms(cats, s, nodes, len(edges))
        errors.append(abs(ef.node_loglik(ef.node_emulators(em, nodes), np.array([20.0]), hist[0]) - ref))
    assert errors[-1] < 2e-3 and all(b < a / 4 for a, b in zip(errors, errors[1:])), errors  # ~h^4
    choice = ef.choose_nodes(em, s, cats, np.array([[20.0]]))
    assert choice.errors[choice.nodes.k] <= ef.TOL_NATS and "within" in choice.line()
    smaller = [k for k in choice.errors if k < choice.nodes.k]
    assert all(choice.errors[k] > ef.TOL_NATS for k in smaller)


def _reference_node_hist(x: np.ndarray, idx: np.ndarray, w: np.ndarray, k: int, edges: np.ndarray) -> np.ndarray:
    """(G, K, C) node-weighted histograms of dense counts, by one weighted bincount per stencil node."""
    n, g = x.shape
    c = np.searchsorted(edges, x, side="right") - 1
    out = np.zeros((g, k, len(edges)))
    for j in range(idx.shape[1]):
        flat = (np.arange(g)[None, :] * k + idx[:, j][:, None]) * len(edges) + c
        out += np.bincount(flat.ravel(), weights=np.repeat(w[:, j], g), minlength=out.size).reshape(out.shape)
    return out


def test_node_histograms_are_the_same_from_csv_csr_csc_and_memory(tmp_path):
    anndata = pytest.importorskip("anndata")
    import scipy.sparse as sp

    from surrogate_abc.data.gene_histograms import gene_histograms

    rng = np.random.default_rng(2)
    x = rng.poisson(rng.uniform(0.05, 3.0, 5), size=(300, 5)).astype(np.float32)
    s = np.exp(rng.uniform(-0.8, 0.8, 300))
    nodes = ef.EfficiencyNodes.spanning(s, 8)
    idx, w = nodes.weights(s)
    edges = np.array([0.0, 1, 2, 3, 5, 8, 13])
    ref = _reference_node_hist(x.astype(int), idx, w, nodes.k, edges)
    names = [f"g{j}" for j in range(5)]
    _table(tmp_path / "t.csv", {n: x[:, j].astype(int) for j, n in enumerate(names)})
    import pandas as pd

    var = pd.DataFrame(index=names)
    sources = [str(tmp_path / "t.csv")]
    for fmt, mat in (("csr", sp.csr_matrix(x)), ("csc", sp.csc_matrix(x))):
        anndata.AnnData(X=mat, var=var).write_h5ad(tmp_path / f"{fmt}.h5ad")
        sources.append(str(tmp_path / f"{fmt}.h5ad"))
    sources.append(anndata.AnnData(X=sp.csr_matrix(x), var=var))
    for src in sources:
        got = gene_histograms(src, edges, None, None, chunk=64, nodes=(idx, w, nodes.k))
        assert got.node_hist is not None and np.allclose(got.node_hist, ref, atol=1e-9), src
        assert np.allclose(got.node_hist.sum(axis=2), ref.sum(axis=2))
    got = ef.node_histograms(ef.count_categories(x.astype(int), [edges]), s, nodes, len(edges))
    assert np.allclose(got, ref, atol=1e-9)


@pytest.mark.parametrize("spec", ["sf", "total"])
def test_poisson_genes_with_5_fold_efficiencies_get_the_exact_posterior(tmp_path, spec):
    """x_i ~ Poisson(a beta s_i), log-uniform prior: the posterior of a is Gamma(sum x, beta sum s_i) exactly. With
    --size-factors total, s_i are the cells' totals over the mean (two genes carry them); cells with no counts at
    all are left out and counted."""
    rng = np.random.default_rng(4)
    n, beta = 1500, 0.3
    s = np.exp(rng.uniform(np.log(0.45), np.log(2.25), n))
    s /= s.mean()
    rates = {"A": 4.0, "B": 25.0}
    cols: dict[str, np.ndarray] = {g: rng.poisson(a * beta * s) for g, a in rates.items()}
    if spec == "total":
        cols["A"][:7] = 0
        cols["B"][:7] = 0  # at least 7 cells without counts: left out
        tot = cols["A"] + cols["B"]
        sf = np.where(tot > 0, tot / tot[tot > 0].mean(), 0.0)
    else:
        cols["sf"] = s
        sf = s
    table = _table(tmp_path / "t.csv", cols)
    lines: list[str] = []
    run = TableRun(str(table), f"exact:{write_protocol(tmp_path)}", capture=beta, size_factors=spec)
    csv_path, text = infer_transcriptome(run, tmp_path / "out", FAST, progress=False, log=lines.append)
    with csv_path.open() as fh:
        rows = {r["gene"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(rates)  # the size factor column is not a gene
    assert any("efficiency node(s)" in line and "within 0.01" in line for line in lines), lines
    keep = sf > 0
    if spec == "total":
        n_zero = int(np.count_nonzero(sf == 0))
        assert n_zero >= 7 and any(f"{n_zero} cell(s) with a total count of 0 left out" in line for line in lines)
        assert rows["A"]["cells"] == str(n - n_zero)
    for g in rates:
        x = cols[g][keep]
        ref = stats.gamma(x.sum(), scale=1.0 / (beta * sf[keep].sum()))
        width = ref.ppf(0.95) - ref.ppf(0.05)
        for key, q in (("median", 0.5), ("q05", 0.05), ("q95", 0.95)):
            assert abs(float(rows[g][f"a_{key}"]) - ref.ppf(q)) < 0.1 * width, (g, key, rows[g][f"a_{key}"], ref.ppf(q))


@pytest.mark.parametrize("values, message", [
    ([1.0, float("nan"), 2.0], "is missing for cell at row 3"),
    ([1.0, 0.0, 2.0], "is 0 for cell at row 3"),
    ([1.0, -1.0, 2.0], "is -1 for cell at row 3"),
])
def test_bad_size_factors_stop_with_one_line(tmp_path, values, message):
    table = _table(tmp_path / "t.csv", {"G": np.array([1, 2, 3]), "sf": np.array(values)})
    r = run_cli(["infer", str(table), "--emulator", f"exact:{write_protocol(tmp_path)}", "--capture", "0.5",
                 "--size-factors", "sf", "--min-cells", "1", "--out", str(tmp_path / "o")], cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "size factor column 'sf'" in r.stderr and message in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_size_factors_need_a_capture_and_a_known_column(tmp_path):
    table = _table(tmp_path / "t.csv", {"G": np.array([1, 2, 3])})
    proto = f"exact:{write_protocol(tmp_path)}"
    r = run_cli(["infer", str(table), "--emulator", proto, "--size-factors", "total", "--out", str(tmp_path / "o")],
                cwd=tmp_path)
    assert r.returncode == 2 and "--size-factors needs the capture efficiency" in r.stderr, r.stderr
    r = run_cli(["infer", str(table), "--emulator", proto, "--capture", "0.5", "--size-factors", "libsize",
                 "--out", str(tmp_path / "o")], cwd=tmp_path)
    assert r.returncode == 2 and "no column 'libsize'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_obs_column_of_an_h5ad(tmp_path):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    from surrogate_abc.data.size_factors import size_factors

    obs = pd.DataFrame({"sf": [0.5, 1.0, 1.5], "kind": ["a", "b", "a"]}, index=["c1", "c2", "c3"])
    ad = anndata.AnnData(X=np.ones((3, 2), np.float32), obs=obs)
    ad.write_h5ad(tmp_path / "d.h5ad")
    assert np.allclose(size_factors(str(tmp_path / "d.h5ad"), "sf"), [0.5, 1.0, 1.5])
    assert np.allclose(size_factors(ad, "sf"), [0.5, 1.0, 1.5])
    ad.obs.loc["c2", "sf"] = -1.0
    ad.write_h5ad(tmp_path / "bad.h5ad")
    from surrogate_abc.errors import DataFileError

    with pytest.raises(DataFileError, match="is -1 for cell c2"):
        size_factors(str(tmp_path / "bad.h5ad"), "sf")
    with pytest.raises(DataFileError, match="categorical"):
        size_factors(str(tmp_path / "d.h5ad"), "kind")


def test_thinned_category_probs_of_the_mdn_are_its_thinned_pmf():
    """CapturedEmulator.category_probs on an MDN computes the thinned mixture only up to the categories asked; it
    equals the full thinned pmf's columns (float32 arithmetic), at node scales with efficiencies clipped at 1."""
    from surrogate_abc.emulators.resolve import resolve_emulator

    inner, _ = resolve_emulator(None, ("mrna",))
    rng = np.random.default_rng(0)
    theta = np.column_stack([10 ** rng.uniform(-1, 0.5, 300), 10 ** rng.uniform(0, 1.5, 300),
                             10 ** rng.uniform(1, 2.5, 300)])
    cats = np.arange(37)
    for scale in (0.5, 1.0, 3.0):  # 3 x 0.4 > 1: clipped
        em = CapturedEmulator(inner, capture=0.4, scale=scale)
        probs, over = em.pmf(theta)
        full = np.concatenate([probs, over[:, None]], axis=1)[:, cats]
        assert np.allclose(em.category_probs(theta, cats), full, atol=1e-6)


def test_size_factors_with_a_capture_prior(tmp_path):
    """capture ~ U(0.2, 0.4) is a parameter shared by all cells, each cell seen with capture x s_i: the product
    a x capture (what Poisson counts identify) is pinned near sum x / sum s, and `capture` is in the posterior."""
    import arviz as az

    rng = np.random.default_rng(0)
    s = np.exp(rng.uniform(np.log(0.45), np.log(2.25), 1000))
    s /= s.mean()
    x = rng.poisson(10 * 0.3 * s)
    table = _table(tmp_path / "t.csv", {"G": x, "sf": s})
    run = TableRun(str(table), f"exact:{write_protocol(tmp_path)}", capture_prior=(0.2, 0.4), size_factors="sf")
    infer_transcriptome(run, tmp_path / "out", FAST, progress=False, log=lambda _m: None)
    post = az.from_netcdf(str(tmp_path / "out" / "posterior.nc")).posterior
    product = (post["a"] * post["capture"]).values.ravel()
    ref = stats.gamma(x.sum(), scale=1.0 / s.sum())  # the posterior of the product under a flat prior on it
    assert abs(np.median(product) - ref.median()) < 0.15 * (ref.ppf(0.95) - ref.ppf(0.05))
    assert 0.2 <= post["capture"].values.min() and post["capture"].values.max() <= 0.4
