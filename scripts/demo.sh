#!/usr/bin/env bash
# The main job, run as root:
#   bash scripts/demo.sh                    on this machine: mounts a sample directory through
#       virtiofsd -> vhost-user -> libvirtiofs -> FUSE with virtiofs-mount, uses it with
#       ordinary commands, and leaves it mounted;
#   bash scripts/demo.sh --guest [--shell]  in a QEMU guest (KVM when it works here, else TCG):
#       the directory is a vhost-user-fs-pci device "myfs" served by virtiofsd; the guest binds
#       it to vfio-pci (virtiofs bind myfs), mounts it (virtiofs-mount myfs /mnt), writes, reads
#       and lists there; afterwards this script shows the guest's files in the host directory and
#       exits 0 only if they are there. --shell: a shell on the guest's console, mount live.
# VIRTIOFS_DEMO_SHARE: the host directory (default /srv/virtiofs-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
mnt=${VIRTIOFS_DEMO_MOUNT:-/mnt/virtiofs-demo}
share=${VIRTIOFS_DEMO_SHARE:-/srv/virtiofs-demo}

if [ "${1:-}" = --guest ]; then
  shell=0
  [ "${2:-}" = --shell ] && shell=1
  . tests/vm/boot.sh
  vm_setup virtiofs-demo
  mkdir -p "$share"
  share=$(realpath "$share")
  # virtiofsd -o source=DIR would split DIR at a comma.
  case $share in *,*) vm_die "VIRTIOFS_DEMO_SHARE must not contain a comma: $share" ;; esac
  [ -e "$share/hello.txt" ] || echo "hello from the host" > "$share/hello.txt"
  echo "== preparing the guest: kernel $vm_kver, initramfs with virtiofs and virtiofs-mount"
  vm_kernel
  vm_stage tests/vm/demo-init.sh build/virtiofs build/virtiofs-mount
  token=$(date -u +%Y%m%dT%H%M%SZ)-$$
  printf 'DEMO_TOKEN=%s\nDEMO_SHELL=%s\n' "$token" "$shell" > "$vm_root/etc/vm.env"
  vm_pack
  vm_virtiofsd fs "$share" -o cache=auto -o log_level=warn
  vm_wait_sockets fs
  vm_fs_device fs myfs
  vm_accel "${VIRTIOFS_VM_ACCEL:-auto}"
  echo "== booting: QEMU q35, $vm_accel_name, virtiofsd on $share as device \"myfs\""
  if [ "$shell" = 1 ]; then
    echo "== --shell: at the guest's prompt, \"exit\" unmounts and powers off; \"poweroff -f\" stops at once;"
    echo "   Ctrl-A X kills QEMU. Then this script checks the host directory."
    # The console on this terminal (Ctrl-A X quits QEMU, Ctrl-A C its monitor), unbounded.
    VIRTIOFS_VM_TIMEOUT=0 vm_qemu 2 -chardev stdio,id=con,mux=on,signal=off,logfile="$vm_work/console.log" \
      -serial chardev:con -mon chardev=con
    wait "$vm_qemu_pid" || true
  else
    vm_qemu 2 -serial file:"$vm_work/console.log"
    # Unbuffered: the console shows live, not when QEMU exits.
    tail -n +1 -F --pid="$vm_qemu_pid" "$vm_work/console.log" 2>/dev/null | sed -u 's/\r$//' |
      grep --line-buffered -av '^vm: \(PASS\|sha256\|booted\|WRITES-OK\)' || true
    wait "$vm_qemu_pid" || true
  fi
  touch "$vm_work/console.log"  # QEMU may not have made it: the diagnostics below still run
  # Ways out of --shell other than "exit" skip the guest's final result; its mark made before
  # the shell says the writes were done and checked.
  done_mark='^vm: RESULT PASS'
  [ "$shell" = 0 ] || done_mark='^vm: \(RESULT PASS\|WRITES-OK\)'
  echo
  echo "== the guest has stopped; on the host, $share/from-the-guest:"
  ls -l "$share/from-the-guest" 2>/dev/null || true
  cat "$share/from-the-guest/hello.txt" 2>/dev/null || true
  sum=$(tr -d '\r' < "$vm_work/console.log" | sed -n 's/^vm: sha256 //p' | tail -1)
  if grep -q "(run $token)" "$share/from-the-guest/hello.txt" 2>/dev/null &&
     [ -n "$sum" ] && [ "$(stat -c %s "$share/from-the-guest/random.bin" 2>/dev/null)" = 8388608 ] &&
     [ "$(sha256sum < "$share/from-the-guest/random.bin" | cut -d' ' -f1)" = "$sum" ] &&
     tr -d '\r' < "$vm_work/console.log" | grep -aq "$done_mark"; then
    echo "== PASS: the guest's writes are in $share (random.bin: sha256 ${sum:0:16}... on both sides)"
    exit 0
  fi
  echo "== FAILED: the guest's writes of this run are not all in $share; the guest said:" >&2
  tr -d '\r' < "$vm_work/console.log" | grep -a '^vm: ' >&2 || true
  exit 1
fi

if mountpoint -q "$mnt"; then
  echo "== $mnt is still mounted from an earlier run: unmounting it"
  fusermount3 -u "$mnt"
fi
mkdir -p "$mnt" "$share"
echo "hello from the host" > "$share/hello.txt"

echo "== virtiofs-mount -o share=$share demo $mnt"
./build/virtiofs-mount -o share="$share" demo "$mnt"
echo "== mounted:"; grep " $mnt " /proc/mounts
echo "== ls -l $mnt";                ls -l "$mnt"
echo "== cat $mnt/hello.txt";        cat "$mnt/hello.txt"
echo "== write $mnt/notes/from-the-mount.txt"
mkdir -p "$mnt/notes"
echo "written through libvirtiofs at $(date -u +%FT%TZ)" > "$mnt/notes/from-the-mount.txt"
echo "== on the host, $share/notes/from-the-mount.txt:"; cat "$share/notes/from-the-mount.txt"
echo "== 64 MiB through the mount, checked on the host"
head -c $((64 << 20)) /dev/urandom > "$mnt/notes/random.bin"
cmp "$mnt/notes/random.bin" "$share/notes/random.bin" && echo "identical ($(stat -c %s "$share/notes/random.bin") bytes)"
echo "== df -h $mnt";                df -h "$mnt"
echo
echo "$share is mounted at $mnt (virtiofsd -> vhost-user -> libvirtiofs -> FUSE)."
echo "Unmount with:  fusermount3 -u $mnt   (or: umount $mnt); virtiofsd stops with it."
