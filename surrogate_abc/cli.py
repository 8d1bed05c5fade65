"""The `surrogate-abc` command: parse arguments, call the library, print. Nothing else lives here."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import __version__
from .errors import UserError


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .config import load_protocol
    from .simulate import run_simulation

    protocol = load_protocol(args.config)
    summary = run_simulation(
        protocol, n=args.n, out=Path(args.out), samples=args.samples, seed=args.seed, engine=args.engine,
        keep_raw=args.keep_raw, chunk_size=args.chunk_size, command=shlex.join(sys.argv), progress=not args.quiet,
    )
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

    print(show_binned(Path(args.binned), plot=Path(args.plot) if args.plot else None, n_examples=args.examples))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="surrogate-abc", description=__doc__)
    p.add_argument("--version", action="version", version=f"surrogate-abc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="draw parameters from a protocol's prior and simulate each set (SSA or exact FSP)")
    s.add_argument("config", help="protocol: a .toml file or a name in configs/ (e.g. seed_protein)")
    s.add_argument("--n", type=int, required=True, help="number of parameter sets")
    s.add_argument("--out", required=True, help="output HDF5 file (in progress: OUT.partial)")
    s.add_argument("--samples", type=_positive_int, default=None, help="SSA samples per set (default: the protocol's)")
    s.add_argument("--seed", type=int, default=0, help="seed; parameter draws and SSA runs depend only on it")
    s.add_argument("--engine", choices=("ssa", "fsp", "exact"), default=None,
                   help="ssa: gillespy2 C++ SSA; fsp: exact finite state projection; exact: closed form (toy)")
    s.add_argument("--keep-raw", action="store_true", help="also store the sampled SSA time series")
    s.add_argument("--chunk-size", type=_positive_int, default=None, help="sets committed per chunk (default: auto)")
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
    v.add_argument("--examples", type=_positive_int, default=4, help="histograms to plot")
    v.set_defaults(func=_cmd_show)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "n", 1) is not None and getattr(args, "n", 1) <= 0:
        parser.exit(2, f"surrogate-abc: error: --n must be a positive number of parameter sets, got {args.n}\n")
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"surrogate-abc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("surrogate-abc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
