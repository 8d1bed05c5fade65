"""Spliced and unspliced counts (`surrogate-abc infer TABLE.h5ad --layers unspliced,spliced`): the joint histograms
of two layers against a direct count, capture as a scaled birth rate against the binomially thinned FSP law, the
burst kinetics of telegraph_splicing, whole runs (batch and ABC-SMC) on genes drawn from the exact law, and bad
input."""
from __future__ import annotations

import numpy as np
import pytest

from surrogate_abc import load_protocol
from surrogate_abc.cli import main
from surrogate_abc.config import FSPSettings
from surrogate_abc.data.joint_histograms import joint_categories, joint_gene_histograms
from surrogate_abc.emulators.exact import exact_emulator
from surrogate_abc.emulators.rate_capture import RateCapture
from surrogate_abc.errors import DataFileError, UserError
from surrogate_abc.inference.calibration.datasets import exact_counts_pmf, sample_cells
from surrogate_abc.inference.transcriptome import BatchSettings, TableRun
from surrogate_abc.inference.transcriptome.run import run_batch
from surrogate_abc.networks.bursts import burst_kinetics
from surrogate_abc.networks.poisson_capture import capture_rate
from surrogate_abc.simulate.fsp import solve_stationary

anndata = pytest.importorskip("anndata")
sp = pytest.importorskip("scipy.sparse")
pd = pytest.importorskip("pandas")

FAST = BatchSettings(shared_sets=1024, ess_target=400, draws=1000, ppc_draws=50, block_size=4)
QUIET = {"progress": False, "log": lambda _m: None}
# three genes inside the prior: bursty with slow splicing, fast switching, rare large bursts with fast splicing
TRUTH = np.array([[0.3, 3.0, 20.0, 3.0], [2.0, 1.0, 8.0, 20.0], [0.1, 10.0, 60.0, 40.0]])


@pytest.fixture(scope="module")
def protocol():
    return load_protocol("telegraph_splicing")


def _adata(protocol, truth: np.ndarray, n_cells: int, seed: int, fmt=sp.csr_matrix):
    rng = np.random.default_rng(seed)
    cols = []
    for theta in truth:
        law = exact_counts_pmf(protocol, theta, [a.cap for a in protocol.axes])
        cols.append(sample_cells(law.pmf, law.overflow, n_cells, rng))
    u = np.stack([c[:, 0] for c in cols], axis=1).astype(np.float32)
    s = np.stack([c[:, 1] for c in cols], axis=1).astype(np.float32)
    a = anndata.AnnData(X=fmt(u + s), layers={"unspliced": fmt(u), "spliced": fmt(s)})
    a.var_names = [f"g{i}" for i in range(len(truth))]
    return a, u.astype(np.int64), s.astype(np.int64)


# ------------------------------------------------------------------------------------------ joint histograms


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_joint_histograms_count_each_cell_once(tmp_path, fmt):
    rng = np.random.default_rng(1)
    u = rng.poisson(0.8, (200, 4))
    s = rng.poisson(4.0, (200, 4))
    u[:, 3] = s[:, 3] = 0           # an all-zero gene
    u[0, 0], s[1, 1], s[2, 2] = 50, 45, 7  # beyond the grid in one layer only: the overflow
    conv = {"dense": np.asarray, "csr": sp.csr_matrix, "csc": sp.csc_matrix}[fmt]
    a = anndata.AnnData(X=conv(s.astype(float)), layers={"unspliced": conv(u.astype(float)),
                                                           "spliced": conv(s.astype(float))})
    a.var_names = ["a", "b", "c", "d"]
    path = tmp_path / "t.h5ad"
    a.write_h5ad(path)
    edges = (np.arange(0.0, 41.0), np.array([0.0, 1, 2, 4, 8, 16, 40]))
    mask = rng.random(200) < 0.7
    for src, cells in ((path, None), (a, None), (path, mask)):
        h = joint_gene_histograms(src, ("unspliced", "spliced"), edges, cells=cells)
        keep = np.ones(200, bool) if cells is None else cells
        ref = np.zeros((4, 40 * 6 + 1), np.int64)
        for g in range(4):
            for x, y in zip(u[keep, g], s[keep, g]):
                j = np.searchsorted(edges[1], y, side="right") - 1
                ref[g, -1 if (x >= 40 or y >= 40) else x * 6 + j] += 1
        np.testing.assert_array_equal(h.hist, ref)
        np.testing.assert_array_equal(h.nonzero, ((u[keep] > 0) | (s[keep] > 0)).sum(axis=0))
        np.testing.assert_allclose(h.layer_total, np.stack([u[keep].sum(0), s[keep].sum(0)], axis=1))
        np.testing.assert_allclose(h.mean(), s[keep].mean(axis=0))
        assert h.n_cells == keep.sum()


