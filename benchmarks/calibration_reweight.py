"""Is a calibration miss the emulator's, anywhere in the posterior? Each dataset's posterior draws reweighted to the
exact likelihood of its observed cells, next to the SBC ranks.

For each dataset of `calibrate` output folders (ds_*/observed.h5, posterior.nc, result.json) M posterior draws are
reweighted by exp(exact - emulator log-likelihood of the observed cells) (the exact law of `infer --reweight exact`:
the closed form, the gene model's generating function or FSP; one solve per draw, ~1-3 s for gene_joint). Printed per
parameter: the mean SBC rank and its z; the fraction of the M draws below the truth before and after reweighting
and their paired difference; and the mean shift of the posterior mean the reweighting makes, in posterior sds.
calibration/shift.py predicts the emulator's pull to first order at the truth; this measures it wherever the
posterior's draws are, to every order. Ranks leaning one way while the reweighting moves nothing say the
emulator's likelihood is not the cause.

  python benchmarks/calibration_reweight.py CAL_DIR [CAL_DIR ...] [--emulator FILE] [--draws M] [--min-v0 V]
      [--limit N] [--jobs J]
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
from surrogate_abc.inference.calibration.shift import rank_implied_shift  # noqa: E402
from surrogate_abc.inference.calibration.stats import rank_shift, to_feature  # noqa: E402
from surrogate_abc.inference.exact_check import exact_counterpart, exact_probs, log_likelihoods  # noqa: E402


def main() -> None:
    import arviz as az

    ap = study_parser(__doc__)
    ap.add_argument("--draws", type=int, default=16, help="posterior draws reweighted per dataset (default 16)")
    ap.add_argument("--min-v0", type=float, default=None,
                    help="only datasets whose true transcription rate v0 (a derived rate) is at least this")
    ap.add_argument("--jobs", type=int, default=None, help="processes for the exact solves (default: all cores)")
    args = ap.parse_args()
    study = open_study(args)
    emulator, protocol, names, box = study.emulator, study.protocol, study.names, study.box
    exact = exact_counterpart(emulator)
    if exact is None:
        raise SystemExit(f"{emulator.source}: no exact model to reweight to")
    studies = study.datasets
    if args.min_v0 is not None:
        v0 = protocol.rate_names.index("v0")
        studies = [(f, r) for f, r in studies
                   if protocol.rates(np.array([[r[f"true_{k}"] for k in names]]))[0, v0] >= args.min_v0]
    studies = studies[:args.limit]
    below_u, below_w, shifts, ranks, ess = [], [], [], [], []
    t0 = time.perf_counter()
    for i, (folder, r) in enumerate(studies):
        obs = load_observed(folder / "observed.h5", tuple(protocol.species))
        hist, overflow = observed_histogram(obs, tuple(emulator.edges))
        post = az.from_netcdf(folder / "posterior.nc").posterior
        draws = np.stack([post[k].values.ravel() for k in names], axis=1)
        rng = np.random.default_rng([i, 17])
        theta = draws[rng.choice(len(draws), min(args.draws, len(draws)), replace=False)]
        probs, over = emulator.pmf(theta, allow_extrapolation=True)
        em_probs = np.concatenate([np.asarray(probs, float).reshape(len(theta), -1), np.asarray(over, float)[:, None]],
                                  axis=1)
        d = log_likelihoods(exact_probs(exact, theta, args.jobs), hist, overflow) - \
            log_likelihoods(em_probs, hist, overflow)
        w = np.exp(d - d.max())
        w /= w.sum()
        ess.append(1.0 / float(np.sum(w ** 2)) / len(w))
        x = np.stack([to_feature(box[k][0], theta[:, j]) for j, k in enumerate(names)], axis=1)
        t = np.array([float(to_feature(box[k][0], r[f"true_{k}"])) for k in names])
        below = (x < t).astype(float)
        below_u.append(below.mean(axis=0))
        below_w.append(w @ below)
        shifts.append((w @ x - x.mean(axis=0)) / x.std(axis=0, ddof=1))
        ranks.append([r[f"rank_{k}"] for k in names])
        print(f"[{i + 1}/{len(studies)}, {time.perf_counter() - t0:.0f} s] {folder}: exact - emulator log-likelihood "
              f"over the draws {d.mean():+.2f} +- {d.std():.2f} nats", flush=True)
    bu, bw, sh, rk = map(np.array, (below_u, below_w, shifts, ranks))
    n = len(bu)
    print(f"\n{n} datasets, {args.draws} draws each; ESS kept by the reweighting: median {np.median(ess):.2f}, "
          f"min {min(ess):.2f}; shifts in posterior sds, > 0 upward\n")
    print("| parameter | mean rank (z) | shift the ranks imply | draws below the truth | reweighted | paired "
          "difference | shift by the reweighting |")
    print("|---|---|---|---|---|---|---|")
    for j, k in enumerate(names):
        mean, z = rank_shift(rk[:, j])
        diff = bw[:, j] - bu[:, j]
        print(f"| {k} | {mean:.1f} ({z:+.1f}) | {rank_implied_shift(mean):+.2f} | {bu[:, j].mean():.3f} | "
              f"{bw[:, j].mean():.3f} | {diff.mean():+.4f} +- {diff.std(ddof=1) / math.sqrt(n):.4f} | "
              f"{sh[:, j].mean():+.3f} +- {sh[:, j].std(ddof=1) / math.sqrt(n):.3f} |")


if __name__ == "__main__":
    from _main import run

    run(main)
