"""Per-gene histograms of a whole count table in one streaming pass: equal to a dense reference for CSR, CSC and
dense AnnData, layers and CSV/TSV, whatever the block size; gene selection; summaries; one-line errors."""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from surrogate_abc.data.gene_histograms import GeneHistograms, gene_histograms, read_gene_counts
from surrogate_abc.errors import DataFileError

EDGES = np.array([0.0, 1, 2, 3, 5, 8, 12, 20])  # uneven bins; >= 20 goes to the overflow column


def _counts(rng: np.random.Generator, cells: int = 40, genes: int = 7, density: float = 0.3) -> np.ndarray:
    """Integer counts (cells, genes) with many zeros, a wide range (some past EDGES[-1]) and an all-zero gene."""
    x = rng.negative_binomial(1, 0.1, size=(cells, genes)) * (rng.random((cells, genes)) < density)
    x[0, 0] = 20  # exactly at the last edge: overflow
    x[:, -1] = 0
    return x.astype(np.int64)


def _names(n: int) -> list[str]:
    return [f"g{j}" for j in range(n)]


def _reference(x: np.ndarray, edges: np.ndarray = EDGES) -> np.ndarray:
    """np.histogram per column on the values below edges[-1] (np.histogram closes its last bin) + overflow."""
    return np.array([np.r_[np.histogram(c[c < edges[-1]], bins=edges)[0], (c >= edges[-1]).sum()] for c in x.T])


def _h5ad(path: Path, x: np.ndarray, names: list[str], fmt: str = "csr", layers: dict | None = None) -> Path:
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    as_fmt = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.asarray}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-unique names, implicit conversions
        ad = anndata.AnnData(X=as_fmt[fmt](x), var=pd.DataFrame(index=names))
        for name, (m, f) in (layers or {}).items():
            ad.layers[name] = as_fmt[f](m)
        ad.write_h5ad(path)
    return path


def _table(path: Path, x: np.ndarray, names: list[str], sep: str = ",") -> Path:
    rows = [sep.join(names)] + [sep.join(str(v) for v in r) for r in x]
    path.write_text("\n".join(rows) + "\n")
    return path


def _assert_matches(h: GeneHistograms, x: np.ndarray, names: list[str]) -> None:
    assert h.genes == tuple(names) and h.n_cells == x.shape[0]
    assert h.hist.dtype == np.int64 and h.hist.shape == (x.shape[1], len(EDGES))
    np.testing.assert_array_equal(h.hist, _reference(x))
    np.testing.assert_array_equal(h.nonzero, (x > 0).sum(0))
    np.testing.assert_array_equal(h.total, x.sum(0))
    np.testing.assert_array_equal(h.sumsq, (x.astype(float) ** 2).sum(0))
    np.testing.assert_array_equal(h.max, x.max(0))
    assert h.max.dtype == np.int64 and h.nonzero.dtype == np.int64 and h.total.dtype == np.float64


