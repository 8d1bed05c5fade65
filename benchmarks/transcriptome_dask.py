"""The batch method on dask workers (`--scheduler`): wall time from one process to 1 and 2 local worker processes,
and the results checked equal.

One table: --genes genes (default 400, truth from the whole telegraph_mrna prior, seeded) x --cells cells
(default 2000, exact Beta-Poisson cells: x ~ Beta(k0, k1), n ~ Poisson(v0 x)) in a CSV, inferred by the whole
command `surrogate-abc infer TABLE --block-size B` with the shipped telegraph_mrna emulator (exact:telegraph_mrna
where it is not installed): on this machine in one process, with `--scheduler local:1` and with `--scheduler
local:2` (worker processes of one dask thread each, started and closed by the command, their start-up included
in the wall time); each with torch's default threads (all cores; the workers use the client's count, so each of
local:2's two workers has as many) and with OMP_NUM_THREADS=1 (client and workers one thread each: the setting
for a cluster). Prints wall seconds, genes per minute and the speed-up over one process and over local:1, then
checks genes.csv (every column but `seconds`, each block's measured time) and posterior.nc's draws are identical
to the one-process run's of the same thread setting. --repeat R times each run and keeps the fastest (the machine
may be shared: the 1-minute load average before each run is printed too).

  python benchmarks/transcriptome_dask.py                      # 400 genes x 2000 cells, --block-size 25
  python benchmarks/transcriptome_dask.py --genes 2000 --workers 1,2,4 --threads 1
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transcriptome import draw_truth  # noqa: E402


def write_table(path: Path, truth: np.ndarray, n_cells: int, rng: np.random.Generator) -> None:
    cols = [rng.poisson(v0 * rng.beta(k0, k1, size=n_cells)) for k0, k1, v0 in truth]
    with path.open("w") as fh:
        fh.write(",".join(f"gene{g:05d}" for g in range(len(truth))) + "\n")
        np.savetxt(fh, np.stack(cols, axis=1), fmt="%d", delimiter=",")


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]


def draws_of(out: Path) -> dict[str, np.ndarray]:
    import arviz as az

    idata = az.from_netcdf(str(out / "posterior.nc"))
    draws = {v: idata.posterior[v].values.copy() for v in idata.posterior.data_vars}
    idata.close()
    return draws


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genes", type=int, default=400)
    p.add_argument("--cells", type=int, default=2000)
    p.add_argument("--block-size", type=int, default=25, help="genes per block, the unit sent to a worker")
    p.add_argument("--workers", default="1,2", help="local worker processes to time, comma-separated")
    p.add_argument("--threads", default="default,1",
                   help="torch threads of the client (and so of the workers): 'default' (all cores) and/or numbers "
                        "(OMP_NUM_THREADS), comma-separated")
    p.add_argument("--repeat", type=int, default=1, help="time each run this many times, keep the fastest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="folder for the table and outputs (default: a temporary one)")
    args = p.parse_args()

    from surrogate_abc.emulators.resolve import RESOURCES

    emulator = "telegraph_mrna" if (RESOURCES / "telegraph_mrna.safetensors").is_file() else "exact:telegraph_mrna"
    with tempfile.TemporaryDirectory(prefix="surrogate-abc-dask-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(args.seed)
        table = work / "counts.csv"
        write_table(table, draw_truth(args.genes, rng), args.cells, rng)
        for threads in args.threads.split(","):
            env = dict(os.environ)
            if threads != "default":
                env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
            name = "default threads (all cores)" if threads == "default" else f"OMP_NUM_THREADS={threads}"
            print(f"{name}:", flush=True)
            time_runs(args, table, emulator, work / f"threads-{threads}", env, name)


def time_runs(args: argparse.Namespace, table: Path, emulator: str, work: Path, env: dict[str, str],
              name: str) -> None:
    """One process, then each local cluster size, timed; the table and the identity checks printed."""
    runs = [("one process", None)] + [(f"--scheduler local:{n}", f"local:{n}")
                                      for n in map(int, args.workers.split(","))]
    results = []
    for label, scheduler in runs:
        out = work / ("single" if scheduler is None else scheduler.replace(":", "-"))
        cmd = [sys.executable, "-m", "surrogate_abc", "infer", str(table), "--emulator", emulator, "--out", str(out),
               "--block-size", str(args.block_size), "--seed", str(args.seed), "--quiet", "--no-plots"]
        cmd += ["--scheduler", scheduler] if scheduler else []
        walls = []
        for _ in range(args.repeat):
            shutil.rmtree(out, ignore_errors=True)
            load = os.getloadavg()[0]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            walls.append(time.perf_counter() - t)
            print(f"  {label}: {walls[-1]:.1f} s (load before {load:.2f})", flush=True)
        results.append((label, min(walls), len(rows_of(out / "genes.csv")), out))

    base, local1 = results[0][1], next((w for lab, w, _, _ in results if lab.endswith("local:1")), None)
    blocks = -(-results[0][2] // args.block_size)
    print(f"\n{name}; {args.genes} genes x {args.cells} cells ({results[0][2]} inferred, {blocks} blocks of "
          f"{args.block_size}), emulator {emulator}, the whole command each time:\n")
    print("| run | wall (s) | genes/min | speed-up vs one process | vs local:1 |")
    print("|---|---|---|---|---|")
    for label, wall, n, _ in results:
        vs1 = f"{local1 / wall:.2f}x" if local1 and "local" in label else "-"
        print(f"| {label} | {wall:.1f} | {60 * n / wall:,.0f} | {base / wall:.2f}x | {vs1} |")
    ref_rows, ref_draws = rows_of(results[0][3] / "genes.csv"), draws_of(results[0][3])
    for label, _, _, out in results[1:]:
        same_rows = rows_of(out / "genes.csv") == ref_rows
        d = draws_of(out)
        same_draws = d.keys() == ref_draws.keys() and all(np.array_equal(d[k], ref_draws[k]) for k in d)
        print(f"{label}: genes.csv {'identical' if same_rows else 'DIFFERENT'} (all columns but seconds), "
              f"posterior.nc draws {'identical' if same_draws else 'DIFFERENT'}")
    print()

if __name__ == "__main__":
    from _main import run

    run(main)
