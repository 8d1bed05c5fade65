"""Tables as txburst users hold them: genes as rows (--layout genes-by-cells), float counts, missing allele calls
(--missing drop), and the one-line errors that point to those options."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from surrogate_abc.data.gene_histograms import gene_histograms, read_gene_cells
from surrogate_abc.data.table_format import TableFormat
from surrogate_abc.data.tables import read_count_table
from surrogate_abc.errors import DataFileError

EDGES = np.arange(0, 41, dtype=float)
ROWS = TableFormat("genes-by-cells")
DROP = TableFormat(missing="drop")
ROWS_DROP = TableFormat("genes-by-cells", "drop")


def _counts(seed: int = 0, cells: int = 30, genes: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(rng.uniform(0.5, 6, genes), size=(cells, genes)).astype(float)


def _write_rows(path: Path, x: np.ndarray, genes: list[str], sep: str = ",", corner: str = "",
                fmt: str = "{:.1f}") -> Path:
    """genes as rows, cells as columns, as pandas writes a DataFrame (index = genes): counts as 3.0, NaN empty."""
    cells = [f"cell{j}" for j in range(x.shape[0])]
    lines = [sep.join([corner] + cells)]
    for i, g in enumerate(genes):
        lines.append(sep.join([g] + ["" if np.isnan(v) else fmt.format(v) for v in x[:, i]]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_cells(path: Path, x: np.ndarray, genes: list[str], sep: str = ",") -> Path:
    lines = [sep.join(genes)] + [sep.join("nan" if np.isnan(v) else str(int(v)) for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")
    return path


GENES = ["Actb", "Gapdh", "Myc", "Sox2"]


@pytest.mark.parametrize("sep,suffix", [(",", ".csv"), ("\t", ".tsv")])
def test_genes_by_cells_matches_the_transposed_table(tmp_path, sep, suffix):
    x = _counts()
    rows = _write_rows(tmp_path / f"rows{suffix}", x, GENES, sep)
    cols = _write_cells(tmp_path / f"cols{suffix}", x, GENES, sep)
    a, b = gene_histograms(rows, EDGES, fmt=ROWS, chunk=3), gene_histograms(cols, EDGES)
    assert a.genes == b.genes == tuple(GENES) and a.n_cells == b.n_cells == 30
    np.testing.assert_array_equal(a.hist, b.hist)
    np.testing.assert_allclose(a.total, b.total)
    np.testing.assert_array_equal(a.max, b.max)
    assert a.missing is None
    sel = gene_histograms(rows, EDGES, genes=["Myc", "Actb"], fmt=ROWS)
    np.testing.assert_array_equal(sel.hist, b.hist[[2, 0]])
    t = read_count_table(rows, fmt=ROWS)
    assert t.genes == tuple(GENES) and t.counts.dtype == np.int64 and t.missing is None
    np.testing.assert_array_equal(t.counts, x.astype(np.int64))


def test_default_layout_on_genes_as_rows_says_use_the_layout(tmp_path):
    x = _counts(1)
    for corner in ("", "gene"):  # pandas' empty corner, or a named gene column
        path = _write_rows(tmp_path / f"rows{corner}.csv", x, GENES, corner=corner)
        for read in (lambda: gene_histograms(path, EDGES), lambda: read_count_table(path)):
            with pytest.raises(DataFileError, match="--layout genes-by-cells") as ei:
                read()
            msg = str(ei.value)
            assert "\n" not in msg and str(path) in msg and ".py" not in msg
    cols = _write_cells(tmp_path / "cols.csv", x, GENES)
    with pytest.raises(DataFileError, match="column 1 holds numbers .* omit --layout genes-by-cells"):
        gene_histograms(cols, EDGES, fmt=ROWS)


@pytest.mark.parametrize("fmt", [None, ROWS])
def test_integral_floats_are_counts_fractions_are_refused(tmp_path, fmt):
    x = _counts(2)
    write = _write_rows if fmt else (lambda p, v, g: _write_cells(p, v, g))
    good = write(tmp_path / "good.csv", x, GENES)
    if fmt is None:  # cells-by-genes written as 3.0
        good.write_text("\n".join([",".join(GENES)] + [",".join(f"{v:.1f}" for v in row) for row in x]) + "\n")
    np.testing.assert_array_equal(read_count_table(good, fmt=fmt).counts, x.astype(np.int64))
    bad = x.copy()
    bad[5, 1] = 3.5
    path = _write_rows(tmp_path / "bad.csv", bad, GENES) if fmt else tmp_path / "bad.csv"
    if fmt is None:
        path.write_text("\n".join([",".join(GENES)] + [",".join(f"{v:g}" for v in row) for row in bad]) + "\n")
    with pytest.raises(DataFileError, match=r"gene 'Gapdh' has fractional values \(e\.g\. 3\.5 .*normalised"):
        gene_histograms(path, EDGES, fmt=fmt)


def test_missing_values_are_errors_naming_column_row_and_the_fix(tmp_path):
    x = _counts(3)
    x[7, 2] = np.nan  # Myc in cell7
    rows = _write_rows(tmp_path / "rows.csv", x, GENES)  # empty field
    with pytest.raises(DataFileError, match=r"column 'cell7', row 4 \(gene 'Myc'\) is missing .*--missing drop"):
        gene_histograms(rows, EDGES, fmt=ROWS)
    cols = _write_cells(tmp_path / "cols.csv", x, GENES)  # NaN
    for read in (lambda: gene_histograms(cols, EDGES), lambda: read_count_table(cols)):
        with pytest.raises(DataFileError, match=r"column 'Myc', row 9 is missing .*--missing drop") as ei:
            read()
        assert "\n" not in str(ei.value)
    na = tmp_path / "na.tsv"
    na.write_text("A\tB\n1\tNA\n2\t3\n")
    with pytest.raises(DataFileError, match=r"column 'B', row 2 is missing"):
        gene_histograms(na, EDGES)
    with pytest.raises(DataFileError, match="applies to CSV/TSV tables"):
        import anndata

        ad = anndata.AnnData(np.ones((3, 2)))
        gene_histograms(ad, EDGES, fmt=DROP)


def test_missing_drop_keeps_each_genes_own_cells(tmp_path):
    x = _counts(4, cells=40)
    rng = np.random.default_rng(5)
    x[rng.random(x.shape) < 0.2] = np.nan
    used = (~np.isnan(x)).sum(axis=0)
    rows = _write_rows(tmp_path / "rows.csv", x, GENES)
    cols = _write_cells(tmp_path / "cols.csv", x, GENES)
    for h in (gene_histograms(rows, EDGES, fmt=ROWS_DROP, chunk=2), gene_histograms(cols, EDGES, fmt=DROP, chunk=7)):
        np.testing.assert_array_equal(h.cells_used(), used)
        np.testing.assert_array_equal(h.hist.sum(axis=1), used)
        for j in range(len(GENES)):
            kept = x[:, j][~np.isnan(x[:, j])].astype(int)
            np.testing.assert_array_equal(h.hist[j, :-1], np.bincount(kept, minlength=40)[:40])
            assert h.mean()[j] == pytest.approx(kept.mean())
            assert h.fano()[j] == pytest.approx(kept.var(ddof=1) / kept.mean())
    for got, j in zip(read_gene_cells(rows, ["Sox2", "Actb"], fmt=ROWS_DROP), (3, 0)):
        np.testing.assert_array_equal(got, x[:, j][~np.isnan(x[:, j])].astype(int))
    t = read_count_table(cols, fmt=DROP)
    assert len(t.column("Myc")) == used[2]
