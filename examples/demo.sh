#!/usr/bin/env bash
# The demo behind `make demo`: simulate a few parameter sets of the gene_protein protocol with the
# Gillespie SSA and with the exact FSP solver, bin both, print a summary and plot SSA against FSP.
set -euo pipefail
out=${DEMO_OUT:-demo-output}
mkdir -p "$out"
rm -f "$out"/ssa.h5 "$out"/fsp.h5 "$out"/ssa_binned.h5 "$out"/fsp_binned.h5
run() { echo "+ $*"; "$@"; }
run surrogate-abc simulate gene_protein --n 4 --seed 9 --samples 20000 --engine ssa --out "$out/ssa.h5"
run surrogate-abc simulate gene_protein --n 4 --seed 9 --engine fsp --out "$out/fsp.h5"
run surrogate-abc bin "$out/ssa.h5" --out "$out/ssa_binned.h5"
run surrogate-abc bin "$out/fsp.h5" --out "$out/fsp_binned.h5"
run surrogate-abc show "$out/fsp_binned.h5" --compare "$out/ssa_binned.h5" --plot "$out/histograms.png"
