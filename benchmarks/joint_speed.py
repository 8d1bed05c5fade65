"""Joint mRNA-protein `infer`: this tree against a baseline git revision, side by side, same seed.

Each run is a fresh process on one tree (this checkout, or the baseline checked out into a temporary git
worktree): the emulator's kernels are warmed up first (numba compiles them once per install and caches them),
then one ABC-SMC chain on the shipped joint example (1,000 cells, 669 occupied categories; population 500, at
most 10 generations, as `infer` runs), timed by benchmarks/infer_speed.py's phase wrappers, with the protein
example's chain for reference. The baseline runs twice (seeds s and s + 1) to give the Monte Carlo scale of
the posterior: the agreement of this tree's posterior with the baseline's is |a - b| / (baseline 90% interval
width) of the median and the 5%/95% quantiles, next to the same figure between the baseline's two seeds
(probabilities differ by float rounding, so the same seed does not give bit-identical chains). Then the whole
command (`infer`, 2 chains in parallel, outputs, plots and the exact check) in a fresh process per tree, after
one untimed run.

  python benchmarks/joint_speed.py [--baseline e5f6b71] [--population 500] [--generations 10] [--seed 1]
                                   [--threads 1] [--skip-cli]

The default baseline is the release before the conditional head was distilled (two 128-wide layers, the walk's
constants computed inside the kernel); 6878031 is the one before the walk. One thread per run by default: the
way `infer` runs a chain (forked chains one core each; an in-process chain one torch thread since then), and
on 2 cores a chain's emulator calls were slower with two threads (pyabc's work between them leaves the second
thread cold: 12.2 s against 9.6 s).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "e5f6b71"

CHAIN_CODE = """
import json, sys, warnings
tree, example, pop, gens, seed = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
sys.path[:0] = [tree, tree + "/benchmarks"]
warnings.simplefilter("ignore")
import numpy as np
from infer_speed import one_chain
from surrogate_abc.data.observed import load_observed
from surrogate_abc.emulators.resolve import resolve_emulator
em, _ = resolve_emulator(None, load_observed(f"{tree}/examples/observed_{example}.h5").species)
em.category_probs(em.protocol.sample(300, 0), np.arange(5))  # warm-up: kernels compiled or loaded from cache
r = one_chain(example, True, pop, gens, seed)
print(json.dumps({"wall": r["wall"], "emulator": r["phases"]["emulator"], "evaluations": r["evaluations"],
                  "generations": r["generations"], "names": list(r["names"]), "quantiles": r["quantiles"].tolist()}))
"""

CLI_CODE = """
import json, sys, time
t0 = time.perf_counter()
tree, data, out = sys.argv[1:4]
sys.path.insert(0, tree)
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
infer(data, out=out, chains=2, seed=1)
seconds["total"] = time.perf_counter() - t0
print(json.dumps(seconds))
"""


def _env(threads: int) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[k] = str(threads)
    return env


def chain(tree: Path, example: str, population: int, generations: int, seed: int, threads: int) -> dict:
    r = subprocess.run([sys.executable, "-c", CHAIN_CODE, str(tree), example, str(population), str(generations),
                        str(seed)], check=True, env=_env(threads), cwd=tree, capture_output=True, text=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["quantiles"] = np.asarray(out["quantiles"])
    return out


def cli_seconds(tree: Path, threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-c", CLI_CODE, str(tree), str(tree / "examples/observed_joint.h5")]
        for name in ("warm-up", "timed"):
            r = subprocess.run(args + [str(Path(tmp) / name)], check=True, env=_env(threads), cwd=tree,
                               capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=BASELINE, help="git revision to compare with (default %(default)s)")
    ap.add_argument("--population", type=int, default=500)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="threads of torch and numba per run (default 1)")
    ap.add_argument("--skip-cli", action="store_true", help="skip the whole-command timings")
    args = ap.parse_args()
    pop, gens, seed, th = args.population, args.generations, args.seed, args.threads
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.baseline],
                       check=True)
        try:
            runs = {
                f"joint, baseline {args.baseline}": chain(base, "joint", pop, gens, seed, th),
                "joint, this tree": chain(ROOT, "joint", pop, gens, seed, th),
                f"joint, baseline {args.baseline}, seed + 1": chain(base, "joint", pop, gens, seed + 1, th),
                "protein, this tree (reference)": chain(ROOT, "protein", pop, gens, seed, th),
            }
            clis = {} if args.skip_cli else {"baseline": cli_seconds(base, th), "this tree": cli_seconds(ROOT, th)}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    print(f"One chain, population {pop}, at most {gens} generations, seed {seed}; {th} threads, "
          f"{os.cpu_count()} cores.\n")
    print("| run | ABC wall s | emulator s | evaluations | emulator us / evaluation | generations |")
    print("|---|---|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {r['wall']:.1f} | {r['emulator']:.1f} | {r['evaluations']} | "
              f"{1e6 * r['emulator'] / r['evaluations']:.0f} | {r['generations']} |")
    b, c, b2 = list(runs.values())[:3]
    print(f"| speed-up (baseline / this tree, same seed) | {b['wall'] / c['wall']:.2f}x | "
          f"{b['emulator'] / c['emulator']:.2f}x | | {b['emulator'] / b['evaluations'] / (c['emulator'] / c['evaluations']):.2f}x | |")
    width = b["quantiles"][2] - b["quantiles"][0]
    print("\nPosteriors: |a - b| / (baseline 90% interval width) of the median, q05 and q95\n")
    print("| parameter | this tree vs baseline: median | q05 | q95 | baseline seed + 1 vs baseline: median | q05 | q95 |")
    print("|---|---|---|---|---|---|---|")
    for j, name in enumerate(b["names"]):
        d = np.abs(c["quantiles"][:, j] - b["quantiles"][:, j]) / width[j]
        e = np.abs(b2["quantiles"][:, j] - b["quantiles"][:, j]) / width[j]
        print(f"| {name} | {d[1]:.3f} | {d[0]:.3f} | {d[2]:.3f} | {e[1]:.3f} | {e[0]:.3f} | {e[2]:.3f} |")
    if clis:
        print("\nWhole command `infer examples/observed_joint.h5` in a fresh process (2 chains in parallel, outputs, "
              "plots, the exact check's defaults; after one untimed run):\n")
        print("| tree | total s | chains s |")
        print("|---|---|---|")
        for name, s in clis.items():
            print(f"| {name} | {s['total']:.1f} | {s['chains']:.1f} |")


if __name__ == "__main__":
    from _main import run

    run(main)
