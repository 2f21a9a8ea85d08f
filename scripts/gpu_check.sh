#!/usr/bin/env bash
# GPU check (issues 19 and 22): on a machine with NVIDIA GPUs, in under 10 minutes, train the demo and the LA
# recipe with mixed precision, and print images/s, GPU memory and test Dice; with several GPUs, also the demo
# under MirroredStrategy (all GPUs, per-replica batch kept) next to the same on one GPU.
#
# Usage: bash scripts/gpu_check.sh [--out DIR] [--demo-minutes M] [--la-minutes M] [--cpu-smoke]
#   --out DIR           outputs (default gpu_check/; an earlier one is replaced, never a file, a symbolic link
#                       or a folder holding anything else): DIR/summary.md, .json, runs
#   --demo-minutes M    training minutes of the demo (default 1)
#   --la-minutes M      training minutes of the LA recipe (default 4; 3 with several GPUs)
#   --cpu-smoke         no GPU needed: the same steps at toy size (2 epochs of 3 steps, tiny models, 4 LA
#                       volumes at 64x64), to check this script itself
# Environment: SEGKIT (default .venv/bin/segkit), LA_SRC (default ../shared/data/volumes/la2018_lge_mri),
# NVIDIA_SMI (default nvidia-smi).
# Without a GPU (and without --cpu-smoke) it prints one line and exits with status 2.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=gpu_check
DEMO_MIN=1
LA_MIN=
SMOKE=0
usage() { sed -n '6,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    --demo-minutes) DEMO_MIN="${2:?--demo-minutes needs a number}"; shift 2 ;;
    --la-minutes) LA_MIN="${2:?--la-minutes needs a number}"; shift 2 ;;
    --cpu-smoke) SMOKE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in "$DEMO_MIN" ${LA_MIN:+"$LA_MIN"}; do
  [[ "$v" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "gpu_check: minutes must be a number, got '$v'" >&2; exit 2; }
done
while [ "$OUT" != "/" ] && [ "${OUT%/}" != "$OUT" ]; do OUT="${OUT%/}"; done  # out/ -> out (a link test)
# --out is wiped before a run (only an earlier gpu_check output, checked below): never a file or a link
if [ -L "$OUT" ]; then
  echo "gpu_check: --out $OUT is a symbolic link; give the folder itself" >&2
  exit 2
fi
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then
  echo "gpu_check: --out $OUT exists and is not a folder; choose another --out" >&2
  exit 2
fi

SEGKIT="${SEGKIT:-.venv/bin/segkit}"
PY="$(dirname "$SEGKIT")/python"
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
LA_SRC="${LA_SRC:-../shared/data/volumes/la2018_lge_mri}"
export TF_CPP_MIN_LOG_LEVEL=2
export TF_FORCE_GPU_ALLOW_GROWTH=true   # memory as used, not the whole card (nvidia-smi's figure)

gpus=0
if command -v "$NVIDIA_SMI" >/dev/null 2>&1; then
  gpus=$("$NVIDIA_SMI" -L 2>/dev/null | grep -c '^GPU ' || true)
fi
if [ "$gpus" -eq 0 ] && [ "$SMOKE" -eq 0 ]; then
  echo "gpu_check: no GPU on this machine (nvidia-smi lists none); nothing to measure (--cpu-smoke checks the script at toy size on the CPU)" >&2
  exit 2
fi
[ -d "$LA_SRC" ] || { echo "gpu_check: LA volumes not found at $LA_SRC (set LA_SRC)" >&2; exit 2; }
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$OUT/card.txt" ]; then
  echo "gpu_check: $OUT is not empty and holds no earlier gpu_check output; choose another --out" >&2
  exit 2
fi
if [ "$SMOKE" -eq 0 ]; then
  tf_gpus=$("$PY" -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null || echo 0)
  if [ "$tf_gpus" -eq 0 ]; then
    echo "gpu_check: nvidia-smi lists $gpus GPU(s) but TensorFlow sees none: install the CUDA build (pip install 'tensorflow[and-cuda]')" >&2
    exit 2
  fi
fi
start=$(date +%s)
rm -rf "$OUT"   # an earlier gpu_check output (checked above)
mkdir -p "$OUT"

if [ "$SMOKE" -eq 1 ]; then
  gpus=0
  PRECISION=()
  TOY=(--set train.epochs=2 --set train.steps_per_epoch=3 --set train.validation_steps=1
       --set model.num_layers=3 --set model.base_filters=4 --set infer.batch_size=16 --set train.jit_compile=false)
  DEMO_TIME=(); LA_TIME=()
  echo "CPU smoke (no GPU): $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores" > "$OUT/card.txt"
else
  [ -n "$LA_MIN" ] || LA_MIN=$([ "$gpus" -gt 1 ] && echo 3 || echo 4)
  PRECISION=(--set train.precision=mixed_float16)
  TOY=()
  DEMO_TIME=(--set train.epochs=1000 --set "train.time_limit=$DEMO_MIN" --set train.epoch_change_infer.enabled=false)
  LA_TIME=(--set train.epochs=1000 --set "train.time_limit=$LA_MIN" --set train.epoch_change_infer.enabled=false)
  "$NVIDIA_SMI" --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    | awk -v n="$gpus" 'NR==1 {print n " x " $0}' > "$OUT/card.txt"
  echo "TensorFlow $("$PY" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null), $tf_gpus GPU(s) visible" >> "$OUT/card.txt"
fi
echo "== gpu_check -> $OUT/: $(head -1 "$OUT/card.txt")"

# train LABEL CONFIG SETS... : the measuring helper, with nvidia-smi's memory.used sampled every 0.5 s
train() {
  local label="$1" config="$2"; shift 2
  local smi=""
  if [ "$gpus" -gt 0 ]; then
    "$NVIDIA_SMI" --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/$label.smi.log" &
    smi=$!
  fi
  "$PY" scripts/gpu_check_train.py train "$config" "$@" --json "$OUT/$label.train.json" --label "$label"
  if [ -n "$smi" ]; then
    kill "$smi" 2>/dev/null || true
    wait "$smi" 2>/dev/null || true
    sort -n "$OUT/$label.smi.log" | tail -1 > "$OUT/$label.smi_peak_mib"
  fi
}
# evaluate LABEL CONFIG SETS... : segkit evaluate on the test cases; its evaluation.json kept as LABEL.eval.json
evaluate() {
  local label="$1" config="$2"; shift 2
  "$SEGKIT" evaluate "$config" "$@" --set "evaluate.output_dir=$OUT/$label-evaluation" > "$OUT/$label.evaluate.log"
  cp "$OUT/$label-evaluation/evaluation.json" "$OUT/$label.eval.json"
  "$PY" -c "import json,sys; e=json.load(open(sys.argv[1])); print(f\"[$label] test foreground Dice {e['foreground_mean']['dice']:.3f} over {e['n_cases']} case(s)\")" "$OUT/$label.eval.json"
}

echo "== 1/3 demo: phantom -> configs/demo.yaml (${DEMO_TIME:+$DEMO_MIN min, }mixed precision on GPU)"
"$SEGKIT" prepare phantom --out "$OUT/demo/data" --config configs/demo.yaml --n "$([ "$SMOKE" -eq 1 ] && echo 4 || echo 10)" > "$OUT/demo.prepare.log"
DEMO=(--set "data.dir=$OUT/demo/data" --set "train.run_dir=$OUT/demo/run" "${PRECISION[@]}" "${TOY[@]}")
train demo configs/demo.yaml "${DEMO[@]}" "${DEMO_TIME[@]}"
evaluate demo configs/demo.yaml "${DEMO[@]}"

echo "== 2/3 LA recipe: $LA_SRC -> configs/left-atrial.yaml${LA_MIN:+ ($LA_MIN min)}"
la_src="$LA_SRC"
LA_PREP=()
LA_TOY=()
if [ "$SMOKE" -eq 1 ]; then  # 4 volumes at 64x64
  la_src="$OUT/la/src"
  mkdir -p "$la_src/imagesTr" "$la_src/labelsTr"
  for f in $(ls "$LA_SRC/imagesTr" | sort | head -4); do
    ln -s "$(cd "$LA_SRC" && pwd)/imagesTr/$f" "$la_src/imagesTr/$f"
    ln -s "$(cd "$LA_SRC" && pwd)/labelsTr/$f" "$la_src/labelsTr/$f"
  done
  LA_PREP=(--set "prepare.size=[64,64]" --set prepare.split.train=0.5 --set prepare.split.valid=0.25
           --set prepare.split.test=0.25)
  LA_TOY=(--set "data.image_size=[64,64]")
fi
"$SEGKIT" prepare left-atrial "$la_src" --out "$OUT/la/data" --config configs/left-atrial.yaml \
  "${LA_PREP[@]}" --workers "$(nproc)" > "$OUT/la.prepare.log"
LA=(--set "data.dir=$OUT/la/data" --set "train.run_dir=$OUT/la/run" "${PRECISION[@]}" "${TOY[@]}" "${LA_TOY[@]}")
train la configs/left-atrial.yaml "${LA[@]}" "${LA_TIME[@]}"
evaluate la configs/left-atrial.yaml "${LA[@]}"

if [ "$gpus" -gt 1 ]; then
  echo "== 3/3 MirroredStrategy: the demo on $gpus GPUs (global batch $((8 * gpus)) = 8 per replica) and on 1 GPU"
  STRATEGY=()
  # train.strategy (issue 22) where this segkit has it; without it, more than one visible GPU already
  # means MirroredStrategy (train.precision auto / the run header says which)
  if "$SEGKIT" config show configs/demo.yaml --set train.strategy=mirrored > /dev/null 2>&1; then
    STRATEGY=(--set train.strategy=mirrored)
  fi
  MIR=(--set "data.dir=$OUT/demo/data" "${PRECISION[@]}" "${DEMO_TIME[@]}")
  train demo-mirrored configs/demo.yaml "${MIR[@]}" --set "train.run_dir=$OUT/demo-mirrored/run" \
    --set "train.batch_size=$((8 * gpus))" "${STRATEGY[@]}"
  evaluate demo-mirrored configs/demo.yaml "${MIR[@]}" --set "train.run_dir=$OUT/demo-mirrored/run"
  CUDA_VISIBLE_DEVICES=0 train demo-1gpu configs/demo.yaml "${MIR[@]}" --set "train.run_dir=$OUT/demo-1gpu/run"
else
  echo "== 3/3 MirroredStrategy: skipped ($gpus GPU visible; it needs 2 or more)"
fi

echo "== summary ($(( $(date +%s) - start )) s in all)"
"$PY" scripts/gpu_check_train.py summary "$OUT"
echo "wrote $OUT/summary.md and $OUT/summary.json"