def test_joint_likelihoods_use_only_the_categories_holding_cells(protocol):
    """The batch likelihood of joint histograms, at per-gene sets (only the categories up to the gene's last) and
    at shared sets (only the categories any gene uses), equals the full multinomial log-likelihood."""
    from surrogate_abc.emulators.resolve import resolve_emulator
    from surrogate_abc.inference.transcriptome.likelihood import (
        GeneLikelihoods,
        category_log_pmf,
        full_log_pmf,
        used_categories,
    )

    em, _ = resolve_emulator(None, ("nascent", "mature"))
    # float64: at the prior's draws some cells lie where the probabilities are far below float32's range, which
    # the full pass (float32 pmf grid) floors and the categories' path (float64 walk) does not
    em.model.double()
    _, u, s = _adata(protocol, TRUTH, 300, seed=2)
    edges = em.edges
    hist = np.stack([joint_gene_histograms_of(u[:, g], s[:, g], edges) for g in range(3)])
    theta = em.protocol.sample(6, 3)
    full = hist @ full_log_pmf(em, theta).T  # (genes, sets)
    cats = used_categories(hist)
    lik = GeneLikelihoods(em, hist, cats)
    np.testing.assert_allclose(lik.shared(category_log_pmf([em], theta, cats)), full, rtol=1e-9)
    genes = np.repeat(np.arange(3), 6)
    np.testing.assert_allclose(lik.at(genes, np.tile(theta, (3, 1))), full.ravel(), rtol=1e-9)


def joint_gene_histograms_of(u: np.ndarray, s: np.ndarray, edges) -> np.ndarray:
    n_cat = (len(edges[0]) - 1) * (len(edges[1]) - 1) + 1
    return np.bincount(joint_categories(u, s, edges), minlength=n_cat).astype(float)


# ----------------------------------------------------------------------------------------- capture as a rate


def test_capture_rate_is_found_from_the_network_structure():
    assert capture_rate(load_protocol("telegraph_splicing")) == "v0"
    assert capture_rate(load_protocol("telegraph_mrna")) == "v0"
    assert capture_rate(load_protocol("gene_joint")) is None       # protein is made from mRNA: not a chain
    assert capture_rate(load_protocol("autoregulation")) is None   # the protein acts on the promoter


def test_capture_of_both_layers_is_the_network_at_scaled_v0(protocol):
    """Binomial thinning of nascent and mature RNA (each molecule seen with probability c) of the exact FSP law
    equals the FSP law at c v0 (both layers are Poisson given the promoter's path)."""
    settings = FSPSettings(tol=1e-12, max_states=500_000)
    c = 0.3
    for k0, k1, v0, beta in [(0.5, 2.0, 30.0, 4.0), (3.0, 0.7, 10.0, 1.5)]:
        rates = {"k0": k0, "k1": k1, "v0": v0, "beta": beta, "gamma": 1.0}
        full = solve_stationary(protocol.network, rates, protocol.species, [150, 150], settings).pmf
        n = np.arange(150)
        from scipy import stats

        kern = stats.binom.pmf(n[None, :], n[:, None], c)  # (true, observed)
        thinned = kern.T @ full @ kern
        scaled = solve_stationary(protocol.network, {**rates, "v0": c * v0}, protocol.species, [150, 150],
                                  settings).pmf
        assert 0.5 * np.abs(thinned - scaled).sum() < 1e-9


