"""How close can a conditional MDN's protein factor come to the exact joint law, set by set? (a capacity bound)

For each held-out set with an exact FSP target, the K-component Gamma-Poisson mixture of every mRNA bin is fitted
to the exact joint target of that one set alone (Adam on KL(exact || fit) over the bins and the overflow, started
from the emulator's own mixtures, copied to K components), with the mRNA factor held at the exact marginal (the
first species' closed form: for the gene model, Beta-Poisson). The KLD per cell that remains is the least any
network with K components per bin could reach at that set; the emulator's own KLD (both factors) is printed
beside it. Where the fit at K stays near the emulator, more data or training cannot help: the family is too
small there, and K must grow. Where it is far below, the network and its data are the limit.

The mass of an mRNA bin must come from the exact marginal, not from the binned target: where protein passes the
last protein edge (high-mRNA bins of bursty sets hold most of their protein beyond it), the target keeps only the
part inside the grid and lumps the rest into one overflow. (An earlier version normalised each bin's conditional
inside the grid; that forced its mass under the last edge and reported a floor of ~2-3e-3 at slow switching
that was this artefact, not the family.)

  python benchmarks/joint_capacity.py --emulator surrogate_abc/resources/gene_joint.safetensors \\
      --heldout test102_binned.h5 --components 4,8,16 --sets 7,14,81,73,55 [--steps 1500]

--heldout: a binned file of exact targets (`surrogate-abc simulate gene_joint --engine fsp --n 150 --seed 102`, then
`surrogate-abc bin`); --sets: indices among its sets whose FSP tail mass is <= 1e-3 (default: the 5 worst).
"""
from __future__ import annotations

import argparse
import math

import h5py
import numpy as np
import torch

from surrogate_abc.emulators.distributions import _sum_into, mixture_pmf_grid
from surrogate_abc.emulators.exact import bin_integer_pmf
from surrogate_abc.emulators.io import load_emulator
from surrogate_abc.losses import metrics_rows
from surrogate_abc.networks.closed_form import find_closed_form
from surrogate_abc.training.data import load_training_data
from surrogate_abc.training.heldout import DEFAULT_MAX_TAIL_MASS


def exact_sets(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta, binned joint targets (n, A, B), overflow (n,)) of the sets with exact targets."""
    data = load_training_data(path)
    keep = data.tail_mass <= DEFAULT_MAX_TAIL_MASS
    with h5py.File(path) as f:
        return data.theta[keep], f["hist"][()][keep], f["overflow"][()][keep]


def emulator_kld(emu, theta: np.ndarray, hist: np.ndarray, over: np.ndarray) -> np.ndarray:
    """KL(exact || emulator) per set over all bins and the overflow."""
    probs, o = emu.pmf(theta)
    n = len(theta)
    pred = np.concatenate([np.asarray(probs).reshape(n, -1), np.asarray(o)[:, None]], axis=1)
    truth = np.concatenate([hist.reshape(n, -1), over[:, None]], axis=1)
    return metrics_rows(torch.from_numpy(pred), torch.from_numpy(truth))["KLD"]


def exact_first_bins(emu, theta: np.ndarray) -> np.ndarray:
    """(A,) exact mass of each bin of the first species (its closed-form marginal, counts up to 20x the last edge)."""
    proto = emu.protocol
    law = find_closed_form(proto.network, [proto.species[0]])
    if law is None:
        raise SystemExit(f"{proto.name}: no closed form for the marginal of {proto.species[0]}; this bound needs one")
    rates = dict(zip(proto.rate_names, proto.rates(theta[None])[0]))
    edges = np.asarray(proto.axes[0].edges, float)
    masses, _ = bin_integer_pmf(law.pmf(rates, int(20 * edges[-1])), (edges,))
    return masses


def best_conditional_kld(emu, theta: np.ndarray, hist: np.ndarray, over: float, k: int, steps: int,
                         seed: int = 0) -> float:
    """KL(exact || exact mRNA marginal x fitted protein conditionals) over the bins and the overflow, at K=k
    components per bin."""
    model = emu.model.double()
    fam = model.family
    b = model._binning.on(torch.device("cpu"))
    x = torch.as_tensor(emu.features(theta[None]), dtype=torch.float64)
    with torch.no_grad():
        _, _, log_wb, pb = model.factors(x)
    lw, raw = log_wb[0], torch.log(pb[0])                               # (A, K0), (A, K0, R)
    reps = math.ceil(k / lw.shape[-1])
    gen = torch.Generator().manual_seed(seed)
    lw = lw.repeat(1, reps)[:, :k].clone().requires_grad_()
    raw = (raw.repeat(1, reps, 1)[:, :k] + 0.05 * torch.randn(raw.shape[0], k, raw.shape[-1], generator=gen,
                                                              dtype=raw.dtype)).requires_grad_()
    truth = torch.as_tensor(hist, dtype=torch.float64)
    m_mass = torch.as_tensor(exact_first_bins(emu, theta), dtype=torch.float64)[:, None]
    log_t = torch.log(truth.clamp(min=1e-300))
    t_over = torch.tensor(max(float(over), 1e-300), dtype=torch.float64)

    def kl() -> torch.Tensor:
        grid = mixture_pmf_grid(fam, torch.log_softmax(lw, -1), torch.exp(raw), (b.support[1],))
        joint = m_mass * _sum_into(grid, b.index[1], truth.shape[1], dim=1)[:, :-1]
        p_over = (1.0 - joint.sum()).clamp(min=1e-300)
        return (truth * (log_t - torch.log(joint.clamp(min=1e-300)))).sum() + t_over * torch.log(t_over / p_over)

    opt = torch.optim.Adam([lw, raw], lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss = kl()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(kl())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emulator", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--components", default="4,8")
    ap.add_argument("--sets", default=None, help="comma list of indices among the exact sets (default: 5 worst)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    emu = load_emulator(a.emulator, device="cpu")
    theta, hist, over = exact_sets(a.heldout)
    kld = emulator_kld(emu, theta, hist, over)
    sets = [int(s) for s in a.sets.split(",")] if a.sets else list(np.argsort(-kld)[:5])
    ks = [int(k) for k in a.components.split(",")]
    names = ", ".join(emu.param_names)
    print(f"| set | {names} | emulator KLD | " + " | ".join(f"best fit K={k}" for k in ks) + " |")
    print("|---|---|---|" + "---|" * len(ks))
    for i in sets:
        fits = [best_conditional_kld(emu, theta[i], hist[i], over[i], k, a.steps) for k in ks]
        print(f"| {i} | {', '.join(f'{v:.3g}' for v in theta[i])} | {kld[i]:.2e} | "
              + " | ".join(f"{f:.2e}" for f in fits) + " |", flush=True)


if __name__ == "__main__":
    from _main import run

    run(main)
