#!/usr/bin/env bash
# Installs the build into a temporary prefix and runs the installed fer-eval
# from a folder outside the checkout: the apps are in <prefix>/bin, the shipped
# models in <prefix>/share/libfer/models (listed by the app's own lookup), the
# default model and an installed ensemble evaluate a small CSV.
#   tests/consumer/installed_apps.sh BUILD_DIR
set -euo pipefail
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for app in fer-train fer-eval fer-explain fer-live fer-bench fer-trends fer-background fer-detect fer-export fer-sweep fer-compare; do
  [ -x "$prefix/bin/$app" ] || { echo "FAIL: $prefix/bin/$app not installed" >&2; exit 1; }
done
for model in fer2013_paper_cnn_long/best.pt fer2013_vgg_fer_cosine/best.pt fer2013_vgg_paper_ensemble/ensemble.json; do
  [ -f "$prefix/share/libfer/models/$model" ] || { echo "FAIL: share/libfer/models/$model not installed" >&2; exit 1; }
done

mkdir "$work/elsewhere"
cd "$work/elsewhere"
unset FER_MODEL_DIR
# An unknown name: the error lists every folder searched, the install among them with its models.
if "$prefix/bin/fer-eval" --model no_such_model --data x.csv 2>err.txt; then
  echo "FAIL: an unknown model name was accepted" >&2; exit 1
fi
grep -qF "$prefix/share/libfer/models (install: " err.txt ||
  { echo "FAIL: the error does not list the installed models:" >&2; cat err.txt >&2; exit 1; }
grep -q "install: .*paper_cnn_long" err.txt || { echo "FAIL: paper_cnn_long is not among the installed models:" >&2; cat err.txt >&2; exit 1; }

# 14 PublicTest faces of random pixels, two per class.
python3 - > faces.csv <<'PY'
import random
random.seed(1)
print("emotion,pixels,Usage")
for i in range(14):
    print(f"{i % 7},{' '.join(str(random.randrange(256)) for _ in range(48 * 48))},PublicTest")
PY
"$prefix/bin/fer-eval" --data faces.csv --split val --no-charts --out default >eval.log 2>&1 ||
  { echo "FAIL: the installed fer-eval with its default model:" >&2; cat eval.log >&2; exit 1; }
grep -q '"n": 14' default/metrics.json || { echo "FAIL: default/metrics.json does not count 14 faces" >&2; exit 1; }
"$prefix/bin/fer-eval" --model "$prefix/share/libfer/models/fer2013_vgg_paper_ensemble/ensemble.json" \
  --data faces.csv --split val --no-charts --out ensemble >>eval.log 2>&1 ||
  { echo "FAIL: the installed ensemble:" >&2; cat eval.log >&2; exit 1; }
grep -q '"n": 14' ensemble/metrics.json || { echo "FAIL: ensemble/metrics.json does not count 14 faces" >&2; exit 1; }
echo "installed apps: ok ($prefix/bin, $(ls "$prefix/share/libfer/models" | wc -l) models)"
