#!/usr/bin/env bash
# The demo behind `make demo`: the tool's main job on the shipped example. Infer the rates of the
# two-state gene model from the protein counts of 1000 cells (examples/observed_protein.h5, made from
# known rates) with the shipped default emulator, two independent ABC-SMC chains, in about a minute on
# a laptop. Outputs (posterior.nc, summary.csv, abc.db, PNGs) go to demo-output/.
set -euo pipefail
out=${DEMO_OUT:-demo-output}
run() { echo "+ $*"; "$@"; }
run surrogate-abc infer examples/observed_protein.h5 --chains 2 --seed 1 --out "$out"
echo "true rates of the example (file attributes): k0 0.8, k1 1.5, v0 0.6, d1 0.3, mean_protein 80"
