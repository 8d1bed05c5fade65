#!/usr/bin/env bash
# Infer burst kinetics gene by gene from the shipped synthetic smFISH-like table (examples/genes/genes.csv:
# 300 cells x 6 genes, made by examples/genes/make_genes.py from the known rates in true_rates.csv).
# One ABC-SMC per gene (genes in parallel, one core each); OUT/<gene>/posterior.nc and OUT/genes.csv with
# per gene the median and 5-95% interval of k0, k1, v0, burst_frequency and burst_size.
# The default emulator for mRNA tables is the shipped surrogate_abc/resources/telegraph_mrna.safetensors;
# without it, set EMULATOR=exact:telegraph_mrna (the exact Beta-Poisson likelihood; fast for this model).
set -euo pipefail
out=${GENES_OUT:-genes-output}
emulator=(${EMULATOR:+--emulator "$EMULATOR"})
run() { echo "+ $*"; "$@"; }
run surrogate-abc infer examples/genes/genes.csv "${emulator[@]}" --chains 2 --seed 1 --out "$out"
echo "true rates:"; cat examples/genes/true_rates.csv
# Model selection per gene: telegraph (bursty) vs Poisson (constitutive) vs negative binomial (bursty limit);
# genes.csv gains model and p_<model> columns. The gene `constitutive` should favour poisson. (--compare
# takes the models instead of --emulator: each protocol name uses its shipped emulator, else its exact law.)
run surrogate-abc infer examples/genes/genes.csv --compare telegraph_mrna,poisson,negbin \
    --chains 2 --seed 1 --out "$out-compare"
