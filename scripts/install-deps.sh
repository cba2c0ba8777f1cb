#!/usr/bin/env bash
# Installs the Debian 12 packages libvirtiofs needs to build, test and run. Needs root.
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  liburing-dev libfuse3-dev fuse3 libboost1.81-dev
  libgtest-dev libgmock-dev
  qemu-system-common   # virtiofsd, the real backend the tests and the demo use
  python3 attr git util-linux
  clang libclang-rt-14-dev   # libFuzzer for the fuzz targets (scripts/fuzz.sh)
  libbenchmark-dev gnuplot-nox   # ring micro-benchmarks and the chart (scripts/bench.sh)
  # the VM rig (tests/vm): a guest kernel and its modules, QEMU, an initramfs of busybox
  qemu-system-x86 linux-image-amd64 busybox-static cpio xz-utils binutils
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
