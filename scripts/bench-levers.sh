#!/usr/bin/env bash
# A/B of virtiofs-mount options in one run (run as root; not part of the suite): mounts the same
# directory once per option set, each with its own virtiofsd (share=), beside libfuse's
# passthrough_ll, and runs one virtiofs-fsbench over all of them: interleaved rounds, medians,
# ratios to passthrough_ll, and with --cpu the CPU per operation of the client (fsbench) and
# of each mount's servers (virtiofs-mount and its virtiofsd; passthrough_ll).
#   bash scripts/bench-levers.sh [-b BUILD] LABEL=OPTS [LABEL=OPTS...] [-- fsbench options]
# OPTS are -o options for virtiofs-mount ("" for the defaults); LABEL@PATH=OPTS runs the
# virtiofs-mount at PATH instead (another revision's build), e.g.
#   bash scripts/bench-levers.sh default= poll=poll_us=200 -- --rounds 3 --cpu
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
if [ "${1:-}" = "-b" ]; then build=$2; shift 2; fi
variants=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do variants+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
work=$(mktemp -d)
mkdir -p "$work/share" "$work/p"
uring_param=/sys/module/fuse/parameters/enable_uring
uring_was=""
cleanup() {
  for m in "$work"/m*; do fusermount3 -u "$m" 2>/dev/null || true; done
  fusermount3 -u "$work/p" 2>/dev/null || true
  if [ -n "$uring_was" ]; then echo "$uring_was" > "$uring_param"; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ -w "$uring_param" ]; then uring_was=$(cat "$uring_param"); echo Y > "$uring_param"; fi
cc -O2 -o "$work/passthrough_ll" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c \
  $(pkg-config --cflags --libs fuse3)
targets=()
i=0
for v in "${variants[@]}"; do
  label=${v%%=*} opts=${v#*=} bin=$build/virtiofs-mount
  if [[ $label == *@* ]]; then bin=${label#*@} label=${label%%@*}; fi
  i=$((i + 1))
  mkdir -p "$work/m$i"
  "$bin" -o "share=$work/share${opts:+,$opts}" bench "$work/m$i"
  # The mount's servers: the daemon holding the mount and the virtiofsd it started.
  pid=$(pgrep -n -f -- "-o share=$work/share.* $work/m$i\$")
  pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
  targets+=("$label=$work/m$i,cpu_pids=$(echo $pids | tr ' ' ':')")
done
"$work/passthrough_ll" -o source="$work/share" "$work/p"
targets+=("passthrough_ll=$work/p,cpu_pids=$(pgrep -n -f "$work/passthrough_ll")")
echo "== virtiofs-mount variants: ${variants[*]}"
"$build/virtiofs-fsbench" --ratio-to passthrough_ll "$@" "${targets[@]}"
