"""Write the shipped synthetic spliced/unspliced AnnData from known telegraph_splicing rates (fixed seed).

  examples/splicing/splicing.h5ad   500 cells x 8 genes: layers `unspliced` (nascent) and `spliced` (mature) RNA,
                                    X their sum; the true rates in var (true_k0, true_k1, true_v0, true_beta,
                                    true_burst_frequency = k0, true_burst_size = v0 / k1)

Each gene's cells are i.i.d. draws from the exact stationary joint law of (nascent, mature) RNA (the FSP solution
of telegraph_splicing, gamma = 1). The genes pair the same bursting with slow and fast splicing (beta 2 and 30):
their spliced counts alone look alike, the unspliced ones tell them apart.

Usage:  python examples/splicing/make_splicing.py [--out examples/splicing/splicing.h5ad]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

N_CELLS = 500
SEED = 20261204
# gene: (k0, k1, v0, beta); burst frequency k0 (per mature lifetime), burst size v0 / k1
GENES = {
    "rare_bursts_slow_splicing": (0.2, 4.0, 40.0, 2.0),
    "rare_bursts_fast_splicing": (0.2, 4.0, 40.0, 30.0),
    "frequent_bursts_slow_splicing": (2.0, 4.0, 12.0, 2.0),
    "frequent_bursts_fast_splicing": (2.0, 4.0, 12.0, 30.0),
    "large_bursts_slow_splicing": (0.5, 20.0, 90.0, 3.0),
    "large_bursts_fast_splicing": (0.5, 20.0, 90.0, 50.0),
    "mostly_on_slow_splicing": (5.0, 0.5, 6.0, 1.5),
    "mostly_on_fast_splicing": (5.0, 0.5, 6.0, 20.0),
}


def main() -> None:
    import anndata
    import pandas as pd
    from scipy import sparse

    from surrogate_abc import load_protocol
    from surrogate_abc.inference.calibration.datasets import exact_counts_pmf, sample_cells

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "splicing.h5ad"))
    args = ap.parse_args()
    protocol = load_protocol("telegraph_splicing")
    rng = np.random.default_rng(SEED)
    counts = []
    for theta in GENES.values():
        law = exact_counts_pmf(protocol, np.array(theta, float), [a.cap for a in protocol.axes])
        assert law.tail_mass < 1e-8 and law.overflow < 1e-8
        counts.append(sample_cells(law.pmf, law.overflow, N_CELLS, rng))
    u = np.stack([c[:, 0] for c in counts], axis=1).astype(np.float32)
    s = np.stack([c[:, 1] for c in counts], axis=1).astype(np.float32)
    truth = np.array(list(GENES.values()))
    var = pd.DataFrame({"true_k0": truth[:, 0], "true_k1": truth[:, 1], "true_v0": truth[:, 2],
                        "true_beta": truth[:, 3], "true_burst_frequency": truth[:, 0],
                        "true_burst_size": truth[:, 2] / truth[:, 1]}, index=list(GENES))
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(N_CELLS)])
    a = anndata.AnnData(X=sparse.csr_matrix(u + s), obs=obs, var=var,
                        layers={"unspliced": sparse.csr_matrix(u), "spliced": sparse.csr_matrix(s)})
    a.uns["description"] = ("synthetic: exact telegraph_splicing draws (FSP), gamma = 1; see "
                            "examples/splicing/make_splicing.py")
    a.write_h5ad(args.out, compression="gzip")
    print(f"wrote {args.out}: {N_CELLS} cells x {len(GENES)} genes")


if __name__ == "__main__":
    main()
