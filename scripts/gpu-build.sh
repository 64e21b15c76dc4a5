#!/usr/bin/env bash
# Builds fer-train, fer-eval, fer-bench, fer-trends and fer_tests on a bare
# CUDA machine: CMake, a C++ compiler (ninja if present) and a PyTorch wheel
# (LibTorch inside it), no -dev packages, no network. The rest comes from
# third_party/, made beforehand on a Debian machine by
# scripts/prepare-gpu-bundle.sh and carried here with the repository.
# OpenCV is not needed: this is the training path (FER_WITH_OPENCV=OFF).
#   scripts/gpu-build.sh          build into build-gpu/
#   scripts/gpu-build.sh --test [ctest arguments]   and run the tests
# LibTorch is found through python3's torch (torch.utils.cmake_prefix_path),
# or $TORCH_CMAKE_PREFIX, or CMake's default search.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f third_party/include/nlohmann/json.hpp ]; then
  echo "error: third_party/ is missing: run scripts/prepare-gpu-bundle.sh on a Debian machine and carry third_party/ here" >&2
  exit 2
fi
prefix=${TORCH_CMAKE_PREFIX:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)}
generator=()
command -v ninja >/dev/null && [ ! -f build-gpu/CMakeCache.txt ] && generator=(-G Ninja)
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DFER_WITH_OPENCV=OFF -DFER_VENDOR_DIR=third_party -DFER_BUILD_TESTS=ON \
      ${prefix:+-DCMAKE_PREFIX_PATH="$prefix"}
cmake --build build-gpu -j "$(nproc)"
echo "gpu-build: built $(ls build-gpu/bin | tr '\n' ' ')"
if [ "${1:-}" = "--test" ]; then
  source scripts/lib/onednn-isa.sh
  onednn_isa_for_tests build-gpu/bin/fer_tests
  shift
  source scripts/lib/run-suites.sh
  run_suites build-gpu "$@"
fi