def _same(a: GeneHistograms, b: GeneHistograms) -> None:
    assert a.genes == b.genes and a.n_cells == b.n_cells
    for f in ("hist", "nonzero", "total", "sumsq", "max"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense"])
def test_anndata_matches_dense_reference_for_any_block_size(tmp_path, fmt):
    x = _counts(np.random.default_rng(1))
    names = _names(x.shape[1])
    path = _h5ad(tmp_path / "x.h5ad", x, names, fmt)
    calls = []
    h = gene_histograms(path, EDGES, chunk=3, progress=lambda done, total: calls.append((done, total)))
    _assert_matches(h, x, names)
    _same(h, gene_histograms(path, EDGES, chunk=1000))
    _same(h, gene_histograms(path, EDGES, chunk=1))
    total = x.shape[1] if fmt == "csc" else x.shape[0]  # CSC is read in blocks of genes
    assert calls[-1] == (total, total) and len(calls) == -(-total // 3)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense", "csv"])
def test_blocks_cut_by_a_value_budget_give_the_same_result(tmp_path, monkeypatch, fmt):
    """Blocks are also cut so as to hold at most _BLOCK_VALUES values (a row longer than that is one block)."""
    import surrogate_abc.data.count_scan as gh

    x = _counts(np.random.default_rng(8), cells=30, genes=8, density=0.6)
    names = _names(8)
    path = _table(tmp_path / "x.csv", x, names) if fmt == "csv" else _h5ad(tmp_path / "x.h5ad", x, names, fmt)
    whole = gene_histograms(path, EDGES)
    monkeypatch.setattr(gh, "_BLOCK_VALUES", 3)
    monkeypatch.setattr(gh, "_TEXT_FIELDS", 3)
    calls = []
    _same(whole, gene_histograms(path, EDGES, progress=lambda done, total: calls.append(done)))
    assert len(calls) >= 8 and calls[-1] == (8 if fmt == "csc" else 30)


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense"])
def test_gene_subset_in_the_order_asked(tmp_path, fmt):
    x = _counts(np.random.default_rng(2), genes=9)
    names = _names(9)
    path = _h5ad(tmp_path / "x.h5ad", x, names, fmt)
    want = ["g7", "g2", "g8", "g3"]
    cols = [names.index(g) for g in want]
    for chunk in (2, 1000):
        _assert_matches(gene_histograms(path, EDGES, genes=want, chunk=chunk), x[:, cols], want)
    np.testing.assert_array_equal(read_gene_counts(path, ["g8", "g0"]), x[:, [8, 0]])


def test_layer_is_read_and_a_normalised_x_is_refused(tmp_path):
    x = _counts(np.random.default_rng(3), genes=5)
    x[:, -1] = 1  # every row has a count, so the normalised X is defined
    norm = x / x.sum(1, keepdims=True)
    names = _names(5)
    path = _h5ad(tmp_path / "x.h5ad", norm, names, "csr", layers={"counts": (x, "csc"), "dense": (x, "dense")})
    _assert_matches(gene_histograms(path, EDGES, layer="counts"), x, names)
    _assert_matches(gene_histograms(path, EDGES, layer="dense", chunk=4), x, names)
    with pytest.raises(DataFileError, match=r"gene 'g\d' has fractional values .* normalised matrix.*--layer counts"):
        gene_histograms(path, EDGES)
    with pytest.raises(DataFileError, match=r"no layer 'raw' \(layers: counts, dense\)"):
        gene_histograms(path, EDGES, layer="raw")


@pytest.mark.parametrize("sep,suffix", [(",", ".csv"), ("\t", ".tsv")])
def test_csv_and_tsv_match_dense_reference(tmp_path, sep, suffix):
    x = _counts(np.random.default_rng(4), cells=25)
    names = _names(x.shape[1])
    path = _table(tmp_path / f"t{suffix}", x, names, sep)
    calls = []
    h = gene_histograms(path, EDGES, chunk=4, progress=lambda done, total: calls.append((done, total)))
    _assert_matches(h, x, names)
    _same(h, gene_histograms(path, EDGES, chunk=1000))
    assert calls[-1] == (25, 25) and all(d < t for d, t in calls[:-1])
    _assert_matches(gene_histograms(path, EDGES, genes=["g5", "g1"], chunk=3), x[:, [5, 1]], ["g5", "g1"])
    np.testing.assert_array_equal(read_gene_counts(path, ["g2", "g6"]), x[:, [2, 6]])


def test_summaries_equal_numpy_and_select(tmp_path):
    x = _counts(np.random.default_rng(5), cells=30)
    names = _names(x.shape[1])
    h = gene_histograms(_h5ad(tmp_path / "x.h5ad", x, names), EDGES)
    mean = x.mean(0)
    np.testing.assert_allclose(h.mean(), mean)
    fano = h.fano()
    ok = mean > 0
    np.testing.assert_allclose(fano[ok], x.var(0, ddof=1)[ok] / mean[ok], rtol=1e-12)
    assert np.isnan(fano[~ok]).all() and (~ok).any()  # the all-zero gene
    sub = h.select([3, 0])
    assert sub.genes == ("g3", "g0")
    np.testing.assert_array_equal(sub.hist, h.hist[[3, 0]])
    mask = h.nonzero > 0
    assert h.select(mask).genes == tuple(g for g, m in zip(names, mask) if m)
    np.testing.assert_array_equal(h.select(mask).max, h.max[mask])
    one = gene_histograms(_table(tmp_path / "one.csv", x[:1], names), EDGES)
    assert one.n_cells == 1 and np.isnan(one.fano()).all()


def test_all_zero_genes_are_allowed(tmp_path):
    x = np.zeros((6, 3), np.int64)
    x[2, 1] = 4
    for path in (_h5ad(tmp_path / "z.h5ad", x, ["a", "b", "c"]), _table(tmp_path / "z.csv", x, ["a", "b", "c"])):
        h = gene_histograms(path, EDGES)
        np.testing.assert_array_equal(h.hist[:, 0], [6, 5, 6])
        np.testing.assert_array_equal(h.max, [0, 4, 0])
        assert np.isnan(h.fano()[[0, 2]]).all()


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense"])
def test_read_gene_counts_equals_dense_columns(tmp_path, fmt):
    x = _counts(np.random.default_rng(6))
    path = _h5ad(tmp_path / "x.h5ad", x, _names(x.shape[1]), fmt)
    got = read_gene_counts(path, ["g4", "g1", "g6"])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, x[:, [4, 1, 6]])


def test_non_canonical_sparse_entries_add_up(tmp_path):
    """A hand-written CSR with unsorted indices, an entry stored twice and an explicit zero, like scipy reads it."""
    data, indices, indptr = [3, 1, 2, 0, 5, 7], [2, 0, 2, 1, 1, 0], [0, 3, 3, 6]
    m = sp.csr_matrix((np.array(data, np.float32), indices, indptr), shape=(3, 3))
    path = tmp_path / "raw.h5ad"
    with h5py.File(path, "w") as f:
        g = f.create_group("X")
        g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (3, 3)})
        for k, v in (("data", data), ("indices", indices), ("indptr", indptr)):
            g[k] = np.array(v, np.float32 if k == "data" else np.int32)
        var = f.create_group("var")
        var.attrs["_index"] = "_index"
        var["_index"] = np.array([b"a", b"b", b"c"])
    x = m.toarray().astype(np.int64)  # scipy adds the duplicates: cell 0, gene 2 has 5
    h = gene_histograms(path, EDGES, chunk=2)
    _assert_matches(h, x, ["a", "b", "c"])
    np.testing.assert_array_equal(read_gene_counts(path, ["c", "a"]), x[:, [2, 0]])


