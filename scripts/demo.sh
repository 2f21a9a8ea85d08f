#!/usr/bin/env bash
# The main job on built-in synthetic data: prepare (phantom) -> train -> evaluate -> infer.
# Usage: bash scripts/demo.sh [DIR]   (DIR defaults to demo/; it is recreated on every run)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-demo}"
SEGKIT="${SEGKIT:-.venv/bin/segkit}"
PY="$(dirname "$SEGKIT")/python"
export TF_CPP_MIN_LOG_LEVEL=2
SETS=(--set "data.dir=$DIR/data" --set "train.run_dir=$DIR/run")
start=$(date +%s)

echo "== 1/4 prepare: synthetic phantom volumes -> $DIR/data"
"$SEGKIT" prepare phantom --out "$DIR/data" --config configs/demo.yaml --n 10 --overwrite

echo "== 2/4 train: configs/demo.yaml -> $DIR/run"
"$SEGKIT" train configs/demo.yaml "${SETS[@]}" --overwrite

echo "== 3/4 evaluate on the test cases"
"$SEGKIT" evaluate configs/demo.yaml "${SETS[@]}"

case_image=$(python3 - "$DIR/data" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/dataset.json"))
cases = sorted(k for k, v in m["cases"].items() if v["split"] == "test")
print(m["cases"][cases[0]]["image"])
PY
)
echo "== 4/4 infer: $case_image -> $DIR/infer"
"$SEGKIT" infer configs/demo.yaml "${SETS[@]}" --input "$case_image" --output "$DIR/infer" --overwrite

# Check the two results against the phantom's own labels: the evaluation's foreground Dice, and the Dice of the
# inferred label volume against the phantom label volume it was generated with.
"$PY" - "$DIR" "$case_image" <<'PY'
import json, sys
from pathlib import Path
import nibabel as nib
import numpy as np

out, image = Path(sys.argv[1]), Path(sys.argv[2])
fg = json.loads((out / "run/evaluation/evaluation.json").read_text())["foreground_mean"]["dice"]
case = image.name.replace("_image.nii.gz", "")
seg = nib.load(out / "infer" / f"{case}_image_seg.nii.gz")
ref = nib.load(image.with_name(f"{case}_label.nii.gz"))
pred, truth = np.asarray(seg.dataobj), np.asarray(ref.dataobj)
assert pred.shape == truth.shape and np.allclose(seg.affine, ref.affine), "inferred volume lost the geometry"
dices = [2 * ((pred == c) & (truth == c)).sum() / ((pred == c).sum() + (truth == c).sum()) for c in np.unique(truth)[1:]]
inf = float(np.mean(dices))
print(f"   test foreground Dice (evaluate, per case x class, 3D): {fg:.3f}")
print(f"   inferred {case}: shape {pred.shape}, affine kept, foreground Dice vs phantom label {inf:.3f}")
if min(fg, inf) < 0.90:
    sys.exit(f"error: demo Dice below 0.90 (evaluate {fg:.3f}, infer {inf:.3f}): see {out}/run/curves.png")
PY
echo "== demo finished in $(( $(date +%s) - start )) s; outputs under $DIR/"
