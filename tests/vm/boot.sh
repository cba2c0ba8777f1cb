# Sourced (bash): the QEMU guest shared by the VM rig (tests/vm/run.sh), the guest demo
# (scripts/demo.sh --guest) and the guest benchmark (scripts/bench.sh --guest). A q35 guest with
# intel-iommu, booted from the host's Debian kernel and an initramfs of busybox, the virtio/FUSE/
# VFIO modules, the project's binaries with their libraries, tests/vm/guest-lib.sh (the init's
# prelude) and an init script; vhost-user-fs-pci devices served by real virtiofsd processes.
#
#   vm_setup NAME               root, packages, kernel version, work dir $vm_work, cleanup trap
#   vm_kernel                   $vm_work/vmlinux
#   vm_stage INIT BINARY...     initramfs tree in $vm_root (add files there), then vm_pack
#   vm_virtiofsd NAME DIR OPT.. a virtiofsd on DIR at $vm_work/NAME.sock (pid: vm_pid[NAME])
#   vm_fs_device NAME TAG OPT.. a vhost-user-fs-pci device on that socket, into vm_devices
#   vm_accel [auto|tcg|kvm]     vm_accel_args: KVM when /dev/kvm works (probed), else TCG
#   vm_qemu SMP ARG...          QEMU with vm_accel_args, vm_devices and the guest (vm_qemu_pid)
# Callers add their own pids to vm_pids; all are killed on exit.

vm_boot_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vm_virtiofsd_bin=/usr/lib/qemu/virtiofsd
vm_pids=()
vm_devices=()
declare -A vm_pid

vm_die() { echo "$vm_name: $*" >&2; exit 1; }
vm_need() { vm_die "$1 (run: bash scripts/install-deps.sh)"; }

vm_setup() {
  vm_name=$1
  [ "$(id -u)" = 0 ] || vm_die "run as root"
  command -v qemu-system-x86_64 >/dev/null || vm_need "qemu-system-x86_64 missing"
  [ -x /bin/busybox ] || vm_need "busybox-static missing"
  [ -x "$vm_virtiofsd_bin" ] || vm_need "virtiofsd missing"
  # The newest Debian kernel with its modules installed (the host may run another kernel).
  vm_kver=
  for k in $(ls /boot 2>/dev/null | sed -n 's/^vmlinuz-//p' | sort -V); do
    [ -d "/lib/modules/$k/kernel/drivers/vfio" ] && vm_kver=$k
  done
  [ -n "$vm_kver" ] || vm_need "no kernel image with vfio modules in /boot and /lib/modules"
  vm_work=$(mktemp -d "/tmp/$vm_name.XXXXXX")
  trap vm_cleanup EXIT
  trap 'exit 130' INT TERM
}

# QEMU runs under timeout(1), in timeout's own process group: SIGKILL to timeout would orphan
# QEMU, so TERM first (timeout forwards it; QEMU alone restores a console's terminal), then
# after up to 2 s KILL each pid and its process group.
vm_cleanup() {
  local p alive
  for p in "${vm_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 20); do
    alive=0
    for p in "${vm_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${vm_pids[@]}"; do
    kill -9 -- -"$p" 2>/dev/null || true
    kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [ -z "${vm_tty:-}" ] || stty sane <&"$vm_tty" 2>/dev/null || true
  rm -rf "$vm_work"
}

# The uncompressed kernel boots much faster under TCG than the XZ bzImage (no decompression).
vm_kernel() {
  local image=/boot/vmlinuz-$vm_kver offset
  offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$image" | head -1 | cut -d: -f1)
  [ -n "$offset" ] || vm_need "cannot find the XZ payload in $image"
  tail -c +$((offset + 1)) "$image" | xz -dc > "$vm_work/vmlinux" 2>/dev/null || true
  readelf -h "$vm_work/vmlinux" >/dev/null 2>&1 || vm_need "could not extract vmlinux from $image"
}

# The guest loads these in this order (guest-lib.sh); the ones built into the kernel are absent.
vm_modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci fuse virtiofs
  irqbypass vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci"

vm_stage() {
  local init=$1 m f b lib
  shift
  vm_root=$vm_work/root
  mkdir -p "$vm_root"/{bin,etc,lib/modules,proc,sys,dev,tmp,mnt,host}
  cp /bin/busybox "$vm_root/bin/busybox"
  for m in $vm_modules; do
    f=$(find "/lib/modules/$vm_kver/kernel" -name "$m.ko*" | head -1)
    [ -n "$f" ] || continue  # built in
    case $f in
      *.xz) xz -dc "$f" > "$vm_root/lib/modules/$m.ko" ;;
      *.zst) zstd -dqc "$f" > "$vm_root/lib/modules/$m.ko" ;;
      *) cp "$f" "$vm_root/lib/modules/$m.ko" ;;
    esac
  done
  echo "$vm_modules" > "$vm_root/etc/modules"
  for b in "$@"; do
    cp "$b" "$vm_root/bin/"
    for lib in $(ldd "$b" | grep -o '/[^ ]*'); do
      mkdir -p "$vm_root$(dirname "$lib")"
      cp -L "$lib" "$vm_root$lib"
    done
  done
  cp "$vm_boot_dir/guest-lib.sh" "$vm_root/lib/guest-lib.sh"
  cp "$init" "$vm_root/init"
  chmod +x "$vm_root/init"
}

