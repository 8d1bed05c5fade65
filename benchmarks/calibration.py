"""Calibration of surrogate-abc's posteriors over the prior: a thin wrapper of `surrogate-abc calibrate`
(surrogate_abc/inference/calibration/), with the benchmark's defaults (50 datasets, runs/calibration).

  python benchmarks/calibration.py                                  # 50 datasets, default emulator, all cores
  python benchmarks/calibration.py --emulator runs/mdn.safetensors --datasets 100 --population 400
  python benchmarks/calibration.py --emulator exact:gene_protein --datasets 4 --population 50 --generations 4

Outputs in --out (alias --workdir): ds_XXX/observed.h5 + infer's outputs + result.json per dataset (a rerun
skips datasets whose result.json exists), datasets.csv, calibration.csv and sbc_ranks.png.
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default="DEFAULT", help="emulator .safetensors, exact:<protocol> or DEFAULT (the "
                    "shipped emulator of --protocol)")
    ap.add_argument("--protocol", default=None, help="with DEFAULT: the protocol (default gene_protein)")
    ap.add_argument("--datasets", type=int, default=50, help="number of prior draws / datasets (>= 50 for the benchmark)")
    ap.add_argument("--cells", type=int, default=1000, help="cells per dataset")
    ap.add_argument("--mode", choices=("likelihood", "simulator"), default="likelihood")
    ap.add_argument("--population", type=int, default=400)
    ap.add_argument("--generations", type=int, default=10, help="maximum generations (likelihood mode stops at T = 1)")
    ap.add_argument("--max-walltime", type=float, default=None, help="seconds per dataset's ABC run")
    ap.add_argument("--seed", type=int, default=0, help="prior draws, cells and ABC seeds derive from it")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="datasets run in parallel (default: cores)")
    ap.add_argument("--out", "--workdir", dest="out", default="runs/calibration")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    from surrogate_abc.inference.calibration import calibrate
    from surrogate_abc.inference.calibration.study import calibration_algorithm

    alg = calibration_algorithm(population=args.population, generations=args.generations, mode=args.mode,
                                max_walltime=args.max_walltime)
    text, paths = calibrate(args.emulator, args.datasets, args.cells, alg, seed=args.seed, jobs=args.jobs,
                            out=args.out, protocol=args.protocol, progress=not args.quiet)
    print(text)
    print(f"wrote {paths['calibration']}, {paths['datasets']} and {paths['sbc_ranks']}")
    return 1 if "failed" in paths else 0


if __name__ == "__main__":
    from _main import run

    run(main)
