"""Joint mRNA-protein `infer`: the conditional MDN's category-only likelihood against the grid path it replaced.

Both paths run in this process, side by side, on the shipped joint example (1,000 cells, 669 occupied categories)
with the same seed: one ABC-SMC chain each (population 500, at most 10 generations, as `infer` runs), and the
protein example's chain for reference. The grid path is the previous `ConditionalMDN.category_probs`: each
occupied mRNA bin's protein pmf on every integer up to the last protein bin asked, summed into bins, ~5 parameter
sets per call (its work per row sized the chunks), and the overflow category by a full forward pass (1 - sum
in float32). This script switches it in by replacing the class's methods for the "grid" runs (its own patch;
nothing in the package knows about it). Then the whole command (2 chains, outputs and plots) in a fresh
process per path, and the agreement of the posteriors: |new - grid| / (grid 90% interval width) of the
median and the 5%/95% quantiles, next to the same figure between two seeds of the grid path (the Monte Carlo
scale: probabilities differ by float rounding, ~1e-5 relative, so the chains are not bit-identical).

  python benchmarks/joint_speed.py [--population 500] [--generations 10] [--seed 1] [--skip-cli]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from infer_speed import one_chain  # noqa: E402

from surrogate_abc.emulators.conditional import ConditionalMDN  # noqa: E402


@contextlib.contextmanager
def grid_path():
    """ConditionalMDN with its previous likelihood path: grid category_probs, no exact overflow, chunks sized by
    work_per_row."""
    saved = {k: ConditionalMDN.__dict__[k] for k in ("category_probs", "exact_overflow", "category_work")}
    ConditionalMDN.category_probs = ConditionalMDN._category_probs_grid
    ConditionalMDN.exact_overflow = property(lambda self: False)
    del ConditionalMDN.category_work
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(ConditionalMDN, k, v)


CLI_CODE = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[4])
import joint_speed
from surrogate_abc.api import infer
import surrogate_abc.inference.infer as I
seconds = {}
run_chains = I.run_chains
def timed(*a, **k):
    s = time.perf_counter()
    try:
        return run_chains(*a, **k)
    finally:
        seconds["chains"] = time.perf_counter() - s
I.run_chains = timed
ctx = joint_speed.grid_path() if sys.argv[3] == "grid" else joint_speed.contextlib.nullcontext()
with ctx:
    infer(sys.argv[2], out=sys.argv[1], chains=2, seed=1)
seconds["total"] = time.perf_counter() - t0
print(json.dumps(seconds))
"""


def cli_seconds(path: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        r = subprocess.run([sys.executable, "-c", CLI_CODE, tmp, str(ROOT / "examples/observed_joint.h5"), path,
                            str(ROOT / "benchmarks")], check=True, env=env, cwd=ROOT, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--population", type=int, default=500)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-cli", action="store_true", help="skip the whole-command timings")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    pop, gens, seed = args.population, args.generations, args.seed
    runs = {}
    with grid_path():
        runs["grid"] = one_chain("joint", True, pop, gens, seed)
        runs["grid, seed + 1"] = one_chain("joint", True, pop, gens, seed + 1)
    runs["categories"] = one_chain("joint", True, pop, gens, seed)
    runs["protein (reference)"] = one_chain("protein", True, pop, gens, seed)
    print(f"One chain, population {pop}, at most {gens} generations, seed {seed}; {os.cpu_count()} cores.\n")
    print("| run | ABC wall s | emulator s | evaluations | emulator us / evaluation | generations |")
    print("|---|---|---|---|---|---|")
    for name, r in runs.items():
        em = r["phases"]["emulator"]
        print(f"| {name} | {r['wall']:.1f} | {em:.1f} | {r['evaluations']} | {1e6 * em / r['evaluations']:.0f} | "
              f"{r['generations']} |")
    print(f"| speed-up (grid / categories, same seed) | {runs['grid']['wall'] / runs['categories']['wall']:.1f}x | "
          f"{runs['grid']['phases']['emulator'] / runs['categories']['phases']['emulator']:.1f}x | | | |")
    g, c, g2 = runs["grid"], runs["categories"], runs["grid, seed + 1"]
    width = g["quantiles"][2] - g["quantiles"][0]
    print("\nPosteriors: |a - b| / (grid 90% interval width) of the median, q05 and q95\n")
    print("| parameter | categories vs grid: median | q05 | q95 | grid seed + 1 vs grid: median | q05 | q95 |")
    print("|---|---|---|---|---|---|---|")
    for j, name in enumerate(g["names"]):
        d = np.abs(c["quantiles"][:, j] - g["quantiles"][:, j]) / width[j]
        e = np.abs(g2["quantiles"][:, j] - g["quantiles"][:, j]) / width[j]
        print(f"| {name} | {d[1]:.3f} | {d[0]:.3f} | {d[2]:.3f} | {e[1]:.3f} | {e[0]:.3f} | {e[2]:.3f} |")
    if not args.skip_cli:
        print("\nWhole command `infer examples/observed_joint.h5` in a fresh process (2 chains in parallel, outputs, "
              "plots, the exact check's defaults):\n")
        print("| path | total s | chains s |")
        print("|---|---|---|")
        for path in ("grid", "categories"):
            s = cli_seconds(path)
            print(f"| {path} | {s['total']:.1f} | {s['chains']:.1f} |")


if __name__ == "__main__":
    main()
