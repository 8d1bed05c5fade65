"""Shipped networks against exact references: FSP vs closed forms, SSA vs FSP, and FSP seconds per set.

    .venv/bin/python benchmarks/networks.py [--sets 30] [--ssa-samples 20000]

Prints one table. FSP vs closed form: total variation (TV) over 0..cap-1 plus the mass beyond, at prior draws
(telegraph mRNA vs Beta-Poisson, birth-death vs Poisson, the gene model's mRNA vs Beta-Poisson; FSP tol 1e-11). SSA vs FSP:
TV of an SSA histogram of S samples against the FSP law at one fast-switching parameter set per network, next
to the 99.9% quantile of the TV of S independent draws from the FSP law (what sampling alone gives). FSP
seconds per parameter set (telegraph_mrna, autoregulation): mean and max over prior draws of the protocol.
telegraph_splicing (nascent and mature RNA): its nascent marginal against Beta-Poisson with decay beta at prior
draws, the joint SSA against the joint FSP, and the joint FSP's seconds per set.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from surrogate_abc import load_protocol, parse_protocol  # noqa: E402
from surrogate_abc.config import FSPSettings  # noqa: E402
from surrogate_abc.metrics import sampling_tv_quantile, total_variation  # noqa: E402
from surrogate_abc.networks import find_closed_form  # noqa: E402
from surrogate_abc.simulate.fsp import solve_stationary  # noqa: E402
from surrogate_abc.simulate.ssa import SSASimulator  # noqa: E402

BIRTH_DEATH = """
name = "bd"
network = "birth_death"
[parameters.a]
prior = "uniform"
low = 1.0
high = 50.0
[fixed]
b = 1.0
[histogram.x]
edges = { start = 0, stop = 120, width = 1 }
"""
GENE_MRNA = load_protocol("gene_joint").toml_text.split("[histogram.protein]")[0]
FSP_TIMED = ("telegraph_mrna", "autoregulation")  # the gene model's FSP costs are in benchmarks/fsp_speed.py

SSA_POINTS = {
    "birth_death": ({"a": 5.0}, None),
    "gene (protein)": ({"k0": 2.0, "k1": 3.0, "d1": 0.5, "mean_mrna": 10.0, "mean_protein": 60.0}, None),
    "telegraph_mrna": ({"k0": 2.0, "k1": 3.0, "v0": 30.0}, None),
    "autoregulation": ({"sb": 0.05, "su": 1.0, "rho_u": 30.0, "rho_b": 5.0}, None),
}


def protocols():
    gene_protein = parse_protocol(load_protocol("gene_joint").toml_text.split("[histogram.mrna]")[0]
                                  + "[histogram.protein]\nedges = { start = 0, stop = 400, width = 5 }\n", "gene")
    return {"birth_death": parse_protocol(BIRTH_DEATH, "bd"), "gene (mRNA)": parse_protocol(GENE_MRNA, "gene"),
            "gene (protein)": gene_protein, "telegraph_mrna": load_protocol("telegraph_mrna"),
            "autoregulation": load_protocol("autoregulation")}


def tv_closed(p, theta) -> float:
    law = find_closed_form(p.network, p.species)
    worst = 0.0
    for row in p.rates(theta):
        rates = dict(zip(p.rate_names, row))
        cap = p.axes[0].cap
        res = solve_stationary(p.network, rates, p.species, [cap], FSPSettings(tol=1e-11, max_states=200_000))
        q = law.pmf(rates, cap)
        worst = max(worst, 0.5 * (np.abs(q - res.pmf).sum() + abs((1 - q.sum()) - res.overflow)))
    return worst


def ssa_vs_fsp(p, values, samples: int) -> tuple[float, float]:
    theta = np.array([[values[k] for k in p.param_names]])
    rates = dict(zip(p.rate_names, p.rates(theta)[0]))
    cap = p.axes[0].cap
    fsp = solve_stationary(p.network, rates, p.species, [cap], FSPSettings(tol=1e-10, max_states=200_000))
    sim = SSASimulator(p.network, p.species)
    grid, over, _ = sim.histogram(rates, dict(zip(p.network.species, p.initial_state(theta)[0])), samples, 20, 7,
                                  [cap])
    tv = total_variation(np.append(grid, over) / samples, np.append(fsp.pmf, fsp.overflow))
    return tv, sampling_tv_quantile(fsp.pmf, samples, np.random.default_rng(1))


def fsp_seconds(p, theta) -> tuple[float, float]:
    caps = [a.cap for a in p.axes]
    ts = []
    for row in p.rates(theta):
        t = time.perf_counter()
        solve_stationary(p.network, dict(zip(p.rate_names, row)), p.species, caps, p.fsp)
        ts.append(time.perf_counter() - t)
    return float(np.mean(ts)), float(np.max(ts))


def splicing_row(sets: int, samples: int) -> tuple[str, str, str, str]:
    """telegraph_splicing: its nascent marginal against Beta-Poisson(k0, k1, v0 with decay beta) at prior draws,
    the joint SSA against the joint FSP at one set, and FSP seconds per set (the joint, both species)."""
    from surrogate_abc.networks.closed_form import beta_poisson_pmf

    p = load_protocol("telegraph_splicing")
    theta = p.sample(sets, 11)
    caps = [a.cap for a in p.axes]
    worst, ts = 0.0, []
    for row in p.rates(theta):
        r = dict(zip(p.rate_names, row))
        t = time.perf_counter()
        res = solve_stationary(p.network, r, p.species, caps, FSPSettings(tol=1e-11, max_states=500_000))
        ts.append(time.perf_counter() - t)
        q = beta_poisson_pmf({"k_on": r["k0"], "k_off": r["k1"], "v": r["v0"], "d": r["beta"]}, caps[0])
        worst = max(worst, total_variation(np.append(res.pmf.sum(1), res.overflow), np.append(q, 1 - q.sum())))
    one = np.array([[2.0, 3.0, 30.0, 4.0]])
    rates = dict(zip(p.rate_names, p.rates(one)[0]))
    fsp = solve_stationary(p.network, rates, p.species, caps, FSPSettings(tol=1e-10, max_states=500_000))
    grid, over, _ = SSASimulator(p.network, p.species).histogram(
        rates, dict(zip(p.network.species, p.initial_state(one)[0])), samples, 20, 7, caps)
    tv = total_variation(np.append(grid.ravel(), over) / samples, np.append(fsp.pmf.ravel(), fsp.overflow))
    bound = sampling_tv_quantile(fsp.pmf.ravel(), samples, np.random.default_rng(1))
    return ("telegraph_splicing (joint)", f"{worst:.2e} (nascent: beta_poisson)",
            f"{tv:.4f} (iid 99.9%: {bound:.4f})", f"{np.mean(ts):.4f} / {np.max(ts):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=30)
    ap.add_argument("--ssa-samples", type=int, default=20000)
    args = ap.parse_args()
    rows = []
    for name, p in protocols().items():
        theta = p.sample(args.sets, 11)
        law = find_closed_form(p.network, p.species)
        closed = f"{tv_closed(p, theta):.2e} ({law.law})" if law else "-"
        if name in SSA_POINTS:
            tv, bound = ssa_vs_fsp(p, SSA_POINTS[name][0], args.ssa_samples)
            ssa = f"{tv:.4f} (iid 99.9%: {bound:.4f})"
        else:
            ssa = "-"
        timed = "-"
        if name in FSP_TIMED:
            solve_stationary(p.network, dict(zip(p.rate_names, p.rates(theta[:1])[0])), p.species,
                             [a.cap for a in p.axes], p.fsp)  # compile numba kernels before timing
            mean, worst = fsp_seconds(p, theta)
            timed = f"{mean:.4f} / {worst:.3f}"
        rows.append((name, closed, ssa, timed))
    rows.append(splicing_row(args.sets, args.ssa_samples))
    head = ("network", f"max TV FSP vs closed form ({args.sets} prior draws)",
            f"TV SSA vs FSP ({args.ssa_samples} samples)", "FSP s/set mean / max")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    from _main import run

    run(main)
