#!/usr/bin/env bash
# What including each public header costs: seconds for the compiler to parse a
# file holding only `#include "fer/<header>"` (g++ -fsyntax-only, best of 3),
# with the include paths and definitions of BUILD_DIR's fer-eval. For the
# lighter-headers work: run on two trees with the same build flags and compare.
#   scripts/bench-headers.sh [SOURCE_DIR] [BUILD_DIR]
set -euo pipefail
src=$(cd "${1:-.}" && pwd)
build=$(cd "${2:-$src/build}" && pwd)
command=$(cd "$build" && ninja -t commands bin/fer-eval | grep -m1 "fer-eval/main.cpp")
compiler=${command%% *}
flags=$(echo "$command" | tr ' ' '\n' | grep -E '^(-D|-std)' | grep -v -- '-DNDEBUG' | tr '\n' ' ')
system_includes=$(echo "$command" | grep -oE -- '-isystem [^ ]+' | tr '\n' ' ')
total_ms=0
for header in "$src"/libfer/include/fer/*.h "$src"/libfer/include/fer/*/*.h; do
  name=${header#"$src"/libfer/include/fer/}
  best_ms=
  for _ in 1 2 3; do
    start=$(date +%s%N)
    echo "#include \"fer/$name\"" | $compiler -std=c++17 $flags -I"$src/libfer/include" $system_includes -fsyntax-only -x c++ -
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    if [ -z "$best_ms" ] || [ "$ms" -lt "$best_ms" ]; then best_ms=$ms; fi
  done
  printf "%-28s %5d ms\n" "$name" "$best_ms"
  total_ms=$(( total_ms + best_ms ))
done
printf "%-28s %5d ms\n" "sum" "$total_ms"
