#!/usr/bin/env bash
# Makes a finished run a shipped model: copies its record into
# experiments/NAME (best.pt, config.yaml, environment.json, history.csv,
# train.log), evaluates best.pt on the validation split the run selected on
# with each TTA mode (NAME/ single pass, NAME/flip/, NAME/tencrop/; charts and
# the run's training curves), lists NAME in experiments/models.txt and lets git
# see the folder. The README is yours to write (see experiments/*/README.md).
#
#   scripts/ship-model.sh RUN_DIR NAME DATA     e.g.
#   scripts/ship-model.sh /work/runs/ferplus_vgg ferplus_vgg ../shared/data/ferplus
#
# DATA is given as the guard finds it: a path under ../shared, recorded in
# metrics.json. Run from the repository root after scripts/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 3 ]; then
  echo "usage: scripts/ship-model.sh RUN_DIR NAME DATA" >&2
  exit 2
fi
run=$1 name=$2 data=$3
dest=experiments/$name
for file in best.pt config.yaml environment.json history.csv train.log; do
  [ -f "$run/$file" ] || { echo "error: $run/$file not found (is the run finished?)" >&2; exit 1; }
done
[ ! -e "$dest" ] || { echo "error: $dest exists; remove it to ship again" >&2; exit 1; }
[ -e "$data" ] || { echo "error: data $data not found" >&2; exit 1; }

mkdir -p "$dest"
cp "$run"/{best.pt,config.yaml,environment.json,history.csv,train.log} "$dest"/
for tta in none flip tencrop; do
  out=$dest
  [ "$tta" = none ] || out=$dest/$tta
  build/bin/fer-eval --model "$dest/best.pt" --data "$data" --split val --tta "$tta" --run-dir "$dest" --out "$out"
done
grep -qx "$name" experiments/models.txt || echo "$name" >> experiments/models.txt
grep -qx "!/experiments/$name/" .gitignore || printf '# shipped: %s\n!/experiments/%s/\n' "$name" "$name" >> .gitignore
echo "shipped $dest: write $dest/README.md, then add its rows to README.md and docs/models.md"
