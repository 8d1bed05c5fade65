"""Timing of the exact FSP stationary solver on the project's reference points; prints one table.

Columns: seconds per solve (best of --repeat), final box (gene_on, mRNA, protein), tail_mass, and the
relative errors of the observed marginals' means/variances against GENE.stationary_moments.
Run: .venv/bin/python benchmarks/fsp_speed.py [--repeat 3] [--module /path/to/other_fsp.py]
(--module times another copy of fsp.py, e.g. an old version, on the same points.)
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import numpy as np

from surrogate_abc.config import FSPSettings, load_protocol
from surrogate_abc.networks import GENE


def _extreme(d1: float = 0.5) -> dict[str, float]:
    k0, k1, v0, d0 = 0.047, 2.9, 0.29, 1.0
    return dict(k0=k0, k1=k1, v0=v0, d0=d0, d1=d1, v1=100 * d1 * d0 * (k0 + k1) / (v0 * k0))


def points():
    """(label, rates, observed, caps, settings) of the reference points."""
    sp_, sj = load_protocol("seed_protein"), load_protocol("seed_joint")

    def rates(proto, theta):
        return dict(zip(proto.rate_names, proto.rates(np.array([theta]))[0]))

    c = 10 ** -0.5
    return [
        ("moderate protein (.3,.3,.5,.5)", rates(sp_, [0.3, 0.3, 0.5, 0.5]), ["protein"], [300], sp_.fsp),
        ("slow protein (1,.1,.3,.05)", rates(sp_, [1.0, 0.1, 0.3, 0.05]), ["protein"], [300], sp_.fsp),
        ("bursty protein (.02,.5,.2,.8)", rates(sp_, [0.02, 0.5, 0.2, 0.8]), ["protein"], [300], sp_.fsp),
        ("extreme protein, max 2e5", _extreme(), ["protein"], [300], FSPSettings(1e-8, 200_000)),
        ("extreme protein, max 2e6", _extreme(), ["protein"], [300], sp_.fsp),
        ("joint prior centre", rates(sj, [c, c, 0.505]), ["mrna", "protein"], [300, 300], sj.fsp),
        ("joint (3,3,.8)", rates(sj, [3.0, 3.0, 0.8]), ["mrna", "protein"], [400, 1000], sj.fsp),
    ]


def main() -> None:
    """Time every reference point and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--module", default=None, help="path of an fsp.py to time instead of the installed one")
    ap.add_argument("--only", default=None, help="substring of the point labels to run")
    args = ap.parse_args()
    if args.module:
        spec = importlib.util.spec_from_file_location("surrogate_abc.simulate._fsp_other", args.module)
        fsp = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = fsp
        spec.loader.exec_module(fsp)
    else:
        from surrogate_abc.simulate import fsp
    print(f"{'point':34s} {'s/solve':>8s} {'box':>18s} {'tail_mass':>9s} {'mean err':>9s} {'var err':>9s}")
    for label, rates, obs, caps, st in points():
        if args.only and args.only not in label:
            continue
        best = np.inf
        for _ in range(args.repeat):
            t = time.perf_counter()
            res = fsp.solve_stationary(GENE, rates, obs, caps, st)
            best = min(best, time.perf_counter() - t)
        mean, cov = GENE.stationary_moments(rates)
        merr = verr = 0.0
        if res.overflow < 1e-12:  # moments of the observed marginals are only complete without overflow
            for ax, s in enumerate(obs):
                i = GENE.reduced_species.index(s)
                m = res.pmf.sum(axis=tuple(j for j in range(res.pmf.ndim) if j != ax))
                x = np.arange(len(m))
                mu = m @ x
                merr = max(merr, abs(mu / mean[i] - 1))
                verr = max(verr, abs((m @ (x - mu) ** 2) / cov[i, i] - 1))
            ms = f"{merr:9.1e} {verr:9.1e}"
        else:
            ms = f"{'(overflow)':>19s}"
        print(f"{label:34s} {best:8.3f} {str(res.truncation):>18s} {res.tail_mass:9.1e} {ms}", flush=True)


if __name__ == "__main__":
    from _main import run

    run(main)
