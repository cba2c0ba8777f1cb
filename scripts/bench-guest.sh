#!/usr/bin/env bash
# The guest benchmark (bash scripts/bench.sh --guest, run as root; not part of the test suite):
# in a QEMU q35 guest (tests/vm/boot.sh; KVM when it works here, else TCG), virtiofs-mount over
# VFIO against the guest kernel's own virtio-fs driver, side by side in one boot, booted twice:
# with -smp 1,maxcpus=2 (one vCPU; maxcpus=2 keeps TCG's fences, see tests/vm/boot.sh) and with
# -smp 2. Each boot runs one virtiofs-fsbench over both: its rows (cold stat, open+close,
# create+unlink, 4 KiB random read at depth 1, 1 MiB sequential write and read, tree walk, ...),
# three interleaved rounds, medians, the range of the per-round ratios to the kernel driver, and
# for each row the CPU per operation: of fsbench and virtiofs-mount (/proc/PID/stat), and the
# whole guest's busy time (/proc/stat: holds the kernel driver's work and virtiofs-mount's alike). virtiofsd's
# CPU is read on the host around the whole fsbench run (not per row: the host cannot see where
# the guest's rows begin), one figure per device.
#
# Two identical devices rather than one switched between drivers: each is a vhost-user-fs-pci on
# the same host directory with its own virtiofsd started with the same options, so the two
# columns differ only in the guest driver; the idle one costs nothing (its driver sleeps); each
# virtiofsd's CPU belongs to one column; and fsbench's own interleaving (A B, B A, A B) applies,
# with no unbind/bind/remount between rounds.
#
# Knobs (environment):
#   VIRTIOFS_BENCH_MOUNT_OPTS=OPTS  a third device and column: virtiofs-mount -o OPTS (e.g.
#                                   poll_us=50), to measure a lever against the default mount
#                                   and the kernel driver in the same boot;
#   VIRTIOFS_BENCH_SMP="1,maxcpus=2 2"  the boots (QEMU -smp values);
#   VIRTIOFS_BENCH_ARGS             virtiofs-fsbench sizes (default below: ~4 min a boot, TCG;
#                                   arguments to this script replace it);
#   VIRTIOFS_VM_ACCEL=auto|tcg|kvm  (default auto).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
. tests/vm/boot.sh
vm_setup virtiofs-bench
opts=${VIRTIOFS_BENCH_MOUNT_OPTS:-}
args=${VIRTIOFS_BENCH_ARGS:---rounds 3 --mib 64 --files 1000 --ops 1000 --seconds 2}
[ $# = 0 ] || args="$*"  # bench.sh --guest --rounds 5 ...: fsbench options, as VIRTIOFS_BENCH_ARGS
# A -smp 2 boot under load took 370 s: more room than the rig's default 600 s.
VIRTIOFS_VM_TIMEOUT=${VIRTIOFS_VM_TIMEOUT:-1200}
vm_kernel
vm_stage tests/vm/bench-init.sh build/virtiofs build/virtiofs-mount build/virtiofs-fsbench
printf 'BENCH_ARGS="%s"\nBENCH_OPTS="%s"\n' "$args" "$opts" > "$vm_root/etc/vm.env"
vm_pack
vm_accel "${VIRTIOFS_VM_ACCEL:-auto}"
devices=(vfio kern)
[ -n "$opts" ] && devices+=(opt)
declare -A tag=([vfio]=vfiofs [kern]=kernfs [opt]=optfs)
declare -A column=([vfio]=virtiofs-mount [kern]=linux-virtiofs [opt]="virtiofs-mount -o $opts")
status=0
for smp in ${VIRTIOFS_BENCH_SMP:-1,maxcpus=2 2}; do
  share=$vm_work/share-${smp//[^0-9a-z]/_}  # no comma: virtiofsd -o source= would split it
  mkdir -p "$share"
  vm_devices=()
  for d in "${devices[@]}"; do
    vm_virtiofsd "$d" "$share" -o cache=auto -o log_level=warn
    vm_fs_device "$d" "${tag[$d]}"
  done
  vm_wait_sockets "${devices[@]}"
  console=$vm_work/console-${smp//[^0-9a-z]/_}.log
  started=$(date +%s)
  vm_qemu "$smp" -serial file:"$console"
  # virtiofsd's CPU when the guest starts and ends its fsbench run.
  declare -A cpu0=() cpu1=()
  while kill -0 "$vm_qemu_pid" 2>/dev/null; do
    for d in "${devices[@]}"; do
      if [ -z "${cpu0[$d]:-}" ] && grep -aq "^vm: BENCH-START" "$console" 2>/dev/null; then
        cpu0[$d]=$(vm_cpu_seconds "${vm_pid[$d]}")
      elif [ -z "${cpu1[$d]:-}" ] && grep -aq "^vm: BENCH-END" "$console" 2>/dev/null; then
        cpu1[$d]=$(vm_cpu_seconds "${vm_pid[$d]}")
      fi
    done
    sleep 0.2
  done
  wait "$vm_qemu_pid" || true
  touch "$console"  # QEMU may not have made it: the diagnostics below still run
  echo "== guest -smp $smp, $vm_accel_name, $(( $(date +%s) - started )) s: virtiofs-fsbench --cpu $args"
  echo "   (\"CPU\": fsbench's and virtiofs-mount's CPU per operation; \"all CPUs\": the guest's busy time)"
  tr -d '\r' < "$console" | sed -n 's/^vm: T //p'
  echo "   virtiofsd CPU on the host during the fsbench run (all rows and rounds):"
  for d in "${devices[@]}"; do
    awk -v a="${cpu0[$d]:-0}" -v b="${cpu1[$d]:-0}" -v c="${column[$d]}" \
      'BEGIN { printf "     %-32s %6.2f s\n", "for " c ":", b - a }'
  done
  if ! tr -d '\r' < "$console" | grep -aq '^vm: RESULT PASS'; then
    echo "bench: the guest run failed:" >&2
    tr -d '\r' < "$console" | tail -n 40 >&2
    status=1
  fi
  echo
done
exit $status