def test_legacy_h5sparse_layout_and_compound_var(tmp_path):
    """Files of old anndata versions: `h5sparse_format` attributes and `var` as a compound dataset."""
    x = _counts(np.random.default_rng(7), cells=9, genes=4)
    m = sp.csc_matrix(x)
    path = tmp_path / "old.h5ad"
    with h5py.File(path, "w") as f:
        g = f.create_group("X")
        g.attrs.update({"h5sparse_format": b"csc", "h5sparse_shape": x.shape})
        g["data"], g["indices"], g["indptr"] = m.data.astype(np.float32), m.indices, m.indptr
        f["var"] = np.array([(n.encode(),) for n in _names(4)], dtype=[("index", "S8")])
    _assert_matches(gene_histograms(path, EDGES, chunk=2), x, _names(4))
    np.testing.assert_array_equal(read_gene_counts(path, ["g3"]), x[:, [3]])


# ---------------------------------------------------------------------------------------------------- errors


def _bad_h5ad(tmp_path: Path, fmt: str, value: float) -> Path:
    x = np.zeros((5, 3))
    x[1, 0] = 2.0
    x[3, 1] = value
    return _h5ad(tmp_path / "bad.h5ad", x, ["Actb", "Gapdh", "Myc"], fmt)


BAD_VALUES = {
    "negative": (-2.0, r"gene 'Gapdh' has negative counts \(e\.g\. -2 in cell 4\); raw integer counts"),
    "nan": (np.nan, r"gene 'Gapdh' has a missing value \(NaN\) in cell 4; raw integer counts"),
    "inf": (np.inf, r"gene 'Gapdh' has an infinite value \(inf\) in cell 4; raw integer counts"),
    "fractional": (0.25, r"gene 'Gapdh' has fractional values \(e\.g\. 0\.25 in cell 4\): this looks like a "
                         r"normalised matrix; raw integer counts .*--layer counts"),
}


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense"])
@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_name_gene_value_and_fix(tmp_path, fmt, case):
    value, message = BAD_VALUES[case]
    path = _bad_h5ad(tmp_path, fmt, value)
    for read in (lambda: gene_histograms(path, EDGES, chunk=2), lambda: read_gene_counts(path, ["Gapdh"])):
        with pytest.raises(DataFileError, match=message) as ei:
            read()
        assert "\n" not in str(ei.value) and str(path) in str(ei.value) and ".py" not in str(ei.value)
    gene_histograms(path, EDGES, genes=["Myc", "Actb"])  # the bad gene is not read


