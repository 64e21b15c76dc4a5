#!/usr/bin/env bash
# Builds libfer and runs the whole test suite against LibTorch 2.x (Debian 13's
# libtorch-dev 2.6 with OpenCV 4.10), inside a Debian 13 root made with
# debootstrap and cached in $FER_ROOT_CACHE (default ~/.cache/libfer).
# ../shared is visible inside, so the tests that need FER-2013 run too.
#   scripts/test-libtorch2.sh [ctest arguments]
#   scripts/test-libtorch2.sh --root-only     only make the root (.ci/run does it early)
# Needs root (or sudo) for debootstrap, chroot and bind mounts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/debian-root.sh

mapfile -t packages < <(scripts/setup-deps.sh --list)
root=$(debian_root libtorch2 main "${packages[@]}")
[ "${1:-}" != --root-only ] || exit 0
in_debian_root "$root" bash -c '
  set -euo pipefail
  echo "test-libtorch2: LibTorch $(dpkg-query -W -f="\${Version}" libtorch-dev), OpenCV $(dpkg-query -W -f="\${Version}" libopencv-dev)"
  cmake -S . -B build-libtorch2 -G Ninja -DCMAKE_BUILD_TYPE=Release -DFER_BUILD_TESTS=ON >/dev/null
  cmake --build build-libtorch2 -j "$(nproc)"
  source scripts/lib/onednn-isa.sh
  onednn_isa_for_tests build-libtorch2/bin/fer_tests
  source scripts/lib/run-suites.sh
  run_suites build-libtorch2 "$@"
' _ "$@"
