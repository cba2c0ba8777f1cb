#!/usr/bin/env bash
# virtiofs-mount next to its backing directory, same workload, one run: stat per second (cached
# and cold) and 1 MiB sequential write/read MB/s, with ratios. Run as root (drops caches).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
work=$(mktemp -d)
mkdir -p "$work/share" "$work/mnt"
cleanup() { fusermount3 -u "$work/mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
./build/virtiofs-mount -o share="$work/share" bench "$work/mnt"
./build/virtiofs-dirbench "$@" "host-dir=$work/share" "virtiofs-mount=$work/mnt"
