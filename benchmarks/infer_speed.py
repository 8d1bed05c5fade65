"""Where the time of `infer` goes, pyabc's stock per-particle path against the fast path, side by side.

For the shipped protein example (in likelihood and in simulator mode), the joint one and a multi-gene mRNA
table (when the mRNA emulator is installed) it runs one ABC-SMC chain with each path in this process, timing
the phases by wrapping the functions that do them (this script's own wrappers; nothing in the package is timed):

  proposal   drawing the proposals (samplers.bulk_proposals / pyabc's generate_valid_proposal)
  emulator   the emulator's probabilities (EmulatorModel.evaluate / .probabilities)
  weights    prior and transition densities: the accepted particles' weights and the Temperature schedule's
             records of every particle (pyabc's _prior_pdf/_transition_pdf, or pyabc_bridge.densities' prefill/resolve)
  storage    History.append_population
  other      the rest of ABCSMC.run (acceptance, epsilon, fitting the transition, pyabc's bookkeeping)

then the whole command line (start-up and imports, 2 chains, outputs and plots) in a subprocess per path, and
checks that the two posteriors agree (medians and 5%/95% quantiles, relative to the 90% interval width; with
the same seed the fast path reproduces the stock path's proposals, so they agree to rounding).
  python benchmarks/infer_speed.py [--population 500] [--generations 10] [--skip-joint] [--skip-simulator] [--skip-cli] [--genes]
"""
from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyabc  # noqa: E402
import pyabc.inference_util.inference_util as iu  # noqa: E402

from surrogate_abc.data.observed import load_observed, observed_histogram, select_species  # noqa: E402
from surrogate_abc.emulators.resolve import resolve_emulator  # noqa: E402
from surrogate_abc.inference.pyabc_bridge import batched_samplers as samplers  # noqa: E402
from surrogate_abc.inference.pyabc_bridge import densities as batched_abc  # noqa: E402
from surrogate_abc.inference.pyabc_bridge import parts as abc_parts  # noqa: E402
from surrogate_abc.inference.run import InferenceSettings, run_chains  # noqa: E402

EXAMPLES = {"protein": ("examples/observed_protein.h5", "likelihood"), "joint": ("examples/observed_joint.h5", "likelihood"),
            "protein, simulator mode": ("examples/observed_protein.h5", "simulator")}
PHASES = ("proposal", "emulator", "weights", "storage")


