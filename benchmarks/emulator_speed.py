"""Emulator speed: PMF evaluations per second (MDN, LSTM) vs seconds per parameter set of SSA and FSP.

Prints tables; no assertions. Untrained networks are timed (speed does not depend on the weights).
  python benchmarks/emulator_speed.py [--threads 2] [--batches 1,1000,100000] [--ssa-samples 100000]
      [--epoch-samples 100000] [--skip-ssa] [--skip-epoch] [--joint]

--joint adds the joint (mRNA x protein) conditional MDNs of configs/train_default_joint.toml (4 components) and
configs/train_default_joint_wide.toml (8, the shipped one): full pmf (12001 categories) against the likelihood
path of `infer`, which computes only the categories holding cells of examples/observed_joint.h5, and the exact
FSP joint solution per set.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from surrogate_abc import load_protocol
from surrogate_abc.training import ModelSpec, TrainSettings, build_network, fit


def _timeit(fn, min_time: float = 1.0, max_reps: int = 1000) -> float:
    """Seconds per call (median over repetitions filling ~min_time)."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (time.perf_counter() - start < min_time or len(times) < 3):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def networks(protocol, d: int, C: int) -> dict[str, torch.nn.Module]:
    """The protein MDN (Gamma-Poisson, 4 components) and the LSTM array of the training configs."""
    mdn = build_network(ModelSpec("mdn", "gamma_poisson", 4), protocol, d, C)
    lstm = build_network(ModelSpec("lstm", hidden=(64, 64), lstm={"bin_features": 16, "hidden": 32}), protocol, d, C)
    return {"MDN (Gamma-Poisson, K=4)": mdn, "LSTM array": lstm}


def pmf_rates(protocol, batches: list[int], devices: list[str]) -> list[tuple[str, str, int, float]]:
    """(model, device, batch, PMF evaluations per second)."""
    d = len(protocol.param_names)
    C = int(np.prod([a.bins for a in protocol.axes])) + 1
    rows = []
    for dev in devices:
        for name, net in networks(protocol, d, C).items():
            net = net.to(dev).eval()
            for b in batches:
                x = torch.randn(b, d, device=dev)
                with torch.no_grad():
                    sec = _timeit(lambda: net(x))
                rows.append((name, dev, b, b / sec))
    return rows


def simulator_times(protocol, n_points: int, ssa_samples: int, skip_ssa: bool) -> dict[str, float]:
    """Mean seconds per parameter set for FSP (solve_stationary) and SSA (gillespy2) at prior draws."""
    from surrogate_abc.simulate.fsp import solve_stationary

    theta = protocol.sample(n_points, seed=11)
    rates = protocol.rates(theta)
    caps = [a.cap for a in protocol.axes]
    out = {}
    t0 = time.perf_counter()
    for r in rates:
        solve_stationary(protocol.network, dict(zip(protocol.rate_names, r)), protocol.species, caps, protocol.fsp)
    out["FSP"] = (time.perf_counter() - t0) / n_points
    if skip_ssa:
        return out
    try:
        from surrogate_abc.simulate.ssa import SSASimulator, set_seed
    except ImportError:
        return out
    init = protocol.initial_state(theta)
    sim = SSASimulator(protocol.network, protocol.species)
    names = protocol.network.species
    r0 = dict(zip(protocol.rate_names, rates[0]))
    sim.ensure_compiled(r0, dict(zip(names, init[0])))
    t0 = time.perf_counter()
    for i, r in enumerate(rates):
        sim.histogram(dict(zip(protocol.rate_names, r)), dict(zip(names, init[i].tolist())), ssa_samples,
                      protocol.ssa.burn_in_intervals, seed=set_seed(11, i), caps=caps)
    out[f"SSA ({ssa_samples} samples)"] = (time.perf_counter() - t0) / n_points
    return out


def epoch_seconds(protocol, n: int, device: str) -> dict[str, float]:
    """Seconds per training epoch over n random samples (batch 512, Hellinger loss)."""
    from surrogate_abc.losses import get_loss

    d = len(protocol.param_names)
    C = int(np.prod([a.bins for a in protocol.axes])) + 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g).to(device)
    y = torch.softmax(torch.randn(n, C, generator=g), 1).to(device)
    out = {}
    for name, net in networks(protocol, d, C).items():
        net = net.to(device)
        s = TrainSettings(epochs=1, batch_size=512, patience=5)
        h = fit(net, x, y, x[:1000], y[:1000], loss_fn=get_loss("hellinger"), settings=s)
        out[name] = h["epochs"][0]["seconds"]
    return out


