#!/bin/busybox sh
# PID 1 of the guest demo (scripts/demo.sh --guest): the project's main job as a user would do
# it in a VM. Hands the virtio-fs device "myfs" to vfio-pci, mounts it with virtiofs-mount,
# writes, reads and lists there, and powers off (DEMO_SHELL=1: first a shell on the console).
# DEMO_TOKEN (from the host, /etc/vm.env) marks this run's file, for the host's check.
. /lib/guest-lib.sh
say() { printf '\n== (guest) %s\n' "$*"; }

say "virtiofs probe   # the virtio-fs devices this guest has"
virtiofs probe
say "virtiofs bind myfs   # to vfio-pci: from now on userspace drives the device"
step "virtiofs bind myfs" virtiofs bind myfs
virtiofs probe
say "virtiofs-mount myfs /mnt"
if step "virtiofs-mount myfs /mnt" virtiofs-mount myfs /mnt; then
  grep " /mnt " /proc/mounts
  say "ls -l /mnt"
  ls -l /mnt
  say "cat /mnt/hello.txt"
  cat /mnt/hello.txt
  say "write /mnt/from-the-guest/hello.txt and 8 MiB of random bytes"
  mkdir -p /mnt/from-the-guest
  echo "written in the guest through virtiofs-mount over VFIO (run $DEMO_TOKEN)" \
    > /mnt/from-the-guest/hello.txt
  step "dd 8 MiB to random.bin" dd if=/dev/urandom of=/mnt/from-the-guest/random.bin bs=1M count=8
  sum=$(sha256sum < /mnt/from-the-guest/random.bin | cut -d' ' -f1)
  log "sha256 $sum"
  say "read back from the device (page cache dropped first)"
  sync
  echo 3 > /proc/sys/vm/drop_caches
  cat /mnt/from-the-guest/hello.txt
  step "random.bin reads back the same" [ "$(sha256sum < /mnt/from-the-guest/random.bin | cut -d' ' -f1)" = "$sum" ]
  say "ls -l /mnt/from-the-guest; df -h /mnt"
  ls -l /mnt/from-the-guest
  df -h /mnt
  if [ "${DEMO_SHELL:-0}" = 1 ]; then
    # "poweroff -f" and Ctrl-A X skip finish: the host then accepts this mark instead.
    sync
    [ "$failed" = 0 ] && log "WRITES-OK"
    cat <<MSG

== (guest) A shell on the guest's console; the host directory is mounted at /mnt through
   virtiofs-mount over VFIO. Leave with "exit" (unmounts and powers off; the host script then
   checks the host directory), "poweroff -f" (at once), or Ctrl-A X (kills QEMU).
MSG
    cd /mnt
    setsid cttyhack sh
    cd /
  fi
  sync
  step "umount /mnt" umount /mnt
fi
finish
