# Sourced by every guest init (/lib/guest-lib.sh, staged by boot.sh): the busybox world, the
# kernel filesystems, the modules in order, hugepages for the physical-address DMA path, and
# log/step/finish. Lines starting "vm: " are what the host scripts read from the console.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
[ -f /etc/vm.env ] && . /etc/vm.env  # settings from the host script
log() { echo "vm: $*"; }
failed=0
step() {
  name=$1
  shift
  if "$@"; then log "PASS $name"; else log "FAIL $name"; failed=1; fi
}
finish() {
  [ "$failed" = 0 ] && log "RESULT PASS" || log "RESULT FAIL"
  sync
  poweroff -f
}
for m in $(cat /etc/modules); do
  insmod "/lib/modules/$m.ko" 2>/dev/null
done
log "booted in $(cut -d' ' -f1 /proc/uptime) s"
# The physical-address path needs hugepages for device memory.
echo 128 > /proc/sys/vm/nr_hugepages
# The pid of the virtiofs-mount serving mount point $1 (for its CPU time).
mount_pid() {
  for p in /proc/[0-9]*; do
    tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q "virtiofs-mount .* $1 *$" && { echo "${p#/proc/}"; return; }
  done
}