def _thinned_fsp(protocol, theta, c_nascent: float, c_mature: float, size: int = 400):
    """The binned law of (nascent, mature) counts at theta, each molecule seen with its layer's probability: the FSP
    pmf on a box of `size` thinned by binomial kernels, then binned on the emulator's grid (flat, with overflow)."""
    from scipy import stats

    from surrogate_abc.emulators.exact import bin_integer_pmf

    rates = {**dict(zip(("k0", "k1", "v0", "beta"), theta)), "gamma": 1.0}
    full = solve_stationary(protocol.network, rates, protocol.species, [size, size],
                            FSPSettings(tol=1e-12, max_states=1_000_000)).pmf
    n = np.arange(size)
    seen = stats.binom.pmf(n[None, :], n[:, None], c_nascent).T @ full @ stats.binom.pmf(n[None, :], n[:, None],
                                                                                          c_mature)
    caps = [a.cap for a in protocol.axes]
    probs, _ = bin_integer_pmf(seen[:caps[0], :caps[1]], tuple(np.asarray(a.edges, float) for a in protocol.axes))
    return np.append(probs.ravel(), 1.0 - probs.sum())


def test_rate_capture_keeps_the_prior_and_thins_below_the_emulators_range(protocol):
    """With one efficiency the wrapper is the network at c v0; where c v0 falls below the emulator's v0 range it is
    the law at the range's low end thinned on both axes: the true v0 keeps the emulator's prior."""
    exact = exact_emulator("exact:telegraph_splicing")
    em = RateCapture(exact, capture=0.5)
    lo = protocol.bounds()[protocol.param_names.index("v0"), 0]
    assert em.domain[2, 0] == pytest.approx(lo)
    theta = np.array([[0.5, 2.0, 30.0, 4.0]])
    p, _ = em.pmf(theta)
    q, _ = exact.pmf(theta * [1, 1, 0.5, 1])
    np.testing.assert_allclose(p, q, atol=1e-14)
    small = np.array([3.0, 0.7, 0.15, 1.5])  # c v0 = 0.075 < 0.1
    got = em.category_probs(small[None], np.arange(em.n_categories))[0]
    assert 0.5 * np.abs(got - _thinned_fsp(protocol, small, 0.5, 0.5)).sum() < 1e-9

    class RateOnly(type(exact)):  # an emulator that cannot thin its law: only the rate is scaled, the prior moves
        can_thin = False

    fixed = RateCapture(RateOnly(protocol, source="exact"), capture=0.5)
    assert fixed.domain[2, 0] == pytest.approx(lo / 0.5)
    with pytest.raises(UserError, match="raise --capture"):
        RateCapture(RateOnly(protocol, source="exact"), capture=lo / protocol.bounds()[2, 1] / 2)
    with pytest.raises(UserError, match="one efficiency per species needs"):
        RateCapture(RateOnly(protocol, source="exact"), capture=(0.3, 0.2))


