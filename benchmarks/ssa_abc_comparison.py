"""ABC-SMC with gillespy2's SSA as the simulator against `infer` with an emulator: posteriors, wall time, model calls.

The datasets are the first --datasets calibration datasets (benchmarks/calibration.py, same --seed): parameter
sets drawn from the prior, --cells exact FSP draws each. Three ABC-SMC runs per dataset, all at --population:
  ssa         pyabc with a model that runs one gillespy2 SSA trajectory per parameter set and reads --cells
              near-independent samples from it (as surrogate_abc.simulate.ssa does; the C++ solver is compiled
              once per process), Hellinger distance between histograms on the protocol's edges, median epsilon,
              --generations generations, capped by --max-walltime;
  emu-sim     `infer --mode simulator` (the emulator draws --cells cells; same distance, same generations);
  emu-lik     `infer --mode likelihood` (exact ABC on the emulated likelihood; stops at temperature 1).
Reported: wall time, model calls, calls per second, and the distance of each emulator posterior's marginals to
the SSA-ABC posterior's (1-D Wasserstein distance on the feature scale, log10 for log-uniform parameters,
divided by the prior's width; and |difference of means| in SSA-posterior sds). The ratio of wall time per model
call is the headline speedup.

  python benchmarks/ssa_abc_comparison.py                                    # default emulator, 3 datasets
  python benchmarks/ssa_abc_comparison.py --emulator exact:gene_protein --population 100 --generations 3
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pyabc  # noqa: E402

from surrogate_abc.inference.calibration import study as cal  # noqa: E402
from surrogate_abc.inference.calibration.datasets import make_dataset  # noqa: E402
from surrogate_abc.inference.calibration.report import write_csv  # noqa: E402
from surrogate_abc.inference.calibration.stats import (  # noqa: E402
    to_feature,
    wasserstein_normalised,
    weighted_var,
)


class SSAHistogramModel(pyabc.Model):
    """pyabc model: theta -> one gillespy2 SSA trajectory -> normalised histogram on the protocol's edges
    (flattened, overflow last) under key 'h'. The compiled solver is created on first use in each process."""

    def __init__(self, protocol: Any, n_cells: int):
        super().__init__(name="gillespy2-ssa")
        self.protocol, self.n_cells = protocol, int(n_cells)
        self.edges = tuple(np.asarray(a.edges, float) for a in protocol.axes)
        self.caps = tuple(int(a.cap) for a in protocol.axes)
        self._sim = None

    def simulator(self):
        """The process's SSASimulator (compiled on first use)."""
        if self._sim is None:
            from surrogate_abc.simulate.ssa import SSASimulator

            self._sim = SSASimulator(self.protocol.network, self.protocol.species)
        return self._sim

    def compile(self) -> float:
        """Compile the C++ solver now (at the prior's centre); returns the seconds it took."""
        t0 = time.perf_counter()
        theta = self.protocol.bounds().mean(axis=1)[None, :]
        rates = dict(zip(self.protocol.rate_names, self.protocol.rates(theta)[0]))
        init = dict(zip(self.protocol.network.species, self.protocol.initial_state(theta)[0]))
        self.simulator().ensure_compiled(rates, init)
        return time.perf_counter() - t0

    def histogram(self, theta: np.ndarray, seed: int) -> np.ndarray:
        """Normalised histogram (bins..., overflow) of n_cells SSA samples at theta (d,)."""
        from surrogate_abc.emulators.exact import bin_integer_pmf

        theta = np.atleast_2d(theta)
        rates = dict(zip(self.protocol.rate_names, self.protocol.rates(theta)[0]))
        init = dict(zip(self.protocol.network.species, self.protocol.initial_state(theta)[0]))
        grid, overflow, _ = self.simulator().histogram(rates, init, self.n_cells, self.protocol.ssa.burn_in_intervals,
                                                       seed, self.caps)
        binned, _ = bin_integer_pmf(grid.astype(float) / self.n_cells, self.edges)
        flat = binned.ravel()
        return np.append(flat, max(1.0 - flat.sum(), 0.0))

    def sample(self, pars) -> dict:
        from surrogate_abc.inference.priors import natural_values, prior_box

        # pyabc samples log-uniform parameters as log10_<name> (as `infer` does)
        theta = natural_values(prior_box(self.protocol), pars, self.protocol.param_names)
        seed = int(np.random.randint(1, 2**31 - 1))  # pyabc seeds numpy's global generator per worker
        return {"h": self.histogram(theta, seed)}


