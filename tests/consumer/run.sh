#!/usr/bin/env bash
# Installs the built libfer into a temporary prefix, then configures, builds and
# runs tests/consumer against it with find_package(libfer), as a user would.
#   tests/consumer/run.sh BUILD_DIR
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/fer/fer.h"
cmake -S "$here" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" -j "$(nproc)" >/dev/null
"$work/build/consumer"
