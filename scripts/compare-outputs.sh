#!/usr/bin/env bash
# Checks that a change leaves every output the same: runs fer-eval (PublicTest,
# flip TTA), fer-explain (12 PublicTest rows, SHAP and LIME) and fer-live (the
# real clip) with the default model from two builds, and compares the files
# byte for byte (JSON fields naming the model's path, a clock time, the git
# revision or a measured speed aside).
#   scripts/compare-outputs.sh OLD_BIN_DIR NEW_BIN_DIR [WORK_DIR]
# e.g. a worktree of the old revision built into /tmp/old:
#   git worktree add /tmp/old-src REV && cmake -S /tmp/old-src -B /tmp/old && cmake --build /tmp/old
#   scripts/compare-outputs.sh /tmp/old/bin build/bin
set -euo pipefail
old=${1:?usage: compare-outputs.sh OLD_BIN_DIR NEW_BIN_DIR [WORK_DIR]} new=${2:?usage: compare-outputs.sh OLD_BIN_DIR NEW_BIN_DIR [WORK_DIR]}
cd "$(dirname "$0")/.."
work=${3:-$(mktemp -d)}
data=${FER2013_CSV:-../shared/data/fer2013/fer2013.csv.gz}
clip=../shared/data/video/face_clip_640x360.mp4
run_all() {
  local bin=$1 out=$2
  rm -rf "$out"; mkdir -p "$out"
  "$bin/fer-eval" --data "$data" --split val --tta flip --out "$out/eval" >"$out.log" 2>&1
  "$bin/fer-explain" --input "$data" --limit 12 --method both --out "$out/explain" >>"$out.log" 2>&1
  "$bin/fer-live" --source "$clip" --no-display --out "$out/live" >>"$out.log" 2>&1
}
run_all "$old" "$work/old"
run_all "$new" "$work/new"
python3 - "$work/old" "$work/new" <<'PY'
import json, os, sys
volatile = {"checkpoint", "model", "started_utc", "fps", "seconds", "stage_ms_per_frame", "git_revision"}
def strip(x):
    if isinstance(x, dict): return {k: strip(v) for k, v in x.items() if k not in volatile}
    if isinstance(x, list): return [strip(v) for v in x]
    return x
a, b = sys.argv[1:3]; differ = []; n = 0
for root, _, files in os.walk(a):
    for f in files:
        pa = os.path.join(root, f); rel = os.path.relpath(pa, a); pb = os.path.join(b, rel); n += 1
        if not os.path.exists(pb): differ.append(rel + " (missing in the new run)"); continue
        da, db = open(pa, "rb").read(), open(pb, "rb").read()
        if da == db or (f.endswith(".json") and strip(json.loads(da)) == strip(json.loads(db))): continue
        differ.append(rel)
n_new = sum(len(fs) for _, _, fs in os.walk(b))
if n_new != n: differ.append(f"the new run wrote {n_new} files, the old {n}")
for d in differ: print("differs:", d)
print(f"compare-outputs: {n} files, {len(differ)} differences")
sys.exit(1 if differ else 0)
PY
