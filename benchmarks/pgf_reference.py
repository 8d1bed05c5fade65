"""Timing and accuracy of the generating-function engine (simulate/pgf.py) on gene_joint; prints one table.

Parameter sets are drawn from gene_joint's prior (--seed): the first --bursty with v0 >= --v0-min (the bursty
corner, where FSP's box at the protocol's max_states loses more than 1e-3) and the first --easy with v0 <= 15,
d1 >= 0.2 and mean protein <= 60 (where FSP converges). Columns: rates, seconds of `window_pmf` (one thread),
window mass, its estimated error per probability, and against FSP (the protocol's settings for bursty sets, tol
1e-13 and 3e6 states for easy ones): FSP's seconds, its tail mass and max |pgf - fsp| on the window. --refine
adds max |pgf - pgf on 2x finer age grids with 1.25x larger FFTs|, the change the error estimate should bound.
--all-rows adds the mRNA rows inverted (of the cap; `pgf.mrna_rows`), the seconds of inverting every row
(PGFSettings(fit_mrna=False), the engine before) and max |fitted - every row|; --prior N takes the first N prior
draws instead of --bursty and --easy.
Run: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
     .venv/bin/python benchmarks/pgf_reference.py [--bursty 10] [--easy 3] [--prior N] [--seed 0] [--no-fsp]
     [--refine] [--all-rows]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from surrogate_abc.config import FSPSettings, load_protocol
from surrogate_abc.simulate import fsp, pgf

FINER = pgf.PGFSettings(cstep=1.5, tail_cstep=0.5, hmin=0.005, grade=0.1, size_m=2.5, size_p=2.5)


def pick(rates: np.ndarray, names: list[str], n_bursty: int, n_easy: int, v0_min: float) -> list[tuple[str, int]]:
    """(kind, index) of the chosen sets, in draw order."""
    r = {k: rates[:, i] for i, k in enumerate(names)}
    mean_p = r["v1"] * r["v0"] * r["k0"] / (r["d0"] * r["d1"] * (r["k0"] + r["k1"]))
    bursty = np.flatnonzero(r["v0"] >= v0_min)[:n_bursty]
    easy = np.flatnonzero((r["v0"] <= 15) & (r["d1"] >= 0.2) & (mean_p <= 60))[:n_easy]
    return [("bursty", int(i)) for i in bursty] + [("easy", int(i)) for i in easy]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bursty", type=int, default=10)
    ap.add_argument("--easy", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--v0-min", type=float, default=300.0)
    ap.add_argument("--no-fsp", action="store_true", help="skip the FSP columns")
    ap.add_argument("--refine", action="store_true", help="add the change on finer grids (doubles the time)")
    ap.add_argument("--all-rows", action="store_true", help="add the engine inverting every mRNA row, side by side")
    ap.add_argument("--prior", type=int, default=0, help="the first N prior draws instead of --bursty/--easy")
    args = ap.parse_args()
    proto = load_protocol("gene_joint")
    roles = pgf.require_gene(proto.network, proto.species)
    names = list(proto.rate_names)
    rates = proto.rates(proto.sample(4000, args.seed))
    caps = tuple(a.count_cap for a in proto.axes)
    pgf.window_pmf([1.0, 1.0, 5.0, 1.0, 1.0, 1.0], (8, 8))  # compile outside the timings
    head = (f"{'set':>10} {'k0':>7} {'k1':>7} {'v0':>9} {'v1':>8} {'d1':>6} {'pgf [s]':>8} {'window':>9} "
            f"{'est. err':>9} {'fsp [s]':>8} {'fsp tail':>9} {'|pgf-fsp|':>10}" + (f" {'|refined|':>10}" if args.refine else "")
            + (f" {'rows':>5} {'all [s]':>8} {'|fit-all|':>10}" if args.all_rows else ""))
    print(f"gene_joint, caps {caps}, prior draws seed {args.seed}")
    print(head)
    chosen = ([("prior", i) for i in range(args.prior)] if args.prior
              else pick(rates, names, args.bursty, args.easy, args.v0_min))
    fitted = every = 0.0
    for kind, i in chosen:
        rmap = dict(zip(names, rates[i]))
        vals = roles.values(rmap)
        res = pgf.window_pmf(vals, caps)
        cols = [f"{kind[0]}{i:>9}"] + [f"{v:>7.3g}" for v in vals[:2]] + [f"{vals[2]:>9.4g}", f"{vals[4]:>8.3g}",
                                                                        f"{vals[5]:>6.3g}"]
        cols += [f"{res.wall_time:>8.2f}", f"{res.pmf.sum():>9.6f}", f"{res.error:>9.1e}"]
        if args.no_fsp:
            cols += [f"{'-':>8}", f"{'-':>9}", f"{'-':>10}"]
        else:
            settings = FSPSettings(1e-13, 3_000_000) if kind == "easy" else proto.fsp
            t0 = time.perf_counter()
            ref = fsp.solve_stationary(proto.network, rmap, list(proto.species), list(caps), settings)
            cols += [f"{time.perf_counter() - t0:>8.2f}", f"{ref.tail_mass:>9.1e}",
                     f"{np.abs(res.pmf - ref.pmf).max():>10.1e}"]
        if args.refine:
            cols.append(f"{np.abs(res.pmf - pgf.window_pmf(vals, caps, FINER).pmf).max():>10.1e}")
        if args.all_rows:
            whole = pgf.window_pmf(vals, caps, pgf.PGFSettings(fit_mrna=False))
            fitted, every = fitted + res.wall_time, every + whole.wall_time
            cols += [f"{pgf.mrna_rows(vals, caps[0])[0]:>5}", f"{whole.wall_time:>8.2f}",
                     f"{np.abs(res.pmf - whole.pmf).max():>10.1e}"]
        print(" ".join(cols), flush=True)
    if args.all_rows:
        print(f"total: {fitted:.1f} s fitting the mRNA rows, {every:.1f} s inverting every row ({every / fitted:.2f}x)")


if __name__ == "__main__":
    from _main import run

    run(main)
