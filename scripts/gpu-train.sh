#!/usr/bin/env bash
# One shot on a CUDA machine (sized for 10 minutes of one H100/H200): build with
# scripts/gpu-build.sh, train CONFIG to its last epoch, evaluate best.pt on
# PublicTest in a single pass, with flip TTA and with ten-crop TTA, and write
# the record (config.yaml, history.csv, metrics.json, flip/ and tencrop/,
# environment.json, train.log) into the run folder (fer-train's own evaluation
# of best.pt is the single pass). A run folder holding a
# last.pt is resumed, so a killed shot goes on where it stopped.
#   scripts/gpu-train.sh CONFIG [--data CSV] [--out DIR] [--set key=value ...]
# CONFIG e.g. configs/vgg_fer_cosine.yaml; --data defaults to $FER2013_CSV, else
# ../shared/data/fer2013/fer2013.csv.gz; --out to runs/gpu-<config name>.
# Needs third_party/ (scripts/prepare-gpu-bundle.sh) and the dataset carried
# to the machine. Charts need gnuplot, which a bare GPU machine lacks: back on
# a Debian machine, `fer-eval --model DIR/best.pt --data CSV --split val
# [--tta flip|tencrop] --out DIR[/flip|/tencrop]` redraws them from the same
# checkpoint (the same metrics, to the last digit on the same device).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/gpu-train.sh CONFIG [--data CSV] [--out DIR] [--set key=value ...]"
config=${1:?$usage}
shift
data=${FER2013_CSV:-../shared/data/fer2013/fer2013.csv.gz}
out=""
overrides=()
while (($#)); do
  case $1 in
    --data) data=${2:?$usage}; shift 2 ;;
    --out) out=${2:?$usage}; shift 2 ;;
    --set) overrides+=(--set "${2:?$usage}"); shift 2 ;;
    *) echo "error: unknown argument '$1'; $usage" >&2; exit 2 ;;
  esac
done
[ -f "$config" ] || { echo "error: config '$config' not found" >&2; exit 2; }
[ -f "$data" ] || { echo "error: dataset '$data' not found: carry it to this machine and give --data" >&2; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 ||
  { echo "error: no CUDA device (nvidia-smi -L failed): this script is for a GPU machine" >&2; exit 2; }
out=${out:-runs/gpu-$(basename "$config" .yaml)}
mkdir -p "$(dirname "$out")"

started=$SECONDS
step_started=$SECONDS
step_done() { printf 'gpu-train: %-34s %5d s\n' "$1" $((SECONDS - step_started)); step_started=$SECONDS; }

scripts/gpu-build.sh > "$out.build.log" 2>&1 || { tail -30 "$out.build.log" >&2; exit 1; }
step_done "build (log $out.build.log)"

resume=()
[ -f "$out/last.pt" ] && resume=(--resume)
build-gpu/bin/fer-train --config "$config" --data "$data" --out "$out" --set train.device=cuda \
  "${overrides[@]}" "${resume[@]}"
step_done "train${resume:+ (resumed)}"

evaluate() {  # evaluate TTA DIR
  build-gpu/bin/fer-eval --model "$out/best.pt" --data "$data" --split val --device cuda \
    --tta "$1" --out "$2" > "$2.log" 2>&1 || { tail -20 "$2.log" >&2; exit 1; }
}
evaluate flip "$out/flip"
evaluate tencrop "$out/tencrop"
step_done "evaluate (flip, ten-crop)"

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
for label, d in (("single", "."), ("flip", "flip"), ("ten-crop", "tencrop")):
    m = json.load(open(os.path.join(out, d, "metrics.json")))
    print(f"gpu-train: PublicTest {label:9s} accuracy {100 * m['accuracy']:.2f}%  "
          f"balanced {100 * m['balanced_accuracy']:.2f}%")
PY
echo "gpu-train: record in $out ($((SECONDS - started)) s in all)"
