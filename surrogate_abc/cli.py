"""The `surrogate-abc` command: parse arguments, call the library, print. Nothing else lives here.

Commands import their stage when they run (not at start-up), so `--help` and each command load only what
they need.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import __version__
from .argtypes import positive_int
from .errors import UserError
from .infer_parser import add_infer_parser
from .report import notes_from_warnings


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .api import simulate

    summary = simulate(args.config, n=args.n, out=args.out, samples=args.samples, seed=args.seed, engine=args.engine,
                       keep_raw=args.keep_raw, chunk_size=args.chunk_size, command=args.command_line,
                       progress=not args.quiet)
    if summary is not None:  # None on MPI ranks other than 0
        print(summary)
    return 0


def _cmd_bin(args: argparse.Namespace) -> int:
    from .data.binned import bin_file

    summary = bin_file(Path(args.data), Path(args.out), edges=args.edges)
    if summary is not None:
        print(summary)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .data.summary import show_binned

    print(show_binned(Path(args.binned), plot=Path(args.plot) if args.plot else None, n_examples=args.examples,
                      compare=Path(args.compare) if args.compare else None))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .api import train
    from .training import format_summary

    _, history = train(args.config, args.data, args.out, init=args.init, device=args.device, epochs=args.epochs,
                       max_time=args.max_time, progress=not args.quiet)
    print(format_summary(history, Path(args.out)))
    return 0


def _cmd_attach_marginal(args: argparse.Namespace) -> int:
    from .api import attach_marginal

    print(attach_marginal(args.joint, args.marginal, args.out, validate=args.validate,
                          max_tail_mass=args.max_tail_mass)[1])
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from .data.tables import is_count_table
    from .inference.settings import Algorithm, ExactFollowups, Execution, InferenceSettings, from_args

    settings = InferenceSettings(from_args(Algorithm, args), from_args(Execution, args),
                                 from_args(ExactFollowups, args), plots=not args.no_plots)
    out = Path(args.out) if args.out else None
    if args.groupby is None and args.compare_table is None:
        for flag, value in (("--groups", args.groups), ("--lfc-threshold", args.lfc_threshold),
                            ("--call-probability", args.call_probability)):
            if value is not None:
                raise UserError(f"{flag} applies with --groupby COLUMN (comparing groups of cells) or --compare-table "
                                "TABLE (comparing two tables)")
    if args.groupby is not None and args.compare_table is not None:
        raise UserError("--groupby and --compare-table exclude each other: compare groups of cells or two tables")
    from .data.table_format import TableFormat

    fmt = TableFormat(args.layout or "cells-by-genes", args.missing or "error")
    if is_count_table(args.observed):
        from .inference.transcriptome.run import choose_method

        if args.no_matrix and Path(args.observed).suffix.lower() != ".h5ad":
            raise UserError(f"--no-matrix applies to .h5ad tables (it leaves X out of bursting.h5ad); omit it for "
                            f"{args.observed}")
        if choose_method(args.method, args.compare, args.species, args.mode) == "batch":
            return _infer_batch(args, settings, out, fmt)
        for flag, value in (("--per-gene-outputs", args.per_gene_outputs or None), ("--min-cells", args.min_cells),
                            ("--ess", args.ess), ("--draws", args.draws), ("--block-size", args.block_size),
                            ("--scheduler", args.scheduler), ("--size-factors", args.size_factors),
                            ("--groupby", args.groupby), ("--compare-table", args.compare_table)):
            if value is not None:
                raise UserError(f"{flag} applies to --method batch")
        from .inference.genes import infer_table

        csv_path, table = infer_table(Path(args.observed), args.emulator, settings, out, genes=args.genes,
                                      layer=args.layer, species_map=args.species, compare=args.compare,
                                      capture=args.capture, capture_prior=args.capture_prior, jobs=args.jobs,
                                      command=args.command_line, progress=not args.quiet,
                                      h5ad_matrix=not args.no_matrix, layers=args.layers, fmt=fmt)
        print(table)
        print(f"wrote {csv_path} and {csv_path.parent}/<gene>/posterior.nc (with abc.db, summary.csv and PNGs)"
              + _bursting_note(csv_path))
        return 0
    for flag, value in (("--genes", args.genes), ("--layer", args.layer), ("--layers", args.layers),
                        ("--species", args.species),
                        ("--method", args.method), ("--min-cells", args.min_cells), ("--ess", args.ess),
                        ("--draws", args.draws), ("--block-size", args.block_size), ("--scheduler", args.scheduler),
                        ("--per-gene-outputs", args.per_gene_outputs or None), ("--no-matrix", args.no_matrix or None),
                        ("--size-factors", args.size_factors), ("--groupby", args.groupby)):
        if value is not None:
            raise UserError(f"{flag} applies to count tables (.csv, .tsv, .h5ad); {args.observed} is read as HDF5")
    from .inference.infer import infer

    nc = infer(Path(args.observed), args.emulator, settings, out, command=args.command_line,
               compare=args.compare, capture=args.capture, capture_prior=args.capture_prior,
               on_table=lambda table: print(table, flush=True)).path  # the table first, then the plots
    assert nc is not None  # written: infer(write=True)
    pngs = "" if args.no_plots else ", marginals.png, pair.png, ppc.png"
    print(f"wrote {nc} (and abc.db, summary.csv{pngs} in {nc.parent})")
    return 0


def _infer_batch(args: argparse.Namespace, settings, out: Path | None, fmt) -> int:
    """A count table by the batch method (inference/transcriptome)."""
    import dataclasses

    from .inference.transcriptome import BatchSettings, TableRun, infer_transcriptome

    batch = BatchSettings()
    batch = dataclasses.replace(batch, ess_target=float(args.ess) if args.ess is not None else batch.ess_target,
                                draws=args.draws if args.draws is not None else batch.draws,
                                block_size=args.block_size or batch.block_size)
    run = TableRun(args.observed, args.emulator, tuple(args.genes) if args.genes else None, args.layer, args.capture,
                   args.capture_prior, dict(args.prior or []), args.min_cells if args.min_cells is not None else 10,
                   args.seed, size_factors=args.size_factors, layers=args.layers, layout=fmt.layout,
                   missing=fmt.missing)
    smc = settings.replace(plots=settings.plots and args.per_gene_outputs, chain_jobs=1,
                              exact_check="none")
    if args.groupby is not None or args.compare_table is not None:
        return _infer_groups(args, run, batch, smc, out)
    csv_path, table = infer_transcriptome(run, out, batch, smc, per_gene_outputs=args.per_gene_outputs,
                                          plots=not args.no_plots, command=args.command_line,
                                          progress=not args.quiet, h5ad_matrix=not args.no_matrix,
                                          scheduler=args.scheduler)
    print(table)
    pngs = "" if args.no_plots else ", genes.png"
    print(f"wrote {csv_path} (and posterior.nc, skipped.csv{pngs} in {csv_path.parent})" + _bursting_note(csv_path))
    return 0


def _infer_groups(args: argparse.Namespace, run, batch, smc, out: Path | None) -> int:
    """--groupby or --compare-table: every gene in each group (table), then the groups compared
    (inference/differential)."""
    from .inference.differential import CallRule, infer_differential, infer_table_pair

    rule = CallRule.of(args.lfc_threshold, args.call_probability)
    if args.compare_table is not None:
        done = infer_table_pair(run, args.compare_table, args.groups, out, rule, batch, smc, plots=not args.no_plots,
                                command=args.command_line, progress=not args.quiet, scheduler=args.scheduler)
    else:
        done = infer_differential(run, args.groupby, args.groups, out, rule, batch, smc, plots=not args.no_plots,
                                  command=args.command_line, progress=not args.quiet, h5ad_matrix=not args.no_matrix,
                                  scheduler=args.scheduler)
    print(done.text)
    print(f"wrote {done.csv_path}{'' if args.no_plots else ' and differential_<pair>.png'}" + _bursting_note(done.csv_path))
    return 0


def _bursting_note(csv_path: Path) -> str:
    """Where an .h5ad table's results in its AnnData went (bursting.h5ad, written with genes.csv)."""
    h5ad = csv_path.parent / "bursting.h5ad"
    written = h5ad.is_file() and h5ad.stat().st_mtime >= csv_path.stat().st_mtime  # this run's, not an old one
    return f"\nwrote {h5ad} (the input AnnData with the results as var columns)" if written else ""