@pytest.mark.parametrize("c", [(0.3, 0.1), (0.05, 0.2), (0.5, 0.2)])
def test_one_efficiency_per_layer_is_the_thinned_law(protocol, c):
    """--capture NASCENT,MATURE: the exact wrapper equals the FSP law thinned per layer to rounding; the shipped
    emulator, which thins its own mixture, is within the KL of its accuracy (held-out mean 5e-5)."""
    from surrogate_abc.emulators.resolve import resolve_emulator

    mdn, _ = resolve_emulator(None, ("nascent", "mature"))
    for theta in ([0.5, 2.0, 30.0, 4.0], [2.0, 0.5, 80.0, 3.0], [0.2, 5.0, 3.0, 20.0]):
        ref = _thinned_fsp(protocol, np.array(theta), *c)
        ex = RateCapture(exact_emulator("exact:telegraph_splicing"), capture=c)
        got = ex.category_probs(np.array([theta]), np.arange(ex.n_categories))[0]
        assert 0.5 * np.abs(got - ref).sum() < 1e-9
        p, over = RateCapture(mdn, capture=c).pmf(np.array([theta]))
        flat = np.append(p[0].ravel(), over[0])
        keep = ref > 0
        kl = float(np.sum(ref[keep] * np.log(ref[keep] / np.maximum(flat[keep], 1e-300))))
        assert kl < 1e-3, (theta, kl)


def test_burst_kinetics_of_the_splicing_model(protocol):
    theta = protocol.sample(5, 0)
    bk = burst_kinetics(protocol, theta)
    np.testing.assert_allclose(bk["burst_size"], theta[:, 2] / theta[:, 1])
    np.testing.assert_allclose(bk["burst_frequency"], theta[:, 0])  # per mature lifetime (gamma = 1)
    joint = load_protocol("gene_joint")  # protein is made from mRNA, not converted: no chain, no burst variables
    assert burst_kinetics(joint, joint.sample(2, 0)) == {}


# ------------------------------------------------------------------------------------------------ whole runs


def test_batch_layers_recover_known_genes(tmp_path, protocol):
    a, u, s = _adata(protocol, TRUTH, 1500, seed=3)
    path = tmp_path / "layers.h5ad"
    a.write_h5ad(path)
    out = tmp_path / "out"
    done = run_batch(TableRun(str(path), layers=("unspliced", "spliced"), seed=0), out, FAST, plots=False, **QUIET)
    rows = {r["gene"]: r for r in done.rows}
    assert set(rows) == {"g0", "g1", "g2"}
    hits = 0
    for g, theta in zip(("g0", "g1", "g2"), TRUTH):
        r = rows[g]
        assert r["mean"] == pytest.approx(s[:, int(g[1])].mean())
        truth = dict(zip(("k0", "k1", "v0", "beta"), theta))
        truth["burst_size"] = theta[2] / theta[1]
        for k, v in truth.items():
            hits += r[f"{k}_q05"] <= v <= r[f"{k}_q95"]
        # splicing: two layers pin beta within a factor ~2 (it is the nascent/mature ratio's scale)
        assert r["beta_q95"] / r["beta_q05"] < 4.0, g
    assert hits >= 13  # of 15 intervals at 90%
    df = pd.read_csv(out / "genes.csv")
    assert {"beta_median", "burst_frequency_median", "burst_size_median"} <= set(df.columns)
    var = anndata.read_h5ad(out / "bursting.h5ad").var
    assert "beta_median" in var.columns


def test_capture_applies_to_both_layers(tmp_path, protocol):
    """Cells drawn at c v0 (the layers thinned at c) and inferred with --capture c recover the true v0."""
    c = 0.4
    truth = TRUTH[:1].copy()
    seen = truth * [1, 1, c, 1]
    a, _, _ = _adata(protocol, seen, 1500, seed=5)
    path = tmp_path / "captured.h5ad"
    a.write_h5ad(path)
    done = run_batch(TableRun(str(path), layers=("unspliced", "spliced"), capture=c, seed=0), tmp_path / "o",
                     FAST, plots=False, **QUIET)
    r = done.rows[0]
    assert r["v0_q05"] <= truth[0, 2] <= r["v0_q95"]
    assert r["v0_median"] > 1.5 * seen[0, 2]  # the true v0, not the observed c v0