vm_pack() {
  (cd "$vm_root" && find . -print0 | cpio --null -o -H newc --quiet) > "$vm_work/initrd.img"
}

vm_virtiofsd() {
  local name=$1 dir=$2
  shift 2
  # A virtiofsd leaves its socket file behind when it exits: a new one must not be taken as up.
  rm -f "$vm_work/$name.sock"
  "$vm_virtiofsd_bin" --socket-path="$vm_work/$name.sock" -o source="$dir" "$@" \
    2> "$vm_work/virtiofsd-$name.log" &
  vm_pid[$name]=$!
  vm_pids+=($!)
}

# Waits (up to 5 s) for the sockets of the virtiofsd processes named.
vm_wait_sockets() {
  local name
  for name in "$@"; do
    for _ in $(seq 100); do [ -S "$vm_work/$name.sock" ] && break; sleep 0.05; done
    [ -S "$vm_work/$name.sock" ] || vm_die "virtiofsd $name did not start: $(cat "$vm_work/virtiofsd-$name.log")"
  done
}

vm_fs_device() {
  local name=$1 tag=$2 extra=${3:+,$3}
  vm_devices+=(-chardev "socket,id=$name,path=$vm_work/$name.sock"
               -device "vhost-user-fs-pci,chardev=$name,tag=$tag$extra")
}

# KVM only where it really runs a guest: /dev/kvm can exist and still fail (nested
# virtualisation without the MSRs QEMU sets: it aborts, or a vCPU spins). The probe boots the
# kernel to its "no root" panic, which -no-reboot turns into an exit; at most 15 s. It uses
# vm_qemu's machine (vm_machine_args) so that it tests what will run. Under KVM the interrupt
# remapping of intel-iommu needs kernel-irqchip=split (q35's default "on" is refused).
# In the background, in vm_pids: an interrupted script stops it too.
vm_accel() {
  local mode=${1:-auto} probe
  vm_accel_args=(-accel tcg -cpu max)
  vm_accel_name="TCG (asked for)"
  if [ "$mode" = tcg ]; then return; fi
  vm_accel_name="TCG (no /dev/kvm)"
  if [ -e /dev/kvm ]; then
    vm_accel_name="TCG (/dev/kvm is there but does not run a guest)"
    timeout -s KILL 15 qemu-system-x86_64 -accel kvm,kernel-irqchip=split -cpu host \
      "${vm_machine_args[@]}" -serial none -kernel "$vm_work/vmlinux" -append "panic=-1 loglevel=0" \
      >/dev/null 2>&1 </dev/null &
    probe=$!
    vm_pids+=($probe)
    if wait "$probe" 2>/dev/null; then  # (no "Aborted" message)
      vm_accel_args=(-accel kvm,kernel-irqchip=split -cpu host)
      vm_accel_name=KVM
      return
    fi
  fi
  [ "$mode" != kvm ] || vm_die "KVM asked for but it does not run a guest here"
}

# vm_qemu SMP [more QEMU arguments]: starts the guest in the background (vm_qemu_pid), bounded
# by VIRTIOFS_VM_TIMEOUT (seconds, default 600; 0: unbounded, for an interactive console, as
# timeout(1) would take QEMU out of the terminal's process group). It keeps the script's stdin
# (a background job would get /dev/null). Memory is a shared memfd: vhost-user backends map it.
# -nodefaults drops the NIC and its option ROM.
#
# SMP: with TCG, "1,maxcpus=2" makes TCG translate for parallel vCPUs, so guest fences become
# host fences: with plain -smp 1 TCG drops them, and the store-load ordering the ring needs
# against virtiofsd (a host thread) is lost (seen here: interrupts lost after a few hundred
# requests). One vCPU still runs, for steadier timings.
vm_machine_args=(-machine q35 -m 1G -nodefaults -display none -no-reboot
  -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem
  -device intel-iommu,intremap=on)
vm_qemu() {
  local smp=$1 limit=() timeout_s=${VIRTIOFS_VM_TIMEOUT:-600}
  shift
  [ "$timeout_s" = 0 ] || limit=(timeout -s KILL "$timeout_s")
  exec {vm_stdin}<&0
  # An interactive console: the cleanup restores the terminal if QEMU could not.
  [ "$timeout_s" != 0 ] || ! [ -t 0 ] || vm_tty=$vm_stdin
  "${limit[@]}" qemu-system-x86_64 "${vm_accel_args[@]}" -smp "$smp" "${vm_machine_args[@]}" \
    "${vm_devices[@]}" \
    -kernel "$vm_work/vmlinux" -initrd "$vm_work/initrd.img" \
    -append "console=ttyS0 intel_iommu=on panic=-1 quiet loglevel=3" "$@" <&$vm_stdin &
  vm_qemu_pid=$!
  vm_pids+=($!)
}

# CPU seconds (user+system) a process and its children have used so far (virtiofsd's sandbox
# forks: the child does the work).
# A process can exit between the listing and the read (mawk dies on a missing file): only
# readable files, and 0 rather than a failure (callers run under set -e).
vm_cpu_seconds() {
  local procs=() c
  for c in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    [ -r "/proc/$c/stat" ] && procs+=("/proc/$c/stat")
  done
  [ ${#procs[@]} -gt 0 ] || { printf 0; return 0; }
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); t += $12 + $13 } END { printf "%.2f", t / hz }' \
    "${procs[@]}" 2>/dev/null || printf 0
}