def _cmd_report(args: argparse.Namespace) -> int:
    from .inference.output import report

    print(report(Path(args.posterior), Path(args.out) if args.out else None))
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .api import calibrate
    from .inference.calibration import CALIBRATE_OPTIONS

    options = {name: getattr(args, name) for name in CALIBRATE_OPTIONS}
    text, paths = calibrate(args.emulator, datasets=args.datasets, cells=args.cells, seed=args.seed, jobs=args.jobs,
                            out=args.out, protocol=args.protocol, progress=not args.quiet,
                            log=lambda m: print(m, flush=True), near_bounds=args.near_bounds, **options)
    print(text)
    others = [paths[k].name for k in ("datasets", "sbc_ranks") if k in paths]
    print(f"wrote {paths['calibration']}, {' and '.join(others)} in {paths['out']}")
    return 1 if "failed" in paths else 0


def _add_calibrate_parser(sub) -> None:
    """The `calibrate` subcommand's options."""
    from .inference.calibration.study import CALIBRATE_DEFAULTS, CALIBRATE_OPTIONS
    from .inference.settings import Algorithm, add_options

    c = sub.add_parser("calibrate", help="coverage of the posteriors over the prior: exact datasets at prior draws, "
                       "inferred each (calibration.csv, SBC rank histograms)")
    c.add_argument("--emulator", default="DEFAULT",
                   help="DEFAULT (the shipped emulator of --protocol), an emulator .safetensors (its own protocol) "
                        "or exact:<protocol name or .toml>")
    c.add_argument("--protocol", default=None,
                   help="with --emulator DEFAULT: the protocol whose shipped emulator is calibrated (default "
                        "gene_protein); otherwise it must match the emulator's")
    c.add_argument("--datasets", type=int, required=True, help="number of prior draws (datasets)")
    c.add_argument("--cells", type=positive_int, required=True, help="cells per dataset")
    add_options(c, Algorithm, defaults=CALIBRATE_DEFAULTS, only=CALIBRATE_OPTIONS)  # as for infer
    c.add_argument("--near-bounds", type=float, default=None, metavar="FRACTION",
                   help="FRACTION in (0, 0.5]: each truth has one parameter (in turn; low side, then high) drawn "
                        "in the outer FRACTION of its prior range (log scale for log-uniform priors); the table "
                        "gives, per parameter, the coverage of the 94%% HDI and 90%% central interval over those "
                        "datasets and how often infer's prior_bound flag fired")
    c.add_argument("--seed", type=int, default=0, help="prior draws, cells and ABC seeds derive from it")
    c.add_argument("--jobs", type=positive_int, default=None, help="datasets run in parallel (default: the cores)")
    c.add_argument("--out", default=None,
                   help="output folder (default ./surrogate-abc-calibration/); a rerun reuses finished datasets")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_calibrate)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="surrogate-abc", description=__doc__)
    p.add_argument("--version", action="version", version=f"surrogate-abc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="draw parameters from a protocol's prior and simulate each set (SSA or exact FSP)")
    s.add_argument("config", help="protocol: a .toml file or a shipped protocol name (e.g. seed_protein, telegraph_mrna)")
    s.add_argument("--n", type=int, required=True, help="number of parameter sets")
    s.add_argument("--out", required=True, help="output HDF5 file (in progress: OUT.partial)")
    s.add_argument("--samples", type=positive_int, default=None, help="SSA samples per set (default: the protocol's)")
    s.add_argument("--seed", type=int, default=0, help="seed; parameter draws and SSA runs depend only on it")
    s.add_argument("--engine", choices=("ssa", "fsp", "exact", "pgf"), default=None,
                   help="ssa: gillespy2 C++ SSA; fsp: exact finite state projection; exact: closed form "
                        "(Poisson, Beta-Poisson, the Gaussian toy) where one is known; pgf: the gene model's "
                        "joint (mRNA, protein) pmf from its generating function, also where FSP's box is too small")
    s.add_argument("--keep-raw", action="store_true", help="also store the sampled SSA time series")
    s.add_argument("--chunk-size", type=positive_int, default=None, help="sets committed per chunk (default: auto)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_simulate)

    b = sub.add_parser("bin", help="turn simulated counts into normalised histograms")
    b.add_argument("data", help="simulation HDF5 file")
    b.add_argument("--out", required=True, help="binned HDF5 file to write")
    b.add_argument("--edges", default=None,
                   help="override edges: 'start:stop:width' (1-D) or 'start:stop:width,start:stop:width' (mRNA,protein)")
    b.set_defaults(func=_cmd_bin)

    v = sub.add_parser("show", help="print a summary table of a binned file and plot a few histograms")
    v.add_argument("binned", help="binned HDF5 file")
    v.add_argument("--plot", default=None, help="PNG to write (default: next to the file, .png)")
    v.add_argument("--examples", type=positive_int, default=4, help="histograms to plot")
    v.add_argument("--compare", default=None,
                   help="another binned file of the same parameter sets (e.g. SSA vs FSP): plot both, print TV distances")
    v.set_defaults(func=_cmd_show)

    t = sub.add_parser("train", help="train a neural emulator (MDN / LSTM / ensemble) on binned data")
    t.add_argument("config", help="training config: a train_*.toml file or a shipped name (e.g. train_mdn_protein)")
    t.add_argument("--data", required=True, action="append",
                   help="binned HDF5 file from `surrogate-abc bin`; repeat to train on several files of one protocol "
                        "(validation rows are drawn per file)")
    t.add_argument("--init", default=None, metavar="EMULATOR",
                   help="start from this emulator's weights and input scaling (same [model]) instead of random ones")
    t.add_argument("--out", required=True, help="emulator file to write (.safetensors); checkpoint: OUT.ckpt.safetensors")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    t.add_argument("--epochs", type=positive_int, default=None, help="override the config's epoch budget")
    t.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                   help="stop training after this wall time; the best weights are saved and a rerun resumes")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    a = sub.add_parser("attach-marginal", help="take a conditional joint emulator's first factor (e.g. p(mRNA)) from an "
                       "emulator of that species alone, trained on its exact marginal")
    a.add_argument("joint", help="conditional joint emulator (.safetensors, model type mdn_conditional)")
    a.add_argument("marginal", help="1-D MDN emulator of the joint's first species, same [parameters] and edges")
    a.add_argument("--out", required=True, help="emulator file to write (.safetensors)")
    a.add_argument("--validate", default=None, metavar="BINNED",
                   help="binned file of exact held-out targets: measure both emulators on it and store the result's")
    a.add_argument("--max-tail-mass", type=float, default=1e-3,
                   help="leave out held-out sets whose FSP truncation missed more mass than this (default 1e-3)")
    a.set_defaults(func=_cmd_attach_marginal)

    add_infer_parser(sub, _cmd_infer)

    r = sub.add_parser("report", help="regenerate summary.csv and the PNGs from a posterior.nc")
    r.add_argument("posterior", help="posterior.nc written by `surrogate-abc infer`")
    r.add_argument("--out", default=None, help="folder for summary.csv and PNGs (default: next to posterior.nc)")
    r.set_defaults(func=_cmd_report)

    _add_calibrate_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["surrogate-abc", *(sys.argv[1:] if argv is None else argv)])
    if getattr(args, "n", 1) is not None and getattr(args, "n", 1) <= 0:
        parser.exit(2, f"surrogate-abc: error: --n must be a positive number of parameter sets, got {args.n}\n")
    try:
        with notes_from_warnings():  # warnings raised by the command: one-line notes on stderr
            return int(args.func(args) or 0)
    except UserError as exc:
        print(f"surrogate-abc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("surrogate-abc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
