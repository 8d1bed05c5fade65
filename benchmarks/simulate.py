"""Benchmark of the simulate stage; prints one table.

  seconds per parameter set and events/s of the gillespy2 C++ SSA at S = 1e4 and 1e5 samples,
  seconds per set of the exact FSP solver, TV distance between the SSA (S = 1e5) and FSP protein histograms,
  binning throughput of count_grid vs numpy.histogram, and the 2-rank / 1-rank speedup of `simulate`.

Events are not reported by gillespy2; they are estimated as (stationary total propensity) x (simulated time).
Run: .venv/bin/python benchmarks/simulate.py [--quick]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from surrogate_abc import GENE
from surrogate_abc.config import FSPSettings
from surrogate_abc.metrics import total_variation
from surrogate_abc.simulate import SSASimulator, count_grid, sampling_interval, set_seed
from surrogate_abc.simulate.fsp import solve_stationary

RATES = {"k0": 0.5, "k1": 0.5, "v0": 2.0, "d0": 1.0, "v1": 5.0, "d1": 0.5}
INIT = {"gene_off": 0, "gene_on": 1, "mrna": 1, "protein": 10}
CAP = 300
BURN = 10


def events_per_time(rates: dict[str, float]) -> float:
    """Stationary mean total propensity (events per unit time) of the gene model."""
    (g, m, p), _ = GENE.stationary_moments(rates)
    return (rates["k0"] * (1 - g) + rates["k1"] * g + rates["v0"] * g + rates["d0"] * m + rates["v1"] * m
            + rates["d1"] * p)


def ssa_row(sim: SSASimulator, samples: int, reps: int) -> tuple[float, float, np.ndarray]:
    """(median seconds per set, events/s, last protein series)."""
    times, series = [], None
    for r in range(reps):
        t0 = time.perf_counter()
        series = sim.trajectory(RATES, INIT, samples, BURN, seed=set_seed(0, r))[:, 0]
        times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    sim_time = (BURN + samples) * sampling_interval(GENE, RATES)
    return sec, events_per_time(RATES) * sim_time / sec, series


def mpi_speedup(n: int, samples: int) -> tuple[float, float]:
    """Wall seconds of `simulate seed_protein` with 1 and 2 ranks (compile included)."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    out = []
    with tempfile.TemporaryDirectory() as d:
        for prefix in ([], [str(mpiexec), "-n", "2"]):
            t0 = time.perf_counter()
            subprocess.run([*prefix, sys.executable, "-m", "surrogate_abc", "simulate", "seed_protein", "--n", str(n),
                            "--samples", str(samples), "--out", f"{d}/r{len(prefix)}.h5", "--quiet"], check=True,
                           capture_output=True)
            out.append(time.perf_counter() - t0)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and a smaller MPI run")
    a = ap.parse_args()
    reps = 1 if a.quick else 3
    sim = SSASimulator(GENE, ("protein",))
    t0 = time.perf_counter()
    sim.ensure_compiled(RATES, INIT)
    compile_s = time.perf_counter() - t0
    rows = [("SSA compile (once per process) [s]", f"{compile_s:.2f}")]
    for S in (10_000, 100_000):
        sec, eps, series = ssa_row(sim, S, reps)
        rows += [(f"SSA S={S:.0e}: s/set", f"{sec:.3f}"), (f"SSA S={S:.0e}: events/s (estimated)", f"{eps:.3g}")]
    t0 = time.perf_counter()
    fsp = solve_stationary(GENE, RATES, ["protein"], [CAP], FSPSettings())
    rows.append(("FSP protein (cap 300): s/set", f"{time.perf_counter() - t0:.3f}"))
    grid, over = count_grid(series[:, None], [CAP])
    emp = np.append(grid, over) / series.size
    ref = np.append(fsp.pmf, fsp.overflow)
    rows.append(("TV(SSA S=1e5, FSP)", f"{total_variation(emp, ref):.4f}"))
    x = np.random.default_rng(0).poisson(50, size=(2_000_000, 2))
    t0 = time.perf_counter()
    count_grid(x[:, :1], [CAP])
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.histogram(x[:, 0], bins=np.arange(CAP + 1))
    t_np = time.perf_counter() - t0
    rows += [("binning 1-D count_grid [samples/s]", f"{x.shape[0] / t_ours:.3g}"),
             ("binning 1-D numpy.histogram [samples/s]", f"{x.shape[0] / t_np:.3g}")]
    t0 = time.perf_counter()
    count_grid(x, [200, 600])
    t_ours2 = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.histogram2d(x[:, 0], x[:, 1], bins=[np.arange(201), np.arange(601)])
    t_np2 = time.perf_counter() - t0
    rows += [("binning 2-D count_grid [samples/s]", f"{x.shape[0] / t_ours2:.3g}"),
             ("binning 2-D numpy.histogram2d [samples/s]", f"{x.shape[0] / t_np2:.3g}")]
    n, s = (4, 2000) if a.quick else (16, 10_000)
    t1, t2 = mpi_speedup(n, s)
    rows += [(f"simulate seed_protein n={n} S={s}: 1 rank [s]", f"{t1:.1f}"),
             (f"simulate seed_protein n={n} S={s}: 2 ranks [s]", f"{t2:.1f}"),
             ("2-rank / 1-rank speedup", f"{t1 / t2:.2f}")]
    w = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{w}}  {v}" for k, v in rows))


if __name__ == "__main__":
    from _main import run

    run(main)
