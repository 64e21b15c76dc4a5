#!/usr/bin/env bash
# Installs the Debian packages libfer needs; does nothing when all are present.
#   scripts/setup-deps.sh          install what is missing (Debian 12 or 13)
#   scripts/setup-deps.sh --list   print the package names (the LibTorch-2.x root uses them)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  ccache  # rebuilds (CI's second run, the roots' builds) compile only what changed
  libtorch-dev libopenblas0-openmp
  libgloo-dev  # headers of c10d's Gloo process group: distributed training
  libopencv-dev libopencv-contrib-dev opencv-data
  libyaml-cpp-dev libspdlog-dev libfmt-dev libgtest-dev libcli11-dev nlohmann-json3-dev zlib1g-dev
  gnuplot-nox
  chromium  # only for the tests that render fer-explain's gallery (index.html) in a headless browser
  python3-torch  # only for the tests that load a checkpoint and an export in Python PyTorch
  python3-onnx  # only for the test that runs the onnx checker on fer-export's files
)

if [ "${1:-}" = "--list" ]; then printf '%s\n' "${packages[@]}"; exit 0; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup-deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# LibTorch's convolutions and linear layers go through BLAS: Debian's reference
# BLAS makes training ~3x slower than OpenBLAS. Make sure OpenBLAS is selected.
blas=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | awk '/^Value:/ {print $2}')
case "$blas" in
  *openblas*) ;;
  *) echo "setup-deps: warning: libblas.so.3 is '$blas', not OpenBLAS; training will be slow." \
          "Select it with: update-alternatives --config libblas.so.3-x86_64-linux-gnu" >&2 ;;
esac