class Clock:
    """Seconds and calls per phase, accumulated by wrapped functions (nested phases count once)."""

    def __init__(self):
        self.seconds, self.calls, self.depth = defaultdict(float), defaultdict(int), 0

    def wrap(self, phase: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - t0
                self.calls[phase] += 1
                self.depth -= 1
        return timed


def instrument(clock: Clock) -> list:
    """Wrap the phase functions (module attributes and methods); returns what to restore."""
    targets = [
        (samplers, "bulk_proposals", "proposal"), (samplers, "_one_proposal", "proposal"),
        (abc_parts.EmulatorModel, "evaluate", "emulator"),
        (iu, "_prior_pdf", "weights"), (iu, "_transition_pdf", "weights"),
        (batched_abc._CachedDensity, "prefill", "weights"), (batched_abc.DeferredWeights, "resolve", "weights"),
        (pyabc.History, "append_population", "storage"),
    ]
    saved = []
    for owner, name, phase in targets:
        orig = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        saved.append((owner, name, orig))
        setattr(owner, name, clock.wrap(phase, orig))
    return saved


def restore(saved: list) -> None:
    for owner, name, orig in saved:
        setattr(owner, name, orig)


def one_chain(example: str, fast: bool, population: int, generations: int, seed: int) -> dict:
    path = ROOT / EXAMPLES[example][0]
    emulator, _ = resolve_emulator(None, load_observed(path).species)
    observed = select_species(load_observed(path, tuple(emulator.species)), tuple(emulator.species))
    hist, overflow = observed_histogram(observed, tuple(emulator.edges))
    settings = InferenceSettings(mode=EXAMPLES[example][1], population=population, generations=generations, chains=1,
                                 seed=seed, fast=fast)
    clock = Clock()
    saved = instrument(clock)
    n_eval, depth = [0], [0]
    inner_p, inner_e = abc_parts.EmulatorModel.probabilities, abc_parts.EmulatorModel.evaluate

    def counted(fn):
        def wrapper(self, theta):  # parameter sets given to the emulator (evaluate calls probabilities: once)
            if not depth[0]:
                n_eval[0] += len(np.atleast_2d(theta))
            depth[0] += 1
            try:
                return fn(self, theta)
            finally:
                depth[0] -= 1
        return wrapper

    abc_parts.EmulatorModel.probabilities = clock.wrap("emulator", counted(inner_p))
    abc_parts.EmulatorModel.evaluate = clock.wrap("emulator", counted(abc_parts.EmulatorModel.evaluate))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            (chain,) = run_chains([emulator], hist, overflow, settings, Path(tmp) / "abc.db", log=lambda _m: None)
            wall = time.perf_counter() - t0
    finally:
        abc_parts.EmulatorModel.probabilities, abc_parts.EmulatorModel.evaluate = inner_p, inner_e
        restore(saved)
    phases = {p: clock.seconds[p] for p in PHASES}
    phases["other"] = wall - sum(phases.values())
    idx = np.random.default_rng(0).choice(len(chain.weights), size=4000, p=chain.weights)
    draws = chain.params[idx]
    return {"wall": wall, "phases": phases, "evaluations": n_eval[0], "generations": len(chain.epsilon),
            "ess": float(chain.ess[-1]), "names": emulator.param_names,
            "quantiles": np.quantile(draws, [0.05, 0.5, 0.95], axis=0)}


CLI_CODE = """
import json, sys, time
t0 = time.perf_counter()
import surrogate_abc.inference.infer as I
import surrogate_abc.inference.output as O
from surrogate_abc.api import infer
seconds = {"imports": time.perf_counter() - t0}

def timed(mod, name, phase):
    fn = getattr(mod, name)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start
    setattr(mod, name, wrapper)

timed(I, "run_chains", "chains")
timed(O, "build_inference_data", "outputs")
timed(O, "write_outputs", "outputs")
timed(I, "exact_followups", "exact check")
infer(sys.argv[2], out=sys.argv[1], chains=2, seed=int(sys.argv[3]), fast=sys.argv[4] == "fast",
      chain_jobs=None if sys.argv[4] == "fast" else 1)
seconds["total"] = time.perf_counter() - t0
print(json.dumps(seconds))
"""
CLI_PHASES = ("imports", "chains", "outputs", "exact check")


def cli_wall(example: str, fast: bool, seed: int = 1) -> dict[str, float]:
    """Seconds of the whole command in a fresh process (2 chains): total and its phases (start-up and imports,
    the chains, outputs: posterior.nc, summary and plots, the exact check, and the rest)."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        r = subprocess.run([sys.executable, "-c", CLI_CODE, tmp, str(ROOT / EXAMPLES[example][0]), str(seed),
                            "fast" if fast else "stock"], check=True, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = json.loads(r.stdout.strip().splitlines()[-1])
    seconds["other"] = seconds["total"] - sum(seconds.get(p, 0.0) for p in CLI_PHASES)
    return seconds


def genes_rate(population: int, jobs: int) -> tuple[float, int, float] | None:
    """(genes per minute, genes, seconds) of `infer examples/genes/genes.csv` with the default mRNA emulator."""
    from surrogate_abc.emulators.resolve import RESOURCES

    if not (RESOURCES / "telegraph_mrna.safetensors").is_file():
        return None
    table = ROOT / "examples" / "genes" / "genes.csv"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "surrogate_abc", "infer", str(table), "--population", str(population),
                        "--chains", "2", "--jobs", str(jobs), "--no-plots", "--quiet", "--out", tmp], check=True,
                       cwd=ROOT, capture_output=True)
        seconds = time.perf_counter() - t0
        n = sum(1 for _ in open(Path(tmp) / "genes.csv")) - 1
    return 60.0 * n / seconds, n, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--population", type=int, default=500)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-joint", action="store_true")
    ap.add_argument("--skip-simulator", action="store_true", help="skip the protein example in simulator mode")
    ap.add_argument("--skip-cli", action="store_true", help="skip the whole-command timings")
    ap.add_argument("--genes", action="store_true", help="also time the multi-gene example (needs the mRNA emulator)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # the examples' notes (cells beyond the last edge) are not the subject here
    examples = ["protein"] + ([] if args.skip_joint else ["joint"]) + ([] if args.skip_simulator else ["protein, simulator mode"])
    print(f"One chain, population {args.population}, at most {args.generations} generations, seed {args.seed}; "
          f"{os.cpu_count()} cores.\n")
    print("| example | path | ABC wall s | " + " | ".join(PHASES) + " | other | evaluations | evals / s of ABC wall |")
    print("|---|---|---|" + "---|" * (len(PHASES) + 3))
    runs = {}
    for ex in examples:
        for fast in (False, True):
            r = one_chain(ex, fast, args.population, args.generations, args.seed)
            runs[ex, fast] = r
            ph = r["phases"]
            print(f"| {ex} | {'fast' if fast else 'stock'} | {r['wall']:.2f} | "
                  + " | ".join(f"{ph[p]:.2f}" for p in PHASES)
                  + f" | {ph['other']:.2f} | {r['evaluations']} | {r['evaluations'] / r['wall']:.3g} |")
        print(f"| {ex} | speed-up | {runs[ex, False]['wall'] / runs[ex, True]['wall']:.1f}x |" + " |" * (len(PHASES) + 3))
    print("\nAgreement of the posteriors (|fast - stock| / stock 90% interval width), final ESS:\n")
    print("| example | parameter | median | q05 | q95 | ESS stock | ESS fast |")
    print("|---|---|---|---|---|---|---|")
    for ex in examples:
        s, f = runs[ex, False], runs[ex, True]
        width = s["quantiles"][2] - s["quantiles"][0]
        for j, name in enumerate(s["names"]):
            d = np.abs(f["quantiles"][:, j] - s["quantiles"][:, j]) / width[j]
            print(f"| {ex} | {name} | {d[1]:.3g} | {d[0]:.3g} | {d[2]:.3g} | {s['ess']:.0f} | {f['ess']:.0f} |")
    if not args.skip_cli:
        print("\nWhole command in a fresh process (2 chains; outputs: posterior.nc, summary, plots; other: loading the "
              "emulator and the data, checks):\n")
        print("| example | path | total s | " + " | ".join(CLI_PHASES) + " | other |")
        print("|---|---|---|" + "---|" * (len(CLI_PHASES) + 1))
        for ex in examples[:2]:  # likelihood mode, what `infer` runs by default
            walls = {}
            for fast in (False, True):
                w = walls[fast] = cli_wall(ex, fast)
                print(f"| {ex} | {'fast' if fast else 'stock'} | {w['total']:.1f} | "
                      + " | ".join(f"{w.get(p, 0.0):.1f}" for p in CLI_PHASES) + f" | {w['other']:.1f} |")
            print(f"| {ex} | speed-up | {walls[False]['total'] / walls[True]['total']:.1f}x |" + " |" * (len(CLI_PHASES) + 1))
    if args.genes:
        g = genes_rate(args.population, args.jobs)
        if g is None:
            print("\n(no mRNA emulator installed: genes skipped)")
        else:
            print(f"\nGenes: {g[1]} genes x 300 cells, population {args.population}, 2 chains, {args.jobs} jobs, no plots: "
                  f"{g[2]:.1f} s, {g[0]:.1f} genes per minute.")


if __name__ == "__main__":
    from _main import run

    run(main)
