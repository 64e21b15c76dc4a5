#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test (CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh -DFER_BUILD_TESTS=ON
cd build
ctest --output-on-failure --timeout 1800 --parallel "${FER_TEST_JOBS:-$(nproc)}" "$@"