def joint_rates(batch: int = 300, fsp_points: int = 3) -> list[tuple[str, float]]:
    """(what, seconds per parameter set) for the joint conditional MDN and the joint FSP solution."""
    from pathlib import Path

    import h5py

    from surrogate_abc.emulators.emulator import Emulator
    from surrogate_abc.inference.pyabc_bridge.parts import observed_categories
    from surrogate_abc.simulate.fsp import solve_stationary
    from surrogate_abc.training import load_train_config

    protocol = load_protocol("gene_joint")
    d = len(protocol.param_names)
    C = int(np.prod([a.bins for a in protocol.axes])) + 1
    with h5py.File(Path(__file__).resolve().parents[1] / "examples" / "observed_joint.h5") as f:
        cells = np.stack([f["mrna"][()], f["protein"][()]], axis=1)
    theta = protocol.sample(batch, seed=5)
    rows = []
    for config in ("train_default_joint", "train_default_joint_wide"):
        cfg = load_train_config(config)
        net = build_network(cfg.model, protocol, d, C)
        emu = Emulator(net, protocol, np.zeros(d), np.ones(d), protocol.transforms())
        hist, _ = np.histogramdd(cells, bins=list(emu.edges))
        cats = observed_categories(hist, 0)
        k = cfg.model.components
        rows += [(f"conditional MDN K={k}, full pmf ({C} categories)", _timeit(lambda: emu.pmf(theta)) / batch),
                 (f"conditional MDN K={k}, likelihood ({len(cats)} observed categories)",
                  _timeit(lambda: emu.category_probs(theta, cats)) / batch)]
    caps = tuple(int(np.ceil(a.edges[-1])) for a in protocol.axes)
    t0 = time.perf_counter()
    for row in protocol.rates(protocol.sample(fsp_points, seed=11)):
        solve_stationary(protocol.network, dict(zip(protocol.rate_names, row)), protocol.species, caps, protocol.fsp)
    rows.append(("FSP joint solution", (time.perf_counter() - t0) / fsp_points))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,1000,100000")
    ap.add_argument("--protocol", default="seed_protein")
    ap.add_argument("--fsp-points", type=int, default=5)
    ap.add_argument("--ssa-samples", type=int, default=100_000)
    ap.add_argument("--epoch-samples", type=int, default=100_000)
    ap.add_argument("--skip-ssa", action="store_true")
    ap.add_argument("--skip-epoch", action="store_true")
    ap.add_argument("--joint", action="store_true", help="also time the joint conditional MDN (see above)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    protocol = load_protocol(a.protocol)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    batches = [int(b) for b in a.batches.split(",")]
    print(f"# protocol {protocol.name}, torch {torch.__version__}, {a.threads} CPU threads, devices {devices}")
    sims = simulator_times(protocol, a.fsp_points, a.ssa_samples, a.skip_ssa)
    print("\n## simulators: seconds per parameter set")
    for k, v in sims.items():
        print(f"{k:<28} {v:10.4f} s")
    if not any(k.startswith("SSA") for k in sims):
        print(f"{'SSA':<28}        n/a")
    print("\n## emulators: PMF evaluations per second (speedup = per-set time of simulator / emulator)")
    print(f"{'model':<26} {'device':<6} {'batch':>7} {'evals/s':>12} " + " ".join(f"{'x ' + k.split()[0]:>12}" for k in sims))
    for name, dev, b, rate in pmf_rates(protocol, batches, devices):
        print(f"{name:<26} {dev:<6} {b:>7} {rate:12.4g} " + " ".join(f"{v * rate:12.3g}" for v in sims.values()))
    if not a.skip_epoch:
        print(f"\n## seconds per training epoch over {a.epoch_samples} samples (batch 512)")
        for dev in devices:
            for name, sec in epoch_seconds(protocol, a.epoch_samples, dev).items():
                print(f"{name:<26} {dev:<6} {sec:8.2f} s")
    if a.joint:
        print("\n## joint (gene_joint, batch 300 on the CPU): milliseconds per parameter set")
        rows = joint_rates()
        for name, sec in rows:
            print(f"{name:<62} {sec * 1e3:10.3f} ms")
        print(f"likelihood path / full pmf (K=8): {rows[2][1] / rows[3][1]:.1f}x faster; K=8 / K=4 likelihood: "
              f"{rows[3][1] / rows[1][1]:.2f}x; FSP / likelihood path (K=8): {rows[4][1] / rows[3][1]:.3g}x")


if __name__ == "__main__":
    from _main import run

    run(main)
