#!/bin/busybox sh
# PID 1 of the VM rig's guest (see run.sh). Loads the drivers, binds the virtio-fs device and the
# IOMMU-honouring rng to vfio-pci, runs the tests and the side-by-side workload, and powers off.
# Lines starting "vm: " are read by run.sh.
. /lib/guest-lib.sh

virtiofs probe
fs=$(virtiofs probe | awk '$4 == "vmfs" { print $1 }')
view=$(virtiofs probe | awk '$4 == "hostview" { print $1 }')
# The rngs in slot order: one MSI-X vector per queue, then one vector only, then none (INTx).
rngs=
for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1044 ] && rngs="$rngs ${d##*/}"
done
rng=$(echo $rngs | cut -d' ' -f1)
rng_fallbacks=$(echo $rngs | cut -s -d' ' -f2-)
if [ -z "$fs" ] || [ -z "$view" ]; then
  log "virtio-fs devices not found"
  failed=1
  finish
fi
mkdir -p /host /mnt/vfio /mnt/kernel
# The host directory as the guest kernel sees it (cache=none): where results are checked.
step "kernel mount of the host view" mount -t virtiofs hostview /host
step "virtiofs bind vmfs" virtiofs bind vmfs
for tag in sharedvec intx; do step "virtiofs bind $tag" virtiofs bind $tag; done
shared=$(virtiofs probe | awk '$4 == "sharedvec" { print $1 }')
intx=$(virtiofs probe | awk '$4 == "intx" { print $1 }')
for r in $rngs; do
  echo vfio-pci > "/sys/bus/pci/devices/$r/driver_override"
  [ -e "/sys/bus/pci/devices/$r/driver" ] && echo "$r" > "/sys/bus/pci/devices/$r/driver/unbind"
  echo "$r" > /sys/bus/pci/drivers_probe
done
virtiofs probe

export VIRTIOFS_TEST_PCI_DEVICE=$fs VIRTIOFS_TEST_OTHER_FS=$view VIRTIOFS_TEST_RNG_DEVICE=$rng \
       VIRTIOFS_TEST_MOUNT_TOOL=/bin/virtiofs-mount VIRTIOFS_TEST_SHARED_VECTOR_DEVICE=$shared \
       VIRTIOFS_TEST_INTX_DEVICE=$intx VIRTIOFS_TEST_RNG_FALLBACKS="$rng_fallbacks"
step "vm_tests" vm_tests
VIRTIOFS_TEST_HOST_VIEW=/host step "integration tests over VFIO" \
  integration_tests --gtest_filter='ClientTest.*:SmallRingTest.*'
unset VIRTIOFS_TEST_PCI_DEVICE

# The library API on the device (GETATTR round trips, 1 MiB read/write).
log "library bench:"
virtiofs --tag vmfs bench 2 | sed 's/^/vm: lib /'

# virtiofs-mount over VFIO: read, write, rename, readdir, checked in the host view (and by run.sh
# on the host directory itself after the guest stops).
rig_workload() {
  m=$1
  mkdir -p "$m/rig/dir" || return 1
  echo "written through virtiofs-mount over VFIO" > "$m/rig/hello.txt" || return 1
  dd if=/dev/urandom of=/tmp/random.bin bs=1024 count=4096 2>/dev/null
  cp /tmp/random.bin "$m/rig/random.bin" || return 1
  cmp /tmp/random.bin "$m/rig/random.bin" || return 1
  cmp /tmp/random.bin /host/rig/random.bin || return 1
  i=0
  while [ $i -lt 200 ]; do echo $i > "$m/rig/dir/f$i"; i=$((i + 1)); done
  [ "$(ls "$m/rig/dir" | wc -l)" = 200 ] || return 1
  [ "$(ls /host/rig/dir | wc -l)" = 200 ] || return 1
  mv "$m/rig/dir/f7" "$m/rig/renamed" || return 1
  [ -e /host/rig/renamed ] && [ ! -e /host/rig/dir/f7 ] || return 1
  grep -q "over VFIO" /host/rig/hello.txt
}
if step "virtiofs-mount vmfs /mnt/vfio" virtiofs-mount vmfs /mnt/vfio; then
  grep /mnt/vfio /proc/mounts | sed 's/^/vm: /'
  step "read/write/rename/readdir through virtiofs-mount" rig_workload /mnt/vfio
  mkdir -p /mnt/vfio/bench
  log "fsbench this-driver:"
  virtiofs-fsbench --mib 32 --files 200 --ops 400 this-driver=/mnt/vfio/bench | sed 's/^/vm: A /'
  step "umount /mnt/vfio" umount /mnt/vfio
  sleep 1
fi

# Device removal while mounted and busy: the host deletes the "unplug" device (QEMU device_del).
# The pending requests fail, virtiofs-mount exits with "device lost", nothing is left mounted.
unplug_test() {
  virtiofs bind unplug || return 1
  mkdir -p /mnt/unplug
  # In the foreground, to see what it says when the device goes.
  virtiofs-mount -f unplug /mnt/unplug 2> /tmp/unplug.err &
  tool=$!
  t=0
  while [ $t -lt 50 ] && ! grep -q " /mnt/unplug " /proc/mounts; do sleep 0.2; t=$((t + 1)); done
  # The writer keeps one file open on the mount: once the device is gone its writes must fail
  # (not hang, and not land in the bare directory left after the unmount).
  ( exec 3> /mnt/unplug/busy || exit 1
    i=0; while echo $i >&3 2>/dev/null; do i=$((i + 1)); done
    echo "writer stopped after $i writes" > /tmp/writer.done ) &
  sleep 1
  log "UNPLUG-NOW"
  t=0
  while [ $t -lt 120 ] && { grep -q " /mnt/unplug " /proc/mounts || kill -0 $tool 2>/dev/null; }; do
    sleep 0.5; t=$((t + 1))
  done
  wait $tool
  status=$?
  log "unplug: tool exit $status after $((t / 2)) s: $(cat /tmp/unplug.err)"
  log "unplug: $(cat /tmp/writer.done 2>/dev/null || echo writer still running)"
  sleep 6  # pciehp finishes the removal once VFIO has let go
  ! grep -q " /mnt/unplug " /proc/mounts && [ -e /tmp/writer.done ] && [ "$status" = 1 ] &&
    grep -q "device lost" /tmp/unplug.err && ! virtiofs probe | grep -q " unplug "
}
step "device removed while mounted (device_del)" unplug_test

# The same device and workload through the guest kernel's own driver.
step "virtiofs unbind vmfs" virtiofs unbind vmfs
if step "mount -t virtiofs vmfs /mnt/kernel" mount -t virtiofs vmfs /mnt/kernel; then
  mkdir -p /mnt/kernel/bench
  log "fsbench linux-virtiofs:"
  virtiofs-fsbench --mib 32 --files 200 --ops 400 linux-virtiofs=/mnt/kernel/bench | sed 's/^/vm: B /'
  umount /mnt/kernel
fi
finish
