#!/usr/bin/env bash
# Before/after protocol for behaviour-preserving refactors (issue 17): the demo and a short shared-LA run with a
# fixed number of epochs (time limit off, post-processing choice on) and a fixed seed. Collects what must stay
# identical: history.csv (timing columns dropped), evaluation CSVs, postprocessing.json and inferred label volumes.
# Usage: bash scripts/protocol.sh OUT_DIR      then: python scripts/protocol_compare.py BEFORE_DIR AFTER_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$(realpath -m "${1:?usage: protocol.sh OUT_DIR}")"
SEGKIT="${SEGKIT:-.venv/bin/segkit}"
LA="${LA:-../shared/data/volumes/la2018_lge_mri}"
export TF_CPP_MIN_LOG_LEVEL=2
rm -rf "$OUT"; mkdir -p "$OUT"

bash scripts/demo.sh "$OUT/demo" > "$OUT/demo.log" 2>&1

SETS=(--set "data.dir=$OUT/la/data" --set "train.run_dir=$OUT/la/run" --set "prepare.size=[64,64]"
      --set "data.image_size=[64,64]" --set model.num_layers=4 --set model.base_filters=8 --set train.epochs=3
      --set train.time_limit=null --set train.batch_size=8 --set train.jit_compile=false)
"$SEGKIT" prepare left-atrial "$LA" --out "$OUT/la/data" "${SETS[@]}" > "$OUT/la.log" 2>&1
"$SEGKIT" train left-atrial "${SETS[@]}" --overwrite >> "$OUT/la.log" 2>&1
"$SEGKIT" evaluate left-atrial "${SETS[@]}" >> "$OUT/la.log" 2>&1
img=$(ls "$LA"/imagesTr/*.nii.gz | head -1)
"$SEGKIT" infer left-atrial "${SETS[@]}" --input "$img" --output "$OUT/la/infer" --overwrite >> "$OUT/la.log" 2>&1
echo "protocol outputs under $OUT"
