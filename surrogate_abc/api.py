"""The Python API: plain functions over the objects the command line uses.

    import surrogate_abc as sa
    protocol = sa.load_protocol("telegraph_mrna")
    sa.simulate(protocol, n=200, out="sim.h5", engine="exact")
    emulator, history = sa.train("train_mdn_protein", data=["binned.h5"], out="em.safetensors")
    idata = sa.infer("observed.h5", emulator="em.safetensors", out="posterior", chains=2)
    genes = sa.infer_genes("counts.csv", out="genes", compare=["telegraph_mrna", "poisson", "negbin"])
    table, paths = sa.calibrate("em.safetensors", datasets=50, cells=1000, out="calibration")

Each function imports its stage when called, so `import surrogate_abc` stays cheap (no torch, pyabc, numba).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .config import Protocol, load_protocol

PathLike = str | os.PathLike


def load_emulator(spec: PathLike) -> Any:
    """An emulator from a .safetensors file, or the exact one of a protocol ('exact:<protocol name or .toml>')."""
    from .emulators.resolve import resolve_emulator

    return resolve_emulator(str(spec))[0]


def simulate(protocol: Protocol | PathLike, n: int, out: PathLike, *, engine: str | None = None, seed: int = 0,
             samples: int | None = None, keep_raw: bool = False, chunk_size: int | None = None, command: str = "",
             progress: bool = False) -> str | None:
    """`surrogate-abc simulate`: n parameter sets from the protocol's prior into `out` (resumable, MPI-parallel
    under mpiexec); the summary table (None on MPI ranks other than 0)."""
    from .simulate import run_simulation

    proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    return run_simulation(proto, n=n, out=Path(out), samples=samples, seed=seed, engine=engine, keep_raw=keep_raw,
                          chunk_size=chunk_size, command=command, progress=progress)


def train(config: PathLike, data: PathLike | Sequence[PathLike], out: PathLike | None = None, *,
          init: PathLike | None = None, device: str | None = None, epochs: int | None = None,
          max_time: float | None = None, progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """`surrogate-abc train`: (the trained Emulator, its training history); written to `out` when given."""
    from .training import load_train_config, resolve_device
    from .training import train as run_training

    cfg = load_train_config(config)
    if epochs is not None:
        cfg = cfg.with_epochs(epochs)
    if max_time is not None:
        cfg = cfg.with_max_seconds(max_time)
    files = [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(d) for d in data]
    return run_training(cfg, files, Path(out) if out is not None else None, device=resolve_device(device),
                        progress=progress, init=str(init) if init is not None else None)


def attach_marginal(joint: PathLike, marginal: PathLike, out: PathLike, *, validate: PathLike | None = None,
                    max_tail_mass: float = 1e-3) -> tuple[Any, str]:
    """`surrogate-abc attach-marginal`: the conditional joint emulator `joint` with its first species' factor
    taken from the 1-D emulator `marginal` (emulators.compose), written to `out`; with `validate` (a binned file
    of exact held-out targets) both are measured on it and the result's validation_metrics are those measured.
    Returns (the emulator, a summary)."""
    from .emulators.compose import attach_marginal as attach
    from .emulators.io import load_emulator as load_file
    from .emulators.io import save_emulator
    from .training.heldout import compare_on_heldout

    j, m = load_file(Path(joint)), load_file(Path(marginal))
    both = attach(j, m)
    lines = [f"{Path(joint).name}: first factor ({j.species[0]}) from {Path(marginal).name}"]
    if validate is not None:
        _, after, record, change = compare_on_heldout(j, both, Path(validate), max_tail_mass)
        both.metadata["validation_metrics"], both.metadata["validation_data"] = after, record
        lines.append(f"held-out {Path(validate).name} ({record['sets']} sets with exact targets, {record['left_out']} "
                     f"left out): {change}")
    save_emulator(both, Path(out))
    lines.append(f"wrote {out}")
    return both, "\n".join(lines)


def infer(observed: PathLike, emulator: PathLike | None = None, out: PathLike | None = None, *,
          command: str = "", log=None, compare: Sequence[str] | None = None,
          capture: float | tuple[float, float] | None = None, capture_prior: tuple[float, float] | None = None,
          **settings: Any):
    """`surrogate-abc infer`: the posterior as ArviZ InferenceData. With `out` it is also written there
    (posterior.nc, abc.db, summary.csv, the plots), as the command line does; with out=None (the default) nothing
    is written: pyabc's History lives in a temporary folder, removed before this returns, and the InferenceData
    is in memory.

    `settings` are InferenceSettings fields: mode, population, generations, chains, seed, sampler, prior
    ({name: (low, high)}), distance, min_epsilon, max_walltime, ..."""
    import tempfile

    from .inference.infer import infer as run_inference
    from .inference.run import InferenceSettings

    def run(folder: Path, settings: InferenceSettings, write: bool) -> Any:
        result = run_inference(Path(observed), str(emulator) if emulator is not None else None, settings, folder,
                               command=command, log=log or (lambda _msg: None), compare=compare, capture=capture,
                               capture_prior=capture_prior, write=write)
        return result.idata  # in memory: the file is not read back

    if out is not None:
        return run(Path(out), InferenceSettings(**settings), write=True)
    with tempfile.TemporaryDirectory(prefix="surrogate-abc-") as tmp:  # pyabc's abc.db only
        return run(Path(tmp) / "out", InferenceSettings(**{**settings, "plots": False}), write=False)


def infer_differential(table: PathLike, groupby: str | None = None, groups: Sequence[str] | None = None,
                       emulator: PathLike | None = None, out: PathLike | None = None, *,
                       genes: Sequence[str] | None = None, layer: str | None = None,
                       capture: float | tuple[float, float] | None = None,
                       capture_prior: tuple[float, float] | None = None, size_factors: str | None = None,
                       lfc_threshold: float = 0.5, call_probability: float = 0.95, min_cells: int = 10, seed: int = 0,
                       prior: dict[str, tuple[float, float]] | None = None, batch: Any = None, plots: bool = True,
                       command: str = "", log=None, progress: bool = False, scheduler: str | None = None,
                       compare_table: PathLike | None = None, layout: str = "cells-by-genes",
                       missing: str = "error"):
    """`surrogate-abc infer TABLE --groupby COLUMN [--groups A,B]`: every gene inferred in each group of cells by the
    batch method, then per pair of groups the posterior log2 fold change of burst frequency and burst size and a
    call (up / down / unchanged / undecided at lfc_threshold and call_probability). Returns `out`/differential.csv
    as a pandas DataFrame; `out`/groups/<group>/ holds each group's genes.csv and posterior.nc. With
    `compare_table` instead of `groupby` (`--compare-table`): `table` and `compare_table` are the two groups (e.g.
    two alleles; `groups` names them). `layout` ("genes-by-cells": txburst's tables) and `missing` ("drop") as
    --layout and --missing."""
    import pandas as pd

    from .errors import UserError
    from .inference.differential import CallRule, infer_table_pair
    from .inference.differential import infer_differential as run_differential
    from .inference.transcriptome import TableRun

    run = TableRun(str(table), str(emulator) if emulator is not None else None, tuple(genes) if genes else None,
                   layer, capture, capture_prior, dict(prior or {}), min_cells, int(seed), size_factors=size_factors,
                   layout=layout, missing=missing)
    options = dict(plots=plots, command=command, log=log or (lambda _msg: None), progress=progress,
                   scheduler=scheduler)
    folder = Path(out) if out is not None else None
    if (groupby is None) == (compare_table is None):
        raise UserError("infer_differential compares groups of cells (groupby) or two tables (compare_table): give "
                        "one of them")
    if compare_table is not None:
        done = infer_table_pair(run, compare_table, groups, folder, CallRule(lfc_threshold, call_probability), batch,
                                **options)
    else:
        assert groupby is not None
        done = run_differential(run, groupby, groups, folder, CallRule(lfc_threshold, call_probability), batch,
                                **options)
    return pd.read_csv(done.csv_path, keep_default_na=False, na_values=[""])


def infer_genes(table: PathLike, emulator: PathLike | None = None, out: PathLike | None = None, *,
                genes: Sequence[str] | None = None, layer: str | None = None, species: dict[str, str] | None = None,
                compare: Sequence[str] | None = None, capture: float | tuple[float, float] | None = None,
                capture_prior: tuple[float, float] | None = None, jobs: int | None = None, command: str = "",
                log=None, progress: bool = False, method: str | None = None, min_cells: int = 10,
                batch: Any = None, per_gene_outputs: bool = False, scheduler: str | None = None,
                size_factors: str | None = None, layers: tuple[str, str] | None = None,
                layout: str = "cells-by-genes", missing: str = "error", **settings: Any):
    """`surrogate-abc infer counts.csv|.tsv|.h5ad`: the table of all genes (`out`/genes.csv), returned as a pandas
    DataFrame. method "batch" (the default where it applies: one species, no `compare`) writes `out`/posterior.nc
    with a `gene` dimension (`batch`: a BatchSettings); "smc" one ABC-SMC per gene (`out`/<gene>/posterior.nc).
    `settings` as for `infer` (with batch: `seed`, `prior`, `plots`). `size_factors` (batch): per-cell capture,
    "total" or a column of size factors (with `capture` or `capture_prior`, the mean cell's). `scheduler` (batch): "tcp://HOST:PORT" of a
    running dask scheduler or "local:N" runs the blocks of genes on dask workers, with the same results. `layers`
    (nascent, mature), e.g. ("unspliced", "spliced"): each gene from its joint counts in two AnnData layers.
    `layout` "genes-by-cells" reads a CSV/TSV of genes as rows (txburst's), `missing` "drop" leaves missing values
    out of each gene's data (genes.csv gains cells_used), as --layout and --missing."""
    from .data.table_format import TableFormat

    fmt = TableFormat(layout, missing)
    import pandas as pd

    from .inference.transcriptome.run import choose_method

    if choose_method(method, compare, species, settings.get("mode", "likelihood")) == "batch":
        from .inference.transcriptome import TableRun, infer_transcriptome

        run = TableRun(str(table), str(emulator) if emulator is not None else None, tuple(genes) if genes else None,
                       layer, capture, capture_prior, dict(settings.get("prior", {})), min_cells,
                       int(settings.get("seed", 0)), size_factors=size_factors,
                       layers=(layers[0], layers[1]) if layers else None, layout=layout, missing=missing)
        csv_path, _ = infer_transcriptome(run, Path(out) if out is not None else None, batch,
                                          per_gene_outputs=per_gene_outputs, plots=bool(settings.get("plots", True)),
                                          command=command, log=log or (lambda _msg: None), progress=progress,
                                          scheduler=scheduler)
        return pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    if scheduler is not None:
        from .errors import UserError

        raise UserError("scheduler applies to the batch method (one species per gene, no compare); the per-gene "
                        "ABC-SMC path runs genes in parallel with jobs")

    from .inference.genes import infer_table
    from .inference.run import InferenceSettings

    csv_path, _ = infer_table(Path(table), str(emulator) if emulator is not None else None,
                              InferenceSettings(**settings), Path(out) if out is not None else None, genes=genes,
                              layer=layer, species_map=species, compare=compare, capture=capture,
                              capture_prior=capture_prior, jobs=jobs, command=command,
                              log=log or (lambda _msg: None), progress=progress,
                              layers=(layers[0], layers[1]) if layers else None, fmt=fmt)
    return pd.read_csv(csv_path, keep_default_na=False, na_values=[""])


def calibrate(emulator: PathLike | None = None, datasets: int = 50, cells: int = 1000, out: PathLike | None = None, *,
              protocol: str | None = None, seed: int = 0, jobs: int | None = None, progress: bool = False, log=None,
              near_bounds: float | None = None, **settings: Any) -> tuple[str, dict[str, Path]]:
    """`surrogate-abc calibrate`: exact datasets at `datasets` prior draws, each inferred; returns (the coverage
    table text, {name: path} of calibration.csv, datasets.csv, sbc_ranks.png, the folder). `emulator`: None or
    "DEFAULT" (the shipped emulator of `protocol`), a .safetensors file or "exact:<protocol>". `settings`: the
    ABC-SMC's (inference.calibration.CALIBRATE_OPTIONS: mode, population (default 400), generations, chains,
    max_walltime, min_acceptance_rate). `near_bounds`: FRACTION in (0, 0.5], each truth with one parameter in the
    outer FRACTION of its prior range, the table over those (calibrate --near-bounds; no sbc_ranks.png)."""
    from .inference.calibration import calibrate as run_calibration
    from .inference.calibration.study import calibration_algorithm

    return run_calibration(str(emulator) if emulator is not None else None, datasets, cells,
                           calibration_algorithm(**settings), seed=seed, jobs=jobs,
                           out=Path(out) if out is not None else None, protocol=protocol, progress=progress,
                           log=log or (lambda _msg: None), near_bounds=near_bounds)
