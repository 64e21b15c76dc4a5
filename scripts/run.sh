#!/usr/bin/env bash
# Installs what is missing, builds, trains and evaluates an experiment.
#   scripts/run.sh [CONFIG] [--data PATH] [more fer-train options]
# CONFIG defaults to configs/paper_cnn.yaml; the data to --data, $FER2013_CSV,
# then data/fer2013.csv. Re-running continues a killed run (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."

config=configs/paper_cnn.yaml
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then config=$1; shift; fi

data=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --data=*) data=${1#--data=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -n "$data" ] || data=${FER2013_CSV:-data/fer2013.csv}
if [ ! -e "$data" ]; then
  cat >&2 <<MSG
error: FER-2013 not found at '$data'.
Download fer2013.csv (Kaggle: "Challenges in Representation Learning: Facial Expression
Recognition Challenge") or the image-folder version (train/ and test/ folders), then run
  scripts/run.sh $config --data /path/to/fer2013.csv      (or set FER2013_CSV)
MSG
  exit 2
fi

scripts/setup-deps.sh
scripts/build.sh -DFER_BUILD_TESTS=OFF

build/bin/fer-train --config "$config" --data "$data" --resume "${args[@]}"
