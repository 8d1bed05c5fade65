"""Is a calibration miss the sampler's? Each dataset's posterior under the same emulator likelihood drawn again by
random-walk Metropolis, next to pyabc's draws and the SBC ranks.

For each dataset of `calibrate` output folders (ds_*/observed.h5, posterior.nc, result.json) M chains start at M of
pyabc's posterior draws and walk on the prior's sampling scale (log10 for a log-uniform parameter) with a Gaussian
proposal of covariance 2.38^2 / d times the covariance of pyabc's draws; the target is the prior (uniform on that
scale) times the emulator's multinomial likelihood of the observed cells (the categories that hold cells, as
`infer` evaluates it). The first half of each chain is dropped. Printed per parameter: the SBC rank (z) of pyabc's
draws (from result.json) and of the Metropolis draws (99 of them, as `calibrate` ranks), and the mean difference of
the posterior means, Metropolis - pyabc, in pyabc's posterior sds. Ranks that lean the same under both samplers,
with means that agree, say the lean is not the ABC's.

  python benchmarks/calibration_sampler.py CAL_DIR [CAL_DIR ...] [--emulator FILE] [--chains M] [--steps S]
      [--limit N]
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _calibration_study import open_study, study_parser  # noqa: E402

from surrogate_abc.data.observed import load_observed, observed_histogram  # noqa: E402
from surrogate_abc.inference.calibration.stats import rank_shift, sbc_rank, to_feature  # noqa: E402
from surrogate_abc.inference.pyabc_bridge.parts import multinomial_logliks  # noqa: E402


def metropolis(logpost, start: np.ndarray, cov: np.ndarray, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(steps, M, d) states of M random-walk Metropolis chains from `start` (M, d), the M chains moved together
    (one batched log-posterior call a step), and the acceptance rate."""
    chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(cov)))
    x, lp = start.copy(), logpost(start)
    out, accepted = np.empty((steps,) + start.shape), 0
    for s in range(steps):
        y = x + rng.standard_normal(x.shape) @ chol.T
        lq = logpost(y)
        take = np.log(rng.random(len(x))) < lq - lp
        x[take], lp[take] = y[take], lq[take]
        accepted += int(take.sum())
        out[s] = x
    return out, accepted / (steps * len(x))


def main() -> None:
    import arviz as az

    ap = study_parser(__doc__)
    ap.add_argument("--chains", type=int, default=32, help="Metropolis chains per dataset (default 32)")
    ap.add_argument("--steps", type=int, default=400, help="steps per chain, the first half dropped (default 400)")
    args = ap.parse_args()
    study = open_study(args)
    emulator, protocol, names, box = study.emulator, study.protocol, study.names, study.box
    studies = study.datasets[:args.limit]
    lo = np.array([float(to_feature(box[k][0], box[k][1])) for k in names])
    hi = np.array([float(to_feature(box[k][0], box[k][2])) for k in names])
    log_scale = np.array([box[k][0] == "loguniform" for k in names])
    ranks_abc, ranks_mh, diffs, acc = [], [], [], []
    t0 = time.perf_counter()
    for i, (folder, r) in enumerate(studies):
        obs = load_observed(folder / "observed.h5", tuple(protocol.species))
        hist, overflow = observed_histogram(obs, tuple(emulator.edges))
        counts = np.append(np.asarray(hist, float).ravel(), overflow)
        cats = np.flatnonzero(counts > 0)

        def logpost(z: np.ndarray) -> np.ndarray:
            out = np.full(len(z), -np.inf)
            inside = np.all((z >= lo) & (z <= hi), axis=1)
            if inside.any():
                theta = np.where(log_scale, 10.0 ** z[inside], z[inside])
                out[inside] = multinomial_logliks(counts[cats], emulator.category_probs(theta, cats))
            return out

        post = az.from_netcdf(folder / "posterior.nc").posterior
        z_abc = np.stack([to_feature(box[k][0], post[k].values.ravel()) for k in names], axis=1)
        rng = np.random.default_rng([i, 29])
        start = z_abc[rng.choice(len(z_abc), args.chains, replace=len(z_abc) < args.chains)]
        states, rate = metropolis(logpost, start, 2.38 ** 2 / len(names) * np.cov(z_abc.T), args.steps, rng)
        z_mh = states[args.steps // 2:].reshape(-1, len(names))
        truth = np.array([float(to_feature(box[k][0], r[f"true_{k}"])) for k in names])
        ranks_abc.append([r[f"rank_{k}"] for k in names])
        ranks_mh.append([sbc_rank(z_mh[:, j], truth[j], rng) for j in range(len(names))])
        diffs.append((z_mh.mean(axis=0) - z_abc.mean(axis=0)) / z_abc.std(axis=0, ddof=1))
        acc.append(rate)
        print(f"[{i + 1}/{len(studies)}, {time.perf_counter() - t0:.0f} s] {folder}: acceptance {rate:.2f}", flush=True)
    ra, rm, df = map(np.array, (ranks_abc, ranks_mh, diffs))
    n = len(ra)
    print(f"\n{n} datasets; {args.chains} chains x {args.steps} steps each, acceptance median {np.median(acc):.2f}\n")
    print("| parameter | pyabc: mean rank (z) | Metropolis: mean rank (z) | posterior mean, Metropolis - pyabc (pyabc sds) |")
    print("|---|---|---|---|")
    for j, k in enumerate(names):
        (ma, za), (mm, zm) = rank_shift(ra[:, j]), rank_shift(rm[:, j])
        print(f"| {k} | {ma:.1f} ({za:+.1f}) | {mm:.1f} ({zm:+.1f}) | {df[:, j].mean():+.3f} +- "
              f"{df[:, j].std(ddof=1) / math.sqrt(n):.3f} |")


if __name__ == "__main__":
    from _main import run

    run(main)