BAD_TABLES = {
    "empty": ("", r"the file is empty"),
    "header only": ("A,B\n", r"header but no cells"),
    "non-numeric": ("A,B\n1,2\n1,x\n", r"column 'B', row 3: 'x' is not a number"),
    "empty cell": ("A,B\n1,\n", r"column 'B', row 2 is missing \(an empty field or NaN\).*--missing drop"),
    "negative": ("A,B\n1,-2\n", r"gene 'B' has negative counts \(e\.g\. -2 in row 2\)"),
    "fractional": ("A,B\n1,0\n2,1.5\n", r"gene 'B' has fractional values \(e\.g\. 1\.5 in row 3\).*normalised"),
    "nan": ("A,B\n1,nan\n", r"column 'B', row 2 is missing \(an empty field or NaN\).*--missing drop"),
    "inf": ("A,B\ninf,1\n", r"gene 'A' has an infinite value"),
    "ragged": ("A,B\n1,2,3\n", r"row 2 has 3 values but the header names 2 columns"),
    "unnamed": ("A,,C\n1,2,3\n", r"column 2 of the header has no name"),
    "duplicates": ("A,B,A,C,B\n1,2,3,4,5\n", r"genes 'A', 'B' appear more than once in the header"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_tables_name_file_column_and_problem(tmp_path, case):
    text, message = BAD_TABLES[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataFileError, match=message) as ei:
        gene_histograms(path, EDGES)
    assert "\n" not in str(ei.value) and str(path) in str(ei.value)


def test_bad_files_and_arguments(tmp_path):
    x = np.arange(6).reshape(3, 2)
    h5 = _h5ad(tmp_path / "x.h5ad", x, ["Actb", "Gapdh"])
    table = _table(tmp_path / "x.csv", x, ["Actb", "Gapdh"])
    cases = [
        (lambda: gene_histograms(tmp_path / "none.h5ad", EDGES), "file not found"),
        (lambda: gene_histograms(_table(tmp_path / "x.xlsx", x, ["a", "b"]), EDGES), "unknown table type '.xlsx'"),
        (lambda: gene_histograms(table, EDGES, layer="counts"), "--layer applies to AnnData"),
        (lambda: gene_histograms(h5, EDGES, layer="counts"), r"no layer 'counts' \(layers: none\)"),
        (lambda: gene_histograms(h5, EDGES, genes=["Gapdh", "Myc"]), "gene 'Myc' named in --genes is not in"),
        (lambda: gene_histograms(table, EDGES, genes=["Myc", "Sox2"]), "genes 'Myc', 'Sox2' named in --genes"),
        (lambda: read_gene_counts(h5, ["Gapdh", "Gapdh"]), "gene 'Gapdh' named more than once in --genes"),
        (lambda: gene_histograms(_table(tmp_path / "t.h5ad", x, ["a", "b"]), EDGES), "not a readable AnnData"),
    ]
    for call, message in cases:
        with pytest.raises(DataFileError, match=message) as ei:
            call()
        assert "\n" not in str(ei.value) and str(tmp_path) in str(ei.value), message
    with pytest.raises(ValueError, match="edges"):
        gene_histograms(h5, [0, 2, 1])


def test_empty_matrix_and_duplicate_var_names(tmp_path):
    empty = _h5ad(tmp_path / "e.h5ad", np.zeros((0, 2)), ["a", "b"])
    with pytest.raises(DataFileError, match="count matrix X is empty"):
        gene_histograms(empty, EDGES)
    x = np.ones((3, 5), np.int64)
    dup = _h5ad(tmp_path / "d.h5ad", x, ["Actb", "Gapdh", "Actb", "Myc", "Gapdh"])
    with pytest.raises(DataFileError, match=r"genes 'Actb', 'Gapdh' appear more than once in the var_names; make the "
                                            r"names unique \(e\.g\. adata\.var_names_make_unique\(\)\)"):
        gene_histograms(dup, EDGES)
    with pytest.raises(DataFileError, match=r"gene 'Gapdh' appears more than once"):
        gene_histograms(dup, EDGES, genes=["Myc", "Gapdh"])
    assert gene_histograms(dup, EDGES, genes=["Myc"]).hist[0, 1] == 3  # unambiguous names can still be read


# --------------------------------------------------------------------------------------------------- property


@settings(max_examples=25, deadline=None)
@given(cells=st.integers(1, 12), genes=st.integers(1, 6), density=st.floats(0, 1), seed=st.integers(0, 2**32 - 1),
       fmt=st.sampled_from(["csr", "csc"]), chunk=st.integers(1, 5))
def test_random_sparse_histograms_sum_to_cells_and_match_reference(cells, genes, density, seed, fmt, chunk):
    rng = np.random.default_rng(seed)
    x = (rng.geometric(0.08, size=(cells, genes)) * (rng.random((cells, genes)) < density)).astype(np.int64)
    names = _names(genes)
    with tempfile.TemporaryDirectory() as tmp:
        h = gene_histograms(_h5ad(Path(tmp) / "x.h5ad", x, names, fmt), EDGES, chunk=chunk)
    assert (h.hist.sum(1) == cells).all()
    _assert_matches(h, x, names)
