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
# Through ccache when it is there, with every path below $work (the project
# copied in, paths hashed relative to it): a rerun compiles in a second, not 20.
cp "$here/CMakeLists.txt" "$here/main.cpp" "$work/"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER="$(command -v cmake);-E;env;CCACHE_BASEDIR=$work;$(command -v ccache)")
fi
cmake -S "$work" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" "${launcher[@]}" >/dev/null
cmake --build "$work/build" -j "$(nproc)" >/dev/null
"$work/build/consumer"
