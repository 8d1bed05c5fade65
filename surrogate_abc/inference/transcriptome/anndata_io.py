"""Results of a count-table run in the AnnData, the scverse convention (as scvelo writes its fits to `var`).

* `var` columns: every per-gene column of genes.csv (`burst_frequency_median`, `_q05`, `_q95`, the same for
  `burst_size` and every parameter, `ess`, `flags`, `ppc_p`, `method`, ...), read back from the genes.csv just
  written so that both agree to the digit; genes not inferred get NaN (text columns: "") and the column
  `skipped` says why ("all zero", "not selected", ...; "" for inferred genes).
* `uns["surrogate_abc"]`: the run's settings and versions (values anndata writes: str, numbers, dicts of them;
  anything else JSON-encoded), and `var_columns` (JSON), the columns written: a later run drops them first, so
  no column of an earlier run with other parameters is left behind.

`write_bursting_h5ad` writes OUT/bursting.h5ad for an .h5ad input: the input file copied (or, without the matrix,
every element but X, layers and raw copied), then its `var` and `uns["surrogate_abc"]` rewritten with anndata's
element writer, so the matrix is never read into memory. `annotate` fills an in-memory AnnData in place
(`surrogate_abc.tl.bursting`). `batch_results` / `smc_results` are the calls at the end of the two methods.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ...data.tables import ANNDATA_SUFFIXES
from ...errors import UserError
from ...report import warn

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

    from ...data.gene_histograms import GeneHistograms
    from .refine import BatchSettings
    from .run import Prepared, TableRun

UNS_KEY = "surrogate_abc"
OUT_NAME = "bursting.h5ad"
SKIPPED = "skipped"
TEXT_COLUMNS = ("gene", "method", "flags", "model")  # text in genes.csv whatever their values look like
INT_COLUMNS = ("cells", "evaluations")  # whole numbers: nullable Int64 (<NA> for genes not inferred)
NOT_SELECTED = "not selected"
MATRIX_KEYS = ("X", "layers", "raw")  # left out of bursting.h5ad with --no-matrix


# ------------------------------------------------------------------------------------------------ the table


def read_results(csv_path: Path) -> pd.DataFrame:
    """genes.csv as a DataFrame indexed by gene: numeric columns as float64 (INT_COLUMNS as Int64), text columns
    as str ("" where genes.csv is empty), the values exactly those of the file."""
    import pandas as pd

    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    out = pd.DataFrame(index=pd.Index(raw["gene"].astype(str), name="gene"))
    for col in raw.columns:
        if col == "gene":
            continue
        text = raw[col].to_numpy(dtype=object)
        if col not in TEXT_COLUMNS:
            num = pd.to_numeric(pd.Series(np.where(text == "", np.nan, text)), errors="coerce").to_numpy(float)
            if not (np.isnan(num) & (text != "") & ~np.isin(text, ("nan", "NaN"))).any():
                out[col] = pd.array(num, dtype="Int64") if col in INT_COLUMNS and _whole(num) else num
                continue
        out[col] = text.astype(str)
    return out


def _whole(x: np.ndarray) -> bool:
    finite = x[np.isfinite(x)]
    return bool(np.all(finite == np.round(finite)))


def var_columns(var: pd.DataFrame, table: pd.DataFrame, skipped: Mapping[str, str],
                previous: Sequence[str] = ()) -> pd.DataFrame:
    """`var` with the results of `table` (indexed by gene) as columns: the columns of an earlier run (`previous`)
    dropped, genes not in `table` NaN ("" for text) with their reason in `skipped` (else "not selected")."""
    import pandas as pd

    kept = var.drop(columns=[c for c in {*previous, *table.columns, SKIPPED} if c in var.columns])
    names = pd.Index([str(g) for g in var.index])
    cols: dict[str, Any] = {}
    for col in table.columns:
        values = table[col].reindex(names)  # by name: var_names may repeat names that were not read
        if pd.api.types.is_numeric_dtype(values.dtype):
            cols[col] = values.array if isinstance(values.dtype, pd.Int64Dtype) else values.to_numpy(float)
        else:
            cols[col] = values.fillna("").to_numpy(dtype=object).astype(str).astype(object)
    inferred = names.isin(table.index)
    cols[SKIPPED] = np.array(["" if ok else str(skipped.get(g, NOT_SELECTED)) for g, ok in zip(names, inferred)],
                             dtype=object)
    added = pd.DataFrame(cols)  # positional: var's index may hold duplicates
    out = pd.concat([kept.reset_index(drop=True), added], axis=1)
    out.index = var.index
    return out


def annotate(adata: AnnData, table: pd.DataFrame, skipped: Mapping[str, str], uns: Mapping[str, Any]) -> None:
    """Fill adata.var (in place) with the results and adata.uns["surrogate_abc"] with `uns`."""
    previous = _previous_columns(adata.uns.get(UNS_KEY))
    adata.var = var_columns(adata.var, table, skipped, previous)
    adata.uns[UNS_KEY] = dict(uns, var_columns=json.dumps([*table.columns, SKIPPED]))


def _previous_columns(uns: Any) -> list[str]:
    try:
        cols = json.loads(uns["var_columns"]) if isinstance(uns, Mapping) else []
    except (KeyError, TypeError, ValueError):
        return []
    return [str(c) for c in cols] if isinstance(cols, list) else []


# -------------------------------------------------------------------------------------------------- uns


def writable(value: Any) -> Any:
    """`value` as anndata writes it in uns: str, bool, int, float and dicts of them as they are (numpy scalars as
    Python ones); anything else (None, lists, tuples, ...) JSON-encoded."""
    if isinstance(value, Mapping):
        return {str(k): writable(v) for k, v in value.items()}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value
    return json.dumps(_plain(value), default=str)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def versions() -> dict[str, str]:
    """Versions of Python, surrogate_abc and the libraries that made the numbers (torch and pyabc when loaded)."""
    from importlib import metadata

    from ... import __version__

    out = {"surrogate_abc": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "anndata", "torch", "pyabc"):
        if name in ("torch", "pyabc") and name not in sys.modules:
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_uns(method: str, emulator: str, sha256: str, command: str, options: Mapping[str, Any], settings: Any,
            n_inferred: int, n_skipped: int) -> dict[str, Any]:
    """uns["surrogate_abc"]: how the results were made (`emulator`: the model used, after resolving the option)."""
    return writable({"method": method, "versions": versions(), **options, "emulator": emulator,
                     "emulator_sha256": sha256, "command": command, "settings": _plain(settings),
                     "genes_inferred": n_inferred, "genes_skipped": n_skipped,
                     "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def table_options(run: TableRun) -> dict[str, Any]:
    """The TableRun's fields (what changes results; the in-memory AnnData itself left out) for uns; the emulator
    option as given is `emulator_option` (None: the default)."""
    rename = {"path": "input", "emulator": "emulator_option"}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(run):
        if f.name not in ("adata", "cells", "cell_size_factors", "layout", "missing"):  # data; a CSV's options
            out[rename.get(f.name, f.name)] = _plain(getattr(run, f.name))
    if run.adata is None:
        out["input"] = str(Path(run.path).resolve())
    return out


def input_stamp(run: TableRun, data: GeneHistograms) -> dict[str, Any]:
    """What identifies the input in a batch run's manifest: a file's resolved path, size and mtime; an in-memory
    AnnData's label, cells and a SHA-256 of the histograms and sums read from it."""
    if run.adata is None:
        st = os.stat(run.path)
        return {"input": str(Path(run.path).resolve()), "input_size": st.st_size, "input_mtime": int(st.st_mtime)}
    h = hashlib.sha256()
    for a in (data.hist, data.nonzero, data.total, data.sumsq, data.max):
        h.update(np.ascontiguousarray(a).tobytes())
    return {"input": str(run.path), "input_size": int(data.n_cells), "input_mtime": 0, "input_sha256": h.hexdigest()}


