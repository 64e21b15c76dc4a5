#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test (CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh -DFER_BUILD_TESTS=ON
source scripts/lib/run-suites.sh
run_suites build "$@"
