#!/usr/bin/env bash
# The worked example of README "Your own network": a network file, exact training data, an emulator, inference.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-../../own-network-output}
mkdir -p "$OUT"
surrogate-abc simulate refractory_mrna.toml --engine fsp --n 2000 --seed 1 --out "$OUT/sim.h5"
surrogate-abc bin "$OUT/sim.h5" --out "$OUT/binned.h5"
surrogate-abc train train_refractory.toml --data "$OUT/binned.h5" --out "$OUT/refractory.safetensors" --max-time 600
python make_observed.py "$OUT/observed.h5"
surrogate-abc infer "$OUT/observed.h5" --emulator "$OUT/refractory.safetensors" --chains 2 --out "$OUT/posterior"