# ----------------------------------------------------------------------------------------- bursting.h5ad


def is_h5ad(path: object) -> bool:
    return isinstance(path, (str, Path)) and Path(path).suffix.lower() in ANNDATA_SUFFIXES


def write_bursting_h5ad(source: Path, path: Path, table: pd.DataFrame, skipped: Mapping[str, str],
                        uns: Mapping[str, Any], matrix: bool = True) -> Path | None:
    """OUT/bursting.h5ad: the AnnData at `source` (without X, layers and raw unless `matrix`) with the results in
    `var` and `uns["surrogate_abc"]`; written to a temporary name and renamed. None (and a note) without anndata."""
    try:
        import anndata  # noqa: F401
    except ImportError:
        warn(f"{path.name} not written: it needs the anndata package (pip install anndata); genes.csv has the "
             "same per-gene results")
        return None
    import h5py

    tmp = path.with_name(path.name + ".partial")
    try:
        if _modern(source):
            _copy(source, tmp, matrix)
            with h5py.File(tmp, "r+") as f:
                _rewrite(f, table, skipped, uns)
        else:  # an h5ad of anndata < 0.7: read whole, written anew
            _rewrite_whole(source, tmp, table, skipped, uns, matrix)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({exc}); check the space and permissions of --out") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _modern(source: Path) -> bool:
    import h5py

    with h5py.File(source, "r") as f:
        return f.attrs.get("encoding-type") in ("anndata", b"anndata") and isinstance(f.get("var"), h5py.Group)


