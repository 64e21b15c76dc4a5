#!/usr/bin/env bash
# Writes docs/architecture.md's folder block (between its two marker comments)
# from the code: the folders of libfer/include/fer/ and report/'s wings, each
# with the folders it includes (the arrows tests/check_layering.sh checks),
# in dependency order, and what each holds (the table below: a new folder
# needs its line here, or this fails).
#   scripts/gen-architecture-docs.sh [--check]   --check: exit 1 (with a diff) if the page differs
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A holds=(
  [report]="fer::report: every file and chart; the shared tools (plots, progress bars, environment, runtime)"
  [report/train]="a training run (run folder, train.log), sweeps, run comparison, TensorBoard files"
  [report/evaluate]="evaluation files and charts, sharded evaluation and its merge"
  [report/explain]="explanation batches: inputs, panels, manifest, faithfulness, gallery"
  [report/live]="the live loop, session files (sinks), trend charts, the alert command"
  [deploy]="ONNX, TorchScript and int8 export"
  [distributed]="c10d process groups, DataParallelHook, SyncBatchNorm"
  [explain]="DeepSHAP and its background, LIME, gradient, CAM and occlusion maps, faithfulness"
  [live]="live session, wellbeing rule, frames.csv and emotion trends"
  [engine]="trainer, hooks, optimizers, schedules, history, Communicator"
  [inference]="batched prediction, TTA, ensembles, metrics"
  [faces]="Haar, YuNet, tracking, per-track smoothing"
  [models]="paper CNN, vgg_fer, checkpoints, the model zoo (shipped models by name)"
  [data]="FER-2013 CSV, FER+ votes, image folders, augmentation, samplers and shards"
  [config]="the key table, file:line:col errors"
  [common]="callbacks, emotions, atomic files and CSV, precision"
)

arrows=$(FER_SHOW_ARROWS=1 bash tests/check_layering.sh . | grep -v '^layering ok')
order=$(echo "$arrows" | tsort)  # a folder before every folder it includes
block=$(mktemp); trap 'rm -f "$block" "$block.page"' EXIT
line() {  # folder, arrows text
  local desc=${holds[$1]:-}
  [ -n "$desc" ] || { echo "error: scripts/gen-architecture-docs.sh: no description of libfer folder '$1'" >&2; exit 1; }
  printf '%-18s %s\n%-18s   %s\n' "$1/" "$2" "" "$desc" | sed 's/ *$//' 
}
{
  echo '```'
  for folder in $order; do
    deps=$(echo "$arrows" | awk -v f="$folder" '$1 == f && $2 != "common" {print $2}' | paste -sd, - | sed 's/,/, /g')
    if [ "$folder" = common ]; then text=""; elif [ -n "$deps" ]; then text="-> $deps"; else text="(common only)"; fi
    line "$folder" "$text"
    if [ "$folder" = report ]; then
      for wing in $(find libfer/include/fer/report -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort); do
        line "report/$wing" "(a wing of report/)"
      done
      printf '%s fer::core\n' "$(printf -- '-%.0s' {1..100})"
    fi
  done
  echo '```'
} > "$block"

awk -v block="$block" '
  /^<!-- folders: generated/ { print; while ((getline l < block) > 0) print l; skipping = 1; next }
  /^<!-- end of folders -->/ { skipping = 0 }
  !skipping { print }
' docs/architecture.md > "$block.page"
if [ "${1:-}" = --check ]; then
  if ! diff -u docs/architecture.md "$block.page"; then
    echo "docs/architecture.md's folder block differs from the code: run scripts/gen-architecture-docs.sh" >&2
    exit 1
  fi
  echo "gen-architecture-docs: docs/architecture.md matches the code"
else
  cp "$block.page" docs/architecture.md
  echo "gen-architecture-docs: docs/architecture.md's folder block written"
fi
