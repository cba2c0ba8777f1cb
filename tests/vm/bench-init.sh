#!/bin/busybox sh
# PID 1 of the guest benchmark (scripts/bench.sh --guest). Three devices on one host directory,
# each with its own virtiofsd: "vfiofs" bound to vfio-pci and mounted with virtiofs-mount,
# "kernfs" mounted by the guest kernel's virtio-fs driver, and, when BENCH_OPTS is set, "optfs"
# with virtiofs-mount -o BENCH_OPTS. One virtiofs-fsbench over all of them (BENCH_ARGS: rounds,
# sizes), with the CPU per operation; "vm: T " lines are its table, BENCH-START/END let the host
# read virtiofsd's CPU around it.
. /lib/guest-lib.sh

step "virtiofs bind vfiofs" virtiofs bind vfiofs
[ -n "$BENCH_OPTS" ] && step "virtiofs bind optfs" virtiofs bind optfs
mkdir -p /mnt/vfio /mnt/kernel /mnt/opt
step "virtiofs-mount vfiofs /mnt/vfio" virtiofs-mount vfiofs /mnt/vfio
step "mount -t virtiofs kernfs /mnt/kernel" mount -t virtiofs kernfs /mnt/kernel
# Each target in its own directory: the mounts see one host directory.
mkdir -p /mnt/vfio/a /mnt/kernel/b
set -- "virtiofs-mount=/mnt/vfio/a,cpu_pids=$(mount_pid /mnt/vfio)" linux-virtiofs=/mnt/kernel/b
if [ -n "$BENCH_OPTS" ]; then
  label="+$(echo "$BENCH_OPTS" | tr '=' ':')"
  step "virtiofs-mount -o $BENCH_OPTS optfs /mnt/opt" virtiofs-mount -o "$BENCH_OPTS" optfs /mnt/opt
  mkdir -p /mnt/opt/c
  set -- "$@" "$label=/mnt/opt/c,cpu_pids=$(mount_pid /mnt/opt)"
fi
log "cpus online: $(grep -c '^processor' /proc/cpuinfo)"
if [ "$failed" = 0 ]; then
  log "BENCH-START"
  # shellcheck disable=SC2086
  virtiofs-fsbench --cpu --ratio-to linux-virtiofs $BENCH_ARGS "$@" > /tmp/table 2>&1 ||
    { log "FAIL virtiofs-fsbench"; failed=1; }
  log "BENCH-END"
  sed 's/^/vm: T /' /tmp/table
  sleep 1  # the host reads virtiofsd's CPU now
fi
umount /mnt/opt 2>/dev/null
umount /mnt/vfio
umount /mnt/kernel
finish
