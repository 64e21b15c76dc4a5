#!/usr/bin/env bash
# Helpers for the LibTorch-2.x checks: a cached Debian 13 ("trixie") root made
# with debootstrap (Debian 12, "bookworm", with DEBIAN_ROOT_SUITE=bookworm: the
# .deb check), and a way to run a command inside it with the repository
# (and ../shared beside it) visible at the same relative places.
#   source scripts/lib/debian-root.sh
#   root=$(debian_root NAME "component list" pkg...)   # made once, cached
#   in_debian_root "$root" COMMAND...                  # runs in /work/libfer
#   debian_root_host_tools                             # installs debootstrap first
# The cache lives in $FER_ROOT_CACHE (default ~/.cache/libfer); a root is
# rebuilt when missing or when its package list changed. Needs root privileges.
# Builds inside the roots share one ccache folder, $FER_ROOT_CACHE/ccache (the
# checkout is always /work/libfer there, so every clone hits the same entries).

set -euo pipefail

FER_DEBIAN_MIRROR=${FER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
FER_ROOT_CACHE=${FER_ROOT_CACHE:-$HOME/.cache/libfer}

_as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs what making a root needs on the host (debootstrap, unshare). Call it
# before making several roots at once: their installs would race for apt's lock.
debian_root_host_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v unshare >/dev/null || missing+=(util-linux)
  # To stderr: debian_root's caller reads the root's path from its stdout.
  if ((${#missing[@]})); then
    _as_root apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
}

# debian_root NAME COMPONENTS PACKAGE... -> prints the root's path.
# The suite is $DEBIAN_ROOT_SUITE, trixie unless set.
# Extra setup before the packages are installed: define a function
# `debian_root_prepare ROOT` (e.g. to install local stand-in packages).
debian_root() {
  local name=$1 components=$2; shift 2
  local root=$FER_ROOT_CACHE/$name suite=${DEBIAN_ROOT_SUITE:-trixie}
  local want; want=$(printf '%s\n' "$suite $components" "$@" "$(declare -f debian_root_prepare 2>/dev/null)" | sha256sum | cut -c1-16)
  if [ -f "$root/.fer-root-ready" ] && [ "$(cat "$root/.fer-root-ready")" = "$want" ]; then
    echo "$root"; return
  fi
  debian_root_host_tools
  echo "debian-root: making $root (Debian $suite, $*)" >&2
  _as_root rm -rf "$root"
  mkdir -p "$FER_ROOT_CACHE"
  _as_root debootstrap --variant=minbase --components="${components// /,}" "$suite" "$root" "$FER_DEBIAN_MIRROR" >&2
  echo "deb $FER_DEBIAN_MIRROR $suite $components" | _as_root tee "$root/etc/apt/sources.list" >/dev/null
  # Inside $(...) errexit is off: every step checks itself, so a failed install
  # never leaves a root marked ready.
  if declare -F debian_root_prepare >/dev/null; then debian_root_prepare "$root" >&2 || return 1; fi
  _in_root "$root" / apt-get update -q >&2 || return 1
  if ! _in_root "$root" / env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2; then
    echo "debian-root: installing the packages into $root failed (see above)" >&2
    return 1
  fi
  _in_root "$root" / apt-get clean >&2
  echo "$want" | _as_root tee "$root/.fer-root-ready" >/dev/null
  echo "$root"
}

# Runs "$@" inside ROOT with /proc, /dev and /sys mounted, in directory DIR
# (a path inside the root). Mounts live in a private namespace and vanish
# when the command ends, even if it is killed.
_in_root() {
  local root=$1 dir=$2; shift 2
  _as_root unshare --mount --fork bash -c '
    set -e; root=$1; dir=$2; shift 2
    mount --make-rprivate /
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    for bind in ${FER_ROOT_BINDS:-}; do
      src=${bind%%=*}; dst=$root${bind#*=}
      mkdir -p "$dst"; mount --bind "$src" "$dst"
    done
    exec chroot "$root" env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      LANG=C.UTF-8 ${FER_ROOT_ENV:-} bash -c "cd \"\$0\" && exec \"\$@\"" "$dir" "$@"
  ' _ "$root" "$dir" "$@"
}

# in_debian_root ROOT COMMAND...: runs COMMAND in /work/libfer, which is this
# repository; ../shared beside the repository is /work/shared when present;
# $FER_ROOT_CACHE/ccache is /work/ccache and CCACHE_DIR; FER_TEST_JOBS (how
# many suites ctest runs at once) passes through when set.
in_debian_root() {
  local root=$1; shift
  local repo; repo=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
  local binds="$repo=/work/libfer"
  [ -d "$repo/../shared" ] && binds="$binds $(cd "$repo/../shared" && pwd)=/work/shared"
  mkdir -p "$FER_ROOT_CACHE/ccache"
  binds="$binds $FER_ROOT_CACHE/ccache=/work/ccache"
  FER_ROOT_BINDS="$binds" FER_ROOT_ENV="CCACHE_DIR=/work/ccache${FER_TEST_JOBS:+ FER_TEST_JOBS=$FER_TEST_JOBS}" _in_root "$root" /work/libfer "$@"
}
