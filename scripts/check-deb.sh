#!/usr/bin/env bash
# Packs build/ into libfer_<version>_amd64.deb (cpack -G DEB) and installs it
# with apt into a cached Debian 12 root that holds nothing but a minimal
# system and what the package's Depends pull in (scripts/lib/debian-root.sh).
# There, from a folder outside any checkout, `fer-eval --help` runs and the
# default model, found in /usr/share/libfer/models, evaluates PublicTest to
# exactly its shipped record's accuracy. The package is removed afterwards
# (its dependencies stay in the root, so a second run downloads nothing).
#   scripts/check-deb.sh              after scripts/build.sh (or scripts/test.sh)
#   scripts/check-deb.sh --root-only  only make the root (.ci/run does it early)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/debian-root.sh
root=$(DEBIAN_ROOT_SUITE=bookworm debian_root deb-bookworm main)
[ "${1:-}" != --root-only ] || exit 0

[ -f build/CMakeCache.txt ] || { echo "error: build/ is not configured: run scripts/build.sh first" >&2; exit 1; }
rm -f build/libfer_*_amd64.deb
(cd build && cpack -G DEB >/dev/null)
deb=$(ls build/libfer_*_amd64.deb)
echo "check-deb: $deb ($(du -h "$deb" | cut -f1)), Depends: $(dpkg-deb -f "$deb" Depends)"
[ -f ../shared/data/fer2013/fer2013.csv.gz ] || { echo "error: ../shared/data/fer2013/fer2013.csv.gz not found" >&2; exit 1; }

in_debian_root "$root" bash -c '
  set -euo pipefail
  deb=$1
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "./$deb" >/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log >&2; exit 1; }
  trap "dpkg -r libfer >/dev/null" EXIT
  cd "$(mktemp -d)"
  fer-eval --help >/dev/null
  fer-eval --data /work/shared/data/fer2013/fer2013.csv.gz --split val --no-charts --out eval >eval.log 2>&1 ||
    { cat eval.log >&2; exit 1; }
  field() { grep -m1 "\"$1\":" "$2" | sed "s/.*: *//; s/[\",]//g"; }  # a top-level field of a metrics.json
  checkpoint=$(field checkpoint eval/metrics.json)
  [[ $checkpoint == /usr/share/libfer/models/* ]] ||
    { echo "error: fer-eval did not use the installed model: $checkpoint" >&2; exit 1; }
  record=$(dirname "$checkpoint")/metrics.json
  got=$(field accuracy eval/metrics.json) want=$(field accuracy "$record")
  [ "$got" = "$want" ] || { echo "error: the installed default model gives $got, its record $record $want" >&2; exit 1; }
  echo "check-deb: installed in a clean Debian $(cat /etc/debian_version) root; fer-eval ran from $PWD with $checkpoint: accuracy $got (= its record)"
' _ "$deb"
