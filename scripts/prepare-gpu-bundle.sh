#!/usr/bin/env bash
# Prepares third_party/: everything besides LibTorch, CMake, ninja and a C++
# compiler that scripts/gpu-build.sh needs on a bare GPU machine with no
# network and none of Debian's -dev packages. Run it on a Debian 12 machine
# (it installs what it needs from Debian's archive), then carry third_party/
# to the GPU machine with the repository (it is git-ignored; ~10 MiB):
#   header-only: nlohmann/json, CLI11, spdlog, fmt (from the -dev packages)
#   sources:     yaml-cpp, zlib (Debian's source packages), GoogleTest (/usr/src/googletest)
# OpenCV is left out: the GPU build is the training path (FER_WITH_OPENCV=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
dpkg-query -W -f='${Status}' googletest 2>/dev/null | grep -q "install ok installed" ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends googletest >/dev/null

out=third_party
rm -rf "$out"
mkdir -p "$out/include" "$out/licenses"
for dir in nlohmann CLI spdlog fmt; do cp -r "/usr/include/$dir" "$out/include/"; done
for pkg in nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev googletest; do
  cp "/usr/share/doc/$pkg/copyright" "$out/licenses/$pkg.copyright" 2>/dev/null || true
done
cp -r /usr/src/googletest "$out/googletest"

# Source packages from Debian's archive, through a private apt state (no change to the system's lists).
apt_dir=$(mktemp -d)
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/src"
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${FER_DEBIAN_MIRROR:-http://deb.debian.org/debian} $codename main" \
  > "$apt_dir/sources.list"
apt_opts=(-o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache")
apt-get "${apt_opts[@]}" update -q >/dev/null
(cd "$apt_dir/src" && apt-get "${apt_opts[@]}" source --download-only yaml-cpp zlib >/dev/null 2>&1)
mkdir -p "$out/yaml-cpp" "$out/zlib"
tar -xf "$apt_dir"/src/yaml-cpp_*.orig.tar.* -C "$out/yaml-cpp" --strip-components=1
tar -xf "$apt_dir"/src/zlib_*.orig.tar.* -C "$out/zlib" --strip-components=1
rm -rf "$out/yaml-cpp/test" "$out/zlib/contrib" "$out/zlib/examples" "$out/zlib/doc"
cp "$out/yaml-cpp/LICENSE" "$out/licenses/yaml-cpp.LICENSE"
cp "$out/zlib/README" "$out/licenses/zlib.README"
echo "prepare-gpu-bundle: $out/ ready ($(du -sh "$out" | cut -f1)); carry it with the repository to the GPU machine"
