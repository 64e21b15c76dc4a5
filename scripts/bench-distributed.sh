#!/usr/bin/env bash
# Data-parallel throughput on one machine: fer-train on N ranks x T threads
# against 1 rank x N*T threads, at the same global batch, in training images/s
# (the median epoch after the first, validation excluded: max_val is tiny).
#   scripts/bench-distributed.sh [DATA] [RANKS] [THREADS_PER_RANK] [IMAGES]
# Needs a build with distributed support (libgloo-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/fer2013/fer2013.csv.gz}
ranks=${2:-2}
threads=${3:-1}
images=${4:-8192}
batch=64
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Median seconds of epochs 2..N from history.csv (epoch 1 warms up).
median_epoch_seconds() {
  tail -n +3 "$1" | cut -d, -f7 | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

run() {  # name, fer-train arguments...
  local name=$1; shift
  build/bin/fer-train --config configs/paper_cnn.yaml --data "$data" --out "$work/$name" \
    --set data.max_train="$images" --set data.max_val=64 --set train.epochs=4 --set train.background_k=0 \
    --set train.early_stopping_patience=0 "$@" > "$work/$name.log" 2>&1
  local seconds
  seconds=$(median_epoch_seconds "$work/$name/history.csv")
  printf '%-34s %6.1f s/epoch  %7.1f img/s\n' "$name" "$seconds" "$(echo "$images / $seconds" | bc -l)"
}

echo "paper_cnn, $images training images, global batch $((batch * ranks)), $(nproc) cores"
run "1 rank x $((ranks * threads)) threads" --set train.threads=$((ranks * threads)) --set train.batch_size=$((batch * ranks))
run "$ranks ranks x $threads threads (gloo)" --nproc "$ranks" --set train.threads="$threads" --set train.batch_size=$batch
