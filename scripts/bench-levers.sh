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
source scripts/bench-mounts.sh
targets=()
for v in "${variants[@]}"; do
  label=${v%%=*} opts=${v#*=} bin=$build/virtiofs-mount
  if [[ $label == *@* ]]; then bin=${label#*@} label=${label%%@*}; fi
  mount_variant "$bin" "$opts"
  targets+=("$label=$mnt,cpu_pids=$(echo $pids | tr ' ' ':')")
done
mount_passthrough
targets+=("passthrough_ll=$work/p,cpu_pids=$pids")
echo "== virtiofs-mount variants: ${variants[*]}"
"$build/virtiofs-fsbench" --ratio-to passthrough_ll "$@" "${targets[@]}"
