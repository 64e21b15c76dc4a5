#!/usr/bin/env bash
# Compiles and links the library and every app against Debian 13's CUDA
# LibTorch 2.6 (libtorch-cuda-dev) and CUDA toolkit 12.4, in a cached Debian 13
# root (see scripts/lib/debian-root.sh). Runs nothing: this machine has no GPU.
# It proves that the CUDA-only code compiles and links. The tests are left
# out: they use no CUDA-only header, and scripts/test-libtorch2.sh compiles
# them against the same LibTorch 2.6 headers (this halves the check's time).
#
# cuDNN: Debian's nvidia-cudnn package downloads cuDNN from NVIDIA when it is
# installed, which fails offline. The root gets a local stand-in package of the
# same name and version that installs no files and says so in its description;
# libtorch_cuda.so still names libcudnn.so.9, so the executables are linked
# with --unresolved-symbols=ignore-in-shared-libs (only symbols that
# LibTorch's own shared libraries need may stay unresolved; libfer's must all
# resolve). The binaries are for compile checking only: they would not start.
#   scripts/check-cuda-build.sh [cmake --build arguments]
#   scripts/check-cuda-build.sh --root-only   only make the root (.ci/run does it early)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/debian-root.sh

cudnn_version=9.0.0.312~cuda12
debian_root_prepare() {
  local root=$1 pkg
  pkg=$(mktemp -d)
  mkdir -p "$pkg/DEBIAN"
  cat > "$pkg/DEBIAN/control" <<CONTROL
Package: nvidia-cudnn
Version: $cudnn_version
Architecture: amd64
Maintainer: libfer check-cuda-build <nobody@localhost>
Provides: libcudnn.so.9, libcudnn-dev
Description: stand-in for nvidia-cudnn (no cuDNN inside)
 Installs no files. Lets libtorch-cuda-dev install offline for compile checks.
CONTROL
  dpkg-deb --build "$pkg" "$root/tmp/nvidia-cudnn-standin.deb" >/dev/null
  rm -rf "$pkg"
  _in_root "$root" / dpkg -i /tmp/nvidia-cudnn-standin.deb
  _in_root "$root" / apt-mark hold nvidia-cudnn
}

# The usual stack without libtorch-dev / python3-torch (they conflict with the CUDA build),
# and with the CUDA build's Gloo headers (libgloo-dev conflicts with its libgloo-cuda-0) and
# NCCL's (c10d's ProcessGroupNCCL.hpp includes <nccl.h>).
mapfile -t packages < <(scripts/setup-deps.sh --list | grep -vx -e libtorch-dev -e python3-torch -e python3-onnx -e libgloo-dev)
root=$(debian_root libtorch2-cuda "main contrib non-free" "${packages[@]}" libgloo-cuda-dev libnccl-dev libtorch-cuda-dev nvidia-cuda-toolkit)
[ "${1:-}" != --root-only ] || exit 0
in_debian_root "$root" bash -c '
  set -euo pipefail
  echo "check-cuda-build: LibTorch $(dpkg-query -W -f="\${Version}" libtorch-cuda-dev), CUDA $(dpkg-query -W -f="\${Version}" nvidia-cuda-toolkit)"
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DFER_BUILD_TESTS=OFF \
        -DCMAKE_EXE_LINKER_FLAGS="-Wl,--unresolved-symbols=ignore-in-shared-libs" >/dev/null
  cmake --build build-cuda -j "$(nproc)" "$@"
  # Proof that the binaries are the CUDA build: they need libtorch_cuda and libc10_cuda.
  for bin in build-cuda/bin/*; do
    needed=$(objdump -p "$bin" | grep NEEDED)  # whole output first: grep -q would cut objdump off (pipefail)
    [[ $needed == *libtorch_cuda* ]] || { echo "error: $bin is not linked to libtorch_cuda" >&2; exit 1; }
  done
  echo "check-cuda-build: the library and every app compiled and linked against CUDA LibTorch ($(ls build-cuda/bin | tr "\n" " "))"
' _ "$@"