def run_ssa_abc(protocol: Any, obs_path: Path, population: int, generations: int, max_walltime: float | None,
                seed: int, db: Path, sampler: str, n_procs: int | None) -> dict[str, Any]:
    """ABC-SMC with the SSA model on one observed.h5; returns posterior samples, weights, calls, wall time."""
    from surrogate_abc.data.observed import load_observed, observed_histogram
    from surrogate_abc.inference.priors import natural_values, prior_box, pyabc_prior
    from surrogate_abc.inference.pyabc_bridge.parts import HistogramDistance, observed_sumstat
    from surrogate_abc.inference.pyabc_bridge.samplers import make_sampler

    model = SSAHistogramModel(protocol, 0)
    obs = load_observed(obs_path)
    model.n_cells = obs.n_cells
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist, overflow = observed_histogram(obs, model.edges)
    compile_s = model.compile()  # before forking workers, so they share the executable
    np.random.seed(seed % 2**32)
    if db.exists():
        db.unlink()
    abc = pyabc.ABCSMC(model, pyabc_prior(prior_box(protocol)), HistogramDistance("hellinger"),
                       population_size=population, sampler=make_sampler(sampler, n_procs), eps=pyabc.MedianEpsilon())
    abc.new(f"sqlite:///{db.resolve()}", observed_sumstat("simulator", hist, overflow))
    abc.history.stores_sum_stats = False
    t0 = time.perf_counter()
    h = abc.run(max_nr_populations=generations,
                max_walltime=timedelta(seconds=max_walltime) if max_walltime else None)
    wall = time.perf_counter() - t0
    df, w = h.get_distribution(m=0)  # wall: the ABC loop, as the emulator runs' (their infer total is reported apart)
    pops = h.get_all_populations()
    nat = natural_values(prior_box(protocol), df, protocol.param_names)
    return {"params": {k: nat[:, j] for j, k in enumerate(protocol.param_names)}, "weights": np.asarray(w) / np.sum(w),
            "calls": int(h.total_nr_simulations), "wall": wall, "total": wall + compile_s, "generations": int(h.max_t + 1),
            "final_eps": float(pops["epsilon"].iloc[-1]), "compile_s": compile_s}


