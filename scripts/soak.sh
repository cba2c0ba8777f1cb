#!/usr/bin/env bash
# Soak: a mixed workload through virtiofs-mount for MINUTES (default 10), with every file's
# content verified on the backing directory, printing the mount daemon's memory (VmRSS) and open
# file descriptors before, during and after. Not part of the test suite. Run as root:
#   bash scripts/soak.sh 60
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
bash scripts/build.sh >/dev/null
work=$(mktemp -d)
mkdir -p "$work/share" "$work/mnt"
cleanup() { fusermount3 -u "$work/mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
./build/virtiofs-mount -o share="$work/share" soak "$work/mnt"
pid=$(pgrep -f "virtiofs-mount -o share=$work/share" | head -1)
sample() {
  printf '%-8s rss %6s KiB  fds %3s\n' "$1" "$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")" \
    "$(ls "/proc/$pid/fd" | wc -l)"
}
# One round: 4 writers of random files (1 KiB .. 4 MiB), renames, reads back, unlinks; each file
# checked against its source on the backing directory and through the mount.
round() {
  local r=$1
  local dir=$work/mnt/r$((r % 8)) writers=() failed=0
  mkdir -p "$dir"
  for w in 1 2 3 4; do
    (
      size=$(( (RANDOM * 32768 + RANDOM) % (4 << 20) + 1024 ))
      head -c "$size" /dev/urandom > "$work/src.$w"
      cp "$work/src.$w" "$dir/f$w.tmp"
      mv "$dir/f$w.tmp" "$dir/f$w"
      cmp -s "$work/src.$w" "$dir/f$w" || { echo "soak: mismatch through the mount, round $r"; exit 1; }
      cmp -s "$work/src.$w" "$work/share/r$((r % 8))/f$w" || { echo "soak: mismatch on the host, round $r"; exit 1; }
      ls "$dir" > /dev/null
      rm "$dir/f$w"
    ) &
    writers+=($!)
  done
  for p in "${writers[@]}"; do wait "$p" || failed=1; done
  return $failed
}
sample start
end=$(( $(date +%s) + minutes * 60 ))
rounds=0
next_sample=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -lt "$end" ]; do
  round $rounds || exit 1
  rounds=$((rounds + 1))
  if [ "$(date +%s)" -ge "$next_sample" ]; then sample "$(( (next_sample - end) / 60 + minutes ))m"; next_sample=$((next_sample + 60)); fi
done
sample end
echo "soak: $rounds rounds ($((rounds * 4)) files written, renamed, verified and removed) in $minutes min, no mismatch"