def _per_cell_capture(protocol, theta, levels, c, n_per_level: int, seed: int):
    """(AnnData, size factors): cells at the size factors `levels` (mean 1, in obs 'sf'), each layer thinned by its
    efficiency c[layer] x the cell's size factor, drawn from the FSP law thinned on the integers."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    size = 300
    rates = {**dict(zip(("k0", "k1", "v0", "beta"), theta)), "gamma": 1.0}
    full = solve_stationary(protocol.network, rates, protocol.species, [size, size],
                            FSPSettings(tol=1e-12, max_states=1_000_000)).pmf
    n = np.arange(size)
    cells = []
    for s in levels:
        kn, km = (stats.binom.pmf(n[None, :], n[:, None], min(x * s, 1.0)) for x in c)
        law = kn.T @ full @ km
        cells.append(sample_cells(law, max(1.0 - law.sum(), 0.0), n_per_level, rng))
    x = np.concatenate(cells).astype(np.float32)
    a = anndata.AnnData(X=sp.csr_matrix(x.sum(axis=1, keepdims=True)),
                        layers={"unspliced": sp.csr_matrix(x[:, :1]), "spliced": sp.csr_matrix(x[:, 1:])})
    a.var_names = ["g0"]
    a.obs["sf"] = np.repeat(levels, n_per_level)
    return a


def test_size_factors_and_one_efficiency_per_layer(tmp_path, protocol):
    """--size-factors with --layers and --capture NASCENT,MATURE: cells seen at 0.5 s_i (nascent) and 0.25 s_i
    (mature) for size factors s_i from 0.6 to 1.6 give back the true rates."""
    truth = np.array([0.5, 2.0, 30.0, 4.0])
    a = _per_cell_capture(protocol, truth, np.array([0.6, 0.8, 1.0, 1.6]), (0.5, 0.25), 400, seed=13)
    path = tmp_path / "sf.h5ad"
    a.write_h5ad(path)
    lines: list[str] = []
    run = TableRun(str(path), layers=("unspliced", "spliced"), capture=(0.5, 0.25), size_factors="sf", seed=0)
    r = run_batch(run, tmp_path / "o", FAST, plots=False, progress=False, log=lines.append).rows[0]
    assert any("efficiency node(s)" in x and "within" in x for x in lines), lines
    for k, v in zip(("k0", "k1", "v0", "beta"), truth):
        assert r[f"{k}_q05"] <= v <= r[f"{k}_q95"], k
    assert r["beta_q95"] / r["beta_q05"] < 4.0


def test_layers_in_memory_and_between_groups(protocol):
    """sa.tl.bursting(adata, layers=...) fills var; --groupby compares two groups' splicing-model bursting: a gene
    whose bursts are 4x larger in group B is called up in burst size, one unchanged is not called up or down."""
    import surrogate_abc as sa

    truth_a = TRUTH[:2]
    truth_b = truth_a * [[1, 1, 4, 1], [1, 1, 1, 1]]
    a, _, _ = _adata(protocol, truth_a, 800, seed=11)
    b, _, _ = _adata(protocol, truth_b, 800, seed=12)
    both = anndata.concat([a, b], index_unique="-")
    both.obs["group"] = pd.Categorical(["A"] * 800 + ["B"] * 800)
    table = sa.tl.bursting(a, layers=("unspliced", "spliced"), batch=FAST)
    assert "beta_median" in a.var.columns and list(table.index) == ["g0", "g1"]
    de = sa.tl.differential_bursting(both, "group", layers=("unspliced", "spliced"), batch=FAST)
    size = de[de["variable"] == "burst_size"].set_index("gene")
    assert size.loc["g0", "call"] == "up" and size.loc["g1", "call"] not in ("up", "down")
    assert abs(size.loc["g0", "log2fc_median"] - 2.0) < 0.5  # log2 4


@pytest.mark.slow
def test_smc_layers_runs_one_gene(tmp_path, protocol):
    a, _, _ = _adata(protocol, TRUTH[:1], 800, seed=7)
    path = tmp_path / "one.h5ad"
    a.write_h5ad(path)
    out = tmp_path / "smc"
    assert main(["infer", str(path), "--layers", "unspliced,spliced", "--method", "smc", "--out", str(out),
                 "--quiet", "--no-plots", "--population", "200", "--generations", "6", "--chains", "1",
                 "--check", "none"]) == 0
    df = pd.read_csv(out / "genes.csv")
    assert list(df["gene"]) == ["g0"] and "beta_median" in df.columns
    assert df["beta_q05"][0] <= TRUTH[0, 3] <= df["beta_q95"][0]
    uns = anndata.read_h5ad(out / "bursting.h5ad").uns["surrogate_abc"]
    assert "telegraph_splicing" in uns["emulator"]  # the model the genes ran with, not the one-layer default


# ------------------------------------------------------------------------------------------------- bad input


@pytest.fixture()
def small(tmp_path, protocol):
    a, _, _ = _adata(protocol, TRUTH[:2], 100, seed=9)
    path = tmp_path / "small.h5ad"
    a.write_h5ad(path)
    return path, a


def _fails(capsys, args, *words):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_bad_layers_input_stops_with_one_line(tmp_path, small, capsys):
    path, a = small
    out = str(tmp_path / "never")
    _fails(capsys, ["infer", str(path), "--layers", "unspliced,velocity", "--out", out], "no layer 'velocity'")
    with pytest.raises(SystemExit) as exc:  # argparse: usage, then one error line
        main(["infer", str(path), "--layers", "unspliced", "--out", out])
    assert exc.value.code == 2 and "two distinct layer names" in capsys.readouterr().err.strip().splitlines()[-1]
    _fails(capsys, ["infer", str(path), "--layers", "unspliced,spliced", "--layer", "spliced", "--out", out],
           "exclude each other")
    _fails(capsys, ["infer", str(path), "--layers", "unspliced,spliced", "--emulator", "telegraph_mrna",
                    "--out", out], "two species")
    _fails(capsys, ["infer", str(path), "--capture", "0.3,0.2", "--out", out], "one efficiency per layer")
    _fails(capsys, ["infer", str(path), "--layers", "unspliced,spliced", "--capture", "0.3,1.5", "--out", out],
           "(0, 1]")
    with pytest.raises(SystemExit) as exc:
        main(["infer", str(path), "--layers", "unspliced,spliced", "--capture", "0.3,0.2,0.1", "--out", out])
    assert exc.value.code == 2 and "one efficiency, or two" in capsys.readouterr().err.strip().splitlines()[-1]
    frac = a.copy()
    frac.layers["spliced"] = frac.layers["spliced"] * 0.5
    frac.write_h5ad(tmp_path / "frac.h5ad")
    _fails(capsys, ["infer", str(tmp_path / "frac.h5ad"), "--layers", "unspliced,spliced", "--out", out],
           "fractional", "gene")
    pd.DataFrame(np.ones((5, 2)), columns=["a", "b"]).to_csv(tmp_path / "t.csv", index=False)
    _fails(capsys, ["infer", str(tmp_path / "t.csv"), "--layers", "unspliced,spliced", "--out", out], "AnnData")
    _fails(capsys, ["infer", str(path), "--layers", "unspliced,spliced", "--method", "smc", "--out", out,
                    "--emulator", "telegraph_mrna"], "two species")
    assert not (tmp_path / "never").exists()


def test_layers_of_different_shapes_are_refused(tmp_path, small):
    import h5py

    path, a = small
    bad = tmp_path / "bad.h5ad"
    a.layers["spliced"] = np.asarray(a.layers["spliced"].todense())
    a.write_h5ad(bad)
    with h5py.File(bad, "r+") as f:  # a layer of fewer cells, as a hand-made file could hold
        data = f["layers/spliced"][...]
        del f["layers/spliced"]
        f.create_dataset("layers/spliced", data=data[:-3])
    with pytest.raises(DataFileError, match="differ in shape|rows|cells"):
        joint_gene_histograms(bad, ("unspliced", "spliced"), (np.arange(0.0, 41), np.arange(0.0, 41)))