def run_emulator(obs_path: Path, emulator: str | None, mode: str, population: int, generations: int,
                 max_walltime: float | None, seed: int, out: Path, sampler: str, n_procs: int | None) -> dict[str, Any]:
    """`infer` on one observed.h5; returns the weighted final population, calls (from abc.db), wall time."""
    from surrogate_abc.inference.infer import infer
    from surrogate_abc.inference.run import InferenceSettings

    settings = InferenceSettings(mode=mode, population=population, generations=generations, max_walltime=max_walltime,
                                 sampler=sampler, n_procs=n_procs, seed=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        infer(obs_path, emulator, settings, out, command=f"benchmarks/ssa_abc_comparison.py {mode}", log=lambda _m: None)
    wall = time.perf_counter() - t0
    idata, post, w = cal.load_weighted_posterior(out)
    eps = idata.sample_stats["epsilon"].values
    rid = int(np.atleast_1d(idata.sample_stats["run_id"].values)[0])
    calls = int(pyabc.History(f"sqlite:///{(out / 'abc.db').resolve()}", _id=rid, create=False).total_nr_simulations)
    abc_wall = idata.sample_stats["wall_time"].values
    return {"params": post, "weights": w, "calls": calls, "wall": float(abc_wall[np.isfinite(abc_wall)][-1]),
            "total": wall, "generations": int(np.isfinite(eps).sum()), "final_eps": float(eps[np.isfinite(eps)][-1])}


def compare(ref: dict[str, Any], other: dict[str, Any], box: dict[str, tuple[str, float, float]]) -> dict[str, float]:
    """Per parameter: W1 / prior width and |mean difference| / ref sd, on the feature scale."""
    out = {}
    for k, (kind, lo, hi) in box.items():
        x, y = to_feature(kind, ref["params"][k]), to_feature(kind, other["params"][k])
        width = float(to_feature(kind, hi) - to_feature(kind, lo))
        out[f"W1_{k}"] = wasserstein_normalised(x, ref["weights"], y, other["weights"], width)
        sd = np.sqrt(weighted_var(x, ref["weights"]))
        out[f"dmean_{k}"] = abs(np.average(x, weights=ref["weights"]) - np.average(y, weights=other["weights"])) / max(sd, 1e-300)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default=None, help="emulator .safetensors or exact:<protocol> (default: shipped)")
    ap.add_argument("--protocol", default=None, help="protocol of the datasets and the SSA (default as calibration.py)")
    ap.add_argument("--datasets", type=int, default=3, help="the first N calibration datasets")
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--population", type=int, default=150)
    ap.add_argument("--generations", type=int, default=4, help="generations of the SSA and emulator-simulator runs")
    ap.add_argument("--lik-generations", type=int, default=10, help="maximum generations of the likelihood run")
    ap.add_argument("--max-walltime", type=float, default=1800.0, help="seconds per SSA-ABC run (cap)")
    ap.add_argument("--sampler", choices=("single", "multicore"), default="single",
                    help="pyabc sampler of all three runs (single: one core each, a per-core comparison)")
    ap.add_argument("--n-procs", type=int, default=None, help="multicore: processes")
    ap.add_argument("--seed", type=int, default=0, help="as calibration.py --seed (same datasets)")
    ap.add_argument("--workdir", default="runs/ssa_abc")
    ap.add_argument("--fresh", action="store_true",
                    help="recompute datasets whose result.json is already in --workdir (default: reuse them)")
    args = ap.parse_args(argv)
    from surrogate_abc.inference.priors import prior_box

    logging.getLogger("ABC").setLevel(logging.WARNING)
    import arviz

    from surrogate_abc.inference.output import arviz_logger

    arviz_logger(arviz).setLevel(logging.ERROR)  # single-chain runs: r_hat is undefined, no need to say so per run
    protocol = cal.resolve_target(args.emulator, args.protocol)[1].protocol
    box = prior_box(protocol)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    thetas = protocol.sample(args.datasets, args.seed)
    rows: list[dict[str, Any]] = []
    print(f"{args.datasets} dataset(s) of {args.cells} cells ({protocol.name}); population {args.population}; sampler "
          f"{args.sampler}; SSA and emulator-simulator <= {args.generations} generations, SSA capped at "
          f"{args.max_walltime:.0f} s; emulator {args.emulator or 'default'}", flush=True)
    for i, theta in enumerate(thetas):
        d = work / f"ds_{i:03d}"
        d.mkdir(exist_ok=True)
        obs = d / "observed.h5"
        done = d / "result.json"
        if done.exists() and not args.fresh:
            rows.extend(json.loads(done.read_text()))
            print(f"dataset {i}: reusing {done} (--fresh recomputes it)", flush=True)
            continue
        make_dataset(protocol, theta, i, args.seed, args.cells, obs)
        seed = args.seed * 100_003 + i
        runs = {}
        print(f"dataset {i}: truth " + ", ".join(f"{k}={v:.4g}" for k, v in zip(protocol.param_names, theta)), flush=True)
        runs["ssa"] = run_ssa_abc(protocol, obs, args.population, args.generations, args.max_walltime, seed,
                                  d / "ssa_abc.db", args.sampler, args.n_procs)
        print(f"  ssa      {runs['ssa']['wall']:.1f} s (+{runs['ssa']['compile_s']:.1f} s compile), "
              f"{runs['ssa']['calls']} calls", flush=True)
        for name, mode, gens in (("emu-sim", "simulator", args.generations), ("emu-lik", "likelihood", args.lik_generations)):
            runs[name] = run_emulator(obs, args.emulator, mode, args.population, gens, None, seed, d / name,
                                      args.sampler, args.n_procs)
            print(f"  {name:<8} {runs[name]['wall']:.1f} s ABC ({runs[name]['total']:.1f} s whole infer), "
                  f"{runs[name]['calls']} calls", flush=True)
        for name, r in runs.items():
            row = {"dataset": i, "method": name, "wall_s": r["wall"], "total_s": r["total"], "calls": r["calls"],
                   "ms_per_call": 1000 * r["wall"] / max(r["calls"], 1), "generations": r["generations"],
                   "final_eps": r["final_eps"]}
            cmp = compare(runs["ssa"], r, box) if name != "ssa" else {}
            row["W1_mean"] = float(np.mean([v for k, v in cmp.items() if k.startswith("W1_")])) if cmp else float("nan")
            row.update(cmp)
            rows.append(row)
        (d / "result.json").write_text(json.dumps([r for r in rows if r["dataset"] == i], indent=1))
    write_csv(work / "comparison.csv", rows)
    names = protocol.param_names
    head = (f"{'ds':>3} {'method':<8}{'ABC s':>9}{'total s':>9}{'calls':>8}{'ms/call':>10}{'gens':>5}{'final eps/T':>12}"
            f"{'W1/width':>9}" + "".join(f"{'W1 ' + k[:9]:>13}" for k in names) + f"{'max |dmean|/sd':>15}")
    print(head)
    for r in rows:
        w1 = "".join(f"{r.get('W1_' + k, float('nan')):>13.3f}" for k in names)
        dm = max((r.get("dmean_" + k, float("nan")) for k in names), default=float("nan"))
        print(f"{r['dataset']:>3} {r['method']:<8}{r['wall_s']:>9.1f}{r['total_s']:>9.1f}{r['calls']:>8d}{r['ms_per_call']:>10.2f}"
              f"{r['generations']:>5d}{r['final_eps']:>12.4g}{r['W1_mean']:>9.3f}{w1}{dm:>15.2f}")
    by = {m: [r for r in rows if r["method"] == m] for m in ("ssa", "emu-sim", "emu-lik")}
    ssa_ms = np.mean([r["ms_per_call"] for r in by["ssa"]])
    for m in ("emu-sim", "emu-lik"):
        ms = np.mean([r["ms_per_call"] for r in by[m]])
        wall_ratio = np.mean([a["wall_s"] / b["wall_s"] for a, b in zip(by["ssa"], by[m])])
        print(f"speedup {m}: {ssa_ms / ms:.1f}x per model call ({ssa_ms:.1f} vs {ms:.2f} ms), "
              f"{wall_ratio:.1f}x in ABC wall time (mean over datasets)")
    print("ABC s: the ABC-SMC loop; total s: SSA loop + solver compilation, or the whole `infer` (data checks, "
          "posterior.nc, plots); W1/width: vs the SSA-ABC posterior, feature scale (log10 for log-uniform)")
    print(f"wrote {work / 'comparison.csv'}")
    return 0


if __name__ == "__main__":
    from _main import run

    run(main)
