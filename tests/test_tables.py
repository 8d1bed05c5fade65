"""Count tables of real data (CSV/TSV, AnnData): reading, gene selection, and one-line errors for bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from surrogate_abc.data.tables import is_count_table, read_count_table
from surrogate_abc.errors import DataFileError


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_and_tsv_read_with_gene_selection(tmp_path):
    p = _csv(tmp_path / "c.csv", "GAPDH,ACTB,MYC\n3,10,0\n5,12,1\n0,9,2\n")
    t = read_count_table(p)
    assert t.genes == ("GAPDH", "ACTB", "MYC") and t.counts.dtype == np.int64
    np.testing.assert_array_equal(t.column("MYC"), [0, 1, 2])
    sel = read_count_table(p, genes=["MYC", "GAPDH"])
    assert sel.genes == ("MYC", "GAPDH") and sel.counts.shape == (3, 2)
    q = _csv(tmp_path / "c.tsv", "A\tB\n1\t2\n3\t4\n")
    np.testing.assert_array_equal(read_count_table(q).counts, [[1, 2], [3, 4]])
    assert is_count_table(p) and is_count_table(q) and not is_count_table(tmp_path / "x.h5")


BAD = {
    "empty": ("", "empty"),
    "header only": ("A,B\n", "no cells"),
    "non-numeric": ("A,B\n1,x\n", "'B', row 2: 'x' is not a number"),
    "negative": ("A,B\n1,-2\n", "'B' has negative counts"),
    "fractional": ("A,B\n1,0.25\n2,1.5\n", "'B' has fractional values .* normalised matrix"),
    "nan": ("A,B\n1,nan\n", "column 'B', row 2 is missing .* --missing drop"),
    "all zero": ("A,B\n1,0\n2,0\n", "'B' is zero in every cell"),
    "ragged": ("A,B\n1,2,3\n", "row 2 has 3 values"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tables_name_file_column_and_problem(tmp_path, case):
    text, message = BAD[case]
    p = _csv(tmp_path / "bad.csv", text)
    with pytest.raises(DataFileError, match=message) as ei:
        read_count_table(p)
    assert "\n" not in str(ei.value) and str(p) in str(ei.value)


def test_missing_gene_is_named(tmp_path):
    p = _csv(tmp_path / "c.csv", "A,B\n1,2\n")
    with pytest.raises(DataFileError, match="gene 'C' named in --genes is not in the header"):
        read_count_table(p, genes=["A", "C"])


def test_anndata_dense_sparse_and_layer(tmp_path):
    anndata = pytest.importorskip("anndata")
    import scipy.sparse as sp

    x = np.array([[1, 0, 3], [0, 2, 5], [4, 1, 0]], dtype=np.float32)
    ad = anndata.AnnData(X=sp.csr_matrix(x / x.sum(1, keepdims=True)))  # X normalised, raw counts in a layer
    ad.var_names = ["g1", "g2", "g3"]
    ad.layers["counts"] = sp.csr_matrix(x)
    path = tmp_path / "d.h5ad"
    ad.write_h5ad(path)
    t = read_count_table(path, layer="counts")
    assert t.genes == ("g1", "g2", "g3")
    np.testing.assert_array_equal(t.counts, x.astype(np.int64))
    with pytest.raises(DataFileError, match="fractional values .* normalised matrix"):
        read_count_table(path)
    with pytest.raises(DataFileError, match="no layer 'raw'"):
        read_count_table(path, layer="raw")
    dense = anndata.AnnData(X=x)
    dense.var_names = ["a", "b", "c"]
    dense.write_h5ad(tmp_path / "dense.h5ad")
    assert read_count_table(tmp_path / "dense.h5ad", genes=["c"]).counts[:, 0].tolist() == [3, 5, 0]
