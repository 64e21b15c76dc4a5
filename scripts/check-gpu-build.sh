#!/usr/bin/env bash
# Checks scripts/gpu-build.sh where no GPU is: in a cached Debian 13 root that
# has only what a bare GPU machine has (a compiler, CMake, ninja, LibTorch and
# Python's torch; ccache) and none of the other -dev packages, with no network during
# the build. Makes third_party/ first (scripts/prepare-gpu-bundle.sh) if missing.
#   scripts/check-gpu-build.sh [--test [ctest arguments]]
#   scripts/check-gpu-build.sh --root-only   only make the root (.ci/run does it early)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/debian-root.sh
# (ccache is no -dev package: the build uses it when present, here to make CI's second run fast.
# OpenBLAS neither: a GPU machine's PyTorch wheel carries MKL; without a fast BLAS
# Debian's LibTorch uses the reference one, 3x slower (the Training suite took 95 s, not 35).)
root=$(debian_root gpu-bare main build-essential cmake ninja-build ccache libtorch-dev python3-torch libopenblas0-openmp)
[ "${1:-}" != --root-only ] || exit 0
[ -f third_party/include/nlohmann/json.hpp ] || scripts/prepare-gpu-bundle.sh
# The build must not find any of the packages the bundle replaces.
# (zlib.h is there: Debian's libtorch-dev depends on zlib1g-dev; the build uses the bundled zlib anyway.)
for header in yaml-cpp/yaml.h spdlog/spdlog.h fmt/core.h nlohmann/json.hpp CLI/CLI.hpp gtest/gtest.h opencv4/opencv2/core.hpp; do
  if [ -e "$root/usr/include/$header" ]; then echo "error: the bare root has /usr/include/$header" >&2; exit 1; fi
done
in_debian_root "$root" unshare --net scripts/gpu-build.sh "$@"