def _copy(source: Path, dest: Path, matrix: bool) -> None:
    import h5py

    if matrix:
        shutil.copyfile(source, dest)
        return
    with h5py.File(source, "r") as src, h5py.File(dest, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for key in src:
            if key not in MATRIX_KEYS:
                src.copy(src[key], dst, name=key)


def _elem_io() -> tuple[Callable[..., Any], Callable[..., Any]]:
    try:
        from anndata.io import read_elem, write_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import read_elem, write_elem
    return read_elem, write_elem


def _rewrite(f: Any, table: pd.DataFrame, skipped: Mapping[str, str], uns: Mapping[str, Any]) -> None:
    """Replace var and uns["surrogate_abc"] of an open h5ad (h5py File, r+)."""
    read_elem, write_elem = _elem_io()
    old_uns = read_elem(f["uns"][UNS_KEY]) if "uns" in f and UNS_KEY in f["uns"] else None
    var = var_columns(read_elem(f["var"]), table, skipped, _previous_columns(old_uns))
    del f["var"]
    write_elem(f, "var", var)
    if "uns" not in f:
        write_elem(f, "uns", {})
    if UNS_KEY in f["uns"]:
        del f["uns"][UNS_KEY]
    write_elem(f["uns"], UNS_KEY, dict(uns, var_columns=json.dumps([*table.columns, SKIPPED])))


def _rewrite_whole(source: Path, dest: Path, table: pd.DataFrame, skipped: Mapping[str, str],
                   uns: Mapping[str, Any], matrix: bool) -> None:
    import anndata

    adata = anndata.read_h5ad(source)
    if not matrix:
        adata = anndata.AnnData(obs=adata.obs, var=adata.var, uns=dict(adata.uns), obsm=dict(adata.obsm),
                                varm=dict(adata.varm), obsp=dict(adata.obsp), varp=dict(adata.varp))
    annotate(adata, table, skipped, uns)
    adata.write_h5ad(dest)


# ------------------------------------------------------------------------------------- the two methods' calls


def batch_results(out: Path, run: TableRun, prep: Prepared, csv_path: Path, settings: BatchSettings,
                  command: str, matrix: bool = True) -> Path | None:
    """The end of a batch run: an in-memory AnnData (run.adata) annotated in place; for an .h5ad file,
    OUT/bursting.h5ad written (None otherwise)."""
    if run.adata is None and not is_h5ad(run.path):
        return None
    table = read_results(csv_path)
    uns = run_uns("batch", prep.emulator.source, prep.sha256 or "", command, table_options(run), settings,
                  len(table), len(prep.skipped))
    if run.adata is not None:
        annotate(run.adata, table, prep.skipped, uns)
        return None
    return write_bursting_h5ad(Path(run.path), out / OUT_NAME, table, prep.skipped, uns, matrix)


def smc_results(path: str | Path, out: Path, csv_path: Path, specs: Sequence[str | None], settings: Any,
                options: Mapping[str, Any], command: str, matrix: bool = True,
                log: Callable[[str], None] = print) -> Path | None:
    """The end of a per-gene ABC-SMC run (inference/genes.py): OUT/bursting.h5ad for an .h5ad file (None
    otherwise, and with --species, whose one data set is no gene of var). Besides genes.csv's columns, var gets
    `ess` (the smallest ESS over the variables, as the batch method's) and `method` ("smc")."""
    if not is_h5ad(path):
        return None
    if options.get("species"):
        log(f"{OUT_NAME} not written: with --species the table is one data set, not one result per gene")
        return None
    from ...emulators.resolve import resolve_models
    from .layers import LAYER_SPECIES

    species = LAYER_SPECIES if options.get("layers") else ("mrna",)
    models = resolve_models(list(specs), species, options.get("capture"), options.get("capture_prior"))
    table = read_results(csv_path)
    ess = [c for c in table.columns if c.endswith("_ess")]
    if "ess" not in table.columns and ess:  # as the batch method's column: the smallest over the variables
        table["ess"] = table[ess].min(axis=1)
    if "method" not in table.columns:
        table["method"] = "smc"
    opts = {"input": str(Path(path).resolve()), **options}
    uns = run_uns("smc", ", ".join(em.source for em, _ in models), ", ".join(sha or "" for _, sha in models),
                  command, opts, settings, len(table), 0)
    return write_bursting_h5ad(Path(path), out / OUT_NAME, table, {}, uns, matrix)
