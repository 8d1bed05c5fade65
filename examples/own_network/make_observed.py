"""1000 cells of mRNA counts from the refractory network at known rates (exact FSP law), for the worked example.

    .venv/bin/python examples/own_network/make_observed.py OUT.h5
"""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

from surrogate_abc import load_protocol
from surrogate_abc.simulate.fsp import solve_stationary

TRUE = {"kon": 1.5, "koff": 0.8, "v": 25.0}


def main(out: str) -> None:
    p = load_protocol(Path(__file__).with_name("refractory_mrna.toml"))
    theta = np.array([[TRUE[k] for k in p.param_names]])
    rates = dict(zip(p.rate_names, p.rates(theta)[0]))
    res = solve_stationary(p.network, rates, p.species, [400], p.fsp)
    cells = np.random.default_rng(20261202).choice(400, size=1000, p=res.pmf / res.pmf.sum())
    with h5py.File(out, "w") as f:
        f["mrna"] = cells.astype(np.int64)
        for k, v in TRUE.items():
            f.attrs[f"true_{k}"] = v
        f.attrs["description"] = "refractory promoter, 1000 cells drawn from the exact FSP law at true_* rates"


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "observed_refractory.h5")
