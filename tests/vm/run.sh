#!/usr/bin/env bash
# The VM rig: boots a QEMU q35 guest (TCG, intel-iommu) with a vhost-user-fs-pci device served by
# a real virtiofsd on a host directory, binds it to vfio-pci inside the guest and runs there the
# VFIO tests, the library integration tests, a virtiofs-mount workload, and the same workload
# through the guest kernel's virtio-fs driver for a side-by-side figure. Checks the host directory
# afterwards. Stops the guest and the backends on every path.
#
# usage: run.sh VIRTIOFS VIRTIOFS_MOUNT DIRBENCH INTEGRATION_TESTS VM_TESTS   (ctest passes them)
# Needs root and the packages of scripts/install-deps.sh (qemu-system-x86, linux-image-amd64,
# busybox-static). VIRTIOFS_VM_TIMEOUT (seconds, default 600) bounds the guest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -ne 5 ]; then
  sed -n 's/^# usage: //p' "$0" >&2
  exit 2
fi
binaries=("$@")
timeout_s=${VIRTIOFS_VM_TIMEOUT:-600}
need() { echo "vm rig: $1 (run: bash scripts/install-deps.sh)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "vm rig: run as root" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || need "qemu-system-x86_64 missing"
[ -x /bin/busybox ] || need "busybox-static missing"
virtiofsd=/usr/lib/qemu/virtiofsd
[ -x "$virtiofsd" ] || need "virtiofsd missing"
# The newest Debian kernel with its modules installed (the host may run another kernel).
kver=
for k in $(ls /boot 2>/dev/null | sed -n 's/^vmlinuz-//p' | sort -V); do
  [ -d "/lib/modules/$k/kernel/drivers/vfio" ] && kver=$k
done
[ -n "$kver" ] || need "no kernel image with vfio modules in /boot and /lib/modules"

work=$(mktemp -d /tmp/virtiofs-vm.XXXXXX)
pids=()
cleanup() {
  [ -n "${VIRTIOFS_VM_KEEP:-}" ] && cp "$work/console.log" "$VIRTIOFS_VM_KEEP" 2>/dev/null
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
started=$(date +%s%N)

# The uncompressed kernel boots much faster under TCG than the XZ bzImage (no decompression).
offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "/boot/vmlinuz-$kver" | head -1 | cut -d: -f1)
[ -n "$offset" ] || need "cannot find the XZ payload in /boot/vmlinuz-$kver"
tail -c +$((offset + 1)) "/boot/vmlinuz-$kver" | xz -dc > "$work/vmlinux" 2>/dev/null || true
readelf -h "$work/vmlinux" >/dev/null 2>&1 || need "could not extract vmlinux from /boot/vmlinuz-$kver"

# Initramfs: busybox, the modules, our binaries and the shared libraries they need.
root=$work/root
mkdir -p "$root"/{bin,lib/modules,proc,sys,dev,tmp,mnt,host}
cp /bin/busybox "$root/bin/busybox"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci fuse virtiofs \
         irqbypass vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci; do
  f=$(find "/lib/modules/$kver/kernel" -name "$m.ko*" | head -1)
  [ -n "$f" ] || continue  # built in
  case $f in
    *.xz) xz -dc "$f" > "$root/lib/modules/$m.ko" ;;
    *.zst) zstd -dqc "$f" > "$root/lib/modules/$m.ko" ;;
    *) cp "$f" "$root/lib/modules/$m.ko" ;;
  esac
done
for b in "${binaries[@]}"; do
  cp "$b" "$root/bin/"
  for lib in $(ldd "$b" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
cp "${VIRTIOFS_VM_INIT:-$here/guest-init.sh}" "$root/init"  # override: for debugging the rig
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) > "$work/initrd.img"

# Two virtiofsd on one host directory: "vmfs" is the device under test; "hostview" (cache=none)
# lets the guest see the directory directly to check results.
share=$work/share
mkdir -p "$share"
"$virtiofsd" --socket-path="$work/fs.sock" -o source="$share" -o cache=auto -o xattr \
  -o log_level=warn 2> "$work/virtiofsd-fs.log" &
pids+=($!)
"$virtiofsd" --socket-path="$work/view.sock" -o source="$share" -o cache=none -o xattr \
  -o log_level=warn 2> "$work/virtiofsd-view.log" &
pids+=($!)
# Two more devices on the same directory for the interrupt fallbacks: one MSI-X vector shared
# by config and both queues, and no MSI-X at all (INTx).
for dev in shared intx unplug; do
  "$virtiofsd" --socket-path="$work/$dev.sock" -o source="$share" -o cache=none \
    -o log_level=${VIRTIOFS_VM_LOG:-warn} 2> "$work/virtiofsd-$dev.log" &
  pids+=($!)
done
for _ in $(seq 100); do
  [ -S "$work/fs.sock" ] && [ -S "$work/view.sock" ] && [ -S "$work/shared.sock" ] && \
    [ -S "$work/intx.sock" ] && [ -S "$work/unplug.sock" ] && break
  sleep 0.05
done

# maxcpus=2 makes TCG translate for parallel vCPUs, so guest fences become host fences: with
# plain -smp 1 TCG drops them, and the store-load ordering the ring needs against virtiofsd (a
# host thread) is lost (seen here: interrupts lost after a few hundred requests). One vCPU still
# runs, for steadier timings.
timeout -s KILL "$timeout_s" qemu-system-x86_64 \
  -machine q35 -accel tcg -cpu max -smp 1,maxcpus=2 -m 1G -nodefaults -display none -no-reboot \
  -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \
  -device intel-iommu,intremap=on \
  -chardev socket,id=fs,path="$work/fs.sock" -device vhost-user-fs-pci,chardev=fs,tag=vmfs \
  -chardev socket,id=view,path="$work/view.sock" -device vhost-user-fs-pci,chardev=view,tag=hostview \
  -chardev socket,id=shared,path="$work/shared.sock" -device vhost-user-fs-pci,chardev=shared,tag=sharedvec,vectors=1 \
  -chardev socket,id=intx,path="$work/intx.sock" -device vhost-user-fs-pci,chardev=intx,tag=intx,vectors=0 \
  -device virtio-rng-pci,iommu_platform=on,disable-legacy=on \
  -device virtio-rng-pci,iommu_platform=on,disable-legacy=on,vectors=1 \
  -device virtio-rng-pci,iommu_platform=on,disable-legacy=on,vectors=0 \
  -device pcie-root-port,id=rp1,chassis=1 \
  -chardev socket,id=unplug,path="$work/unplug.sock" -device vhost-user-fs-pci,chardev=unplug,tag=unplug,id=unplugfs,bus=rp1 \
  -qmp unix:"$work/qmp.sock",server=on,wait=off \
  -serial file:"$work/console.log" \
  -kernel "$work/vmlinux" -initrd "$work/initrd.img" \
  -append "console=ttyS0 intel_iommu=on panic=-1 quiet loglevel=3" &
qemu=$!
pids+=($qemu)
# When the guest asks, remove its "unplug" device as an operator would (QEMU monitor device_del).
(
  for _ in $(seq "$timeout_s"); do
    grep -aq '^vm: UNPLUG-NOW' "$work/console.log" 2>/dev/null && break
    sleep 1
  done
  python3 - "$work/qmp.sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()  # greeting
for cmd in ({"execute": "qmp_capabilities"},
            {"execute": "device_del", "arguments": {"id": "unplugfs"}}):
    f.write(json.dumps(cmd) + "\n")
    f.flush()
    print("qmp:", f.readline().strip())
PY
) > "$work/qmp.log" 2>&1 &
pids+=($!)
status=0
wait "$qemu" || status=$?
elapsed=$(awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')

# The serial console ends lines with CR LF.
console=$work/console.txt
tr -d '\r' < "$work/console.log" > "$console"
grep -a '^vm: ' "$console" | grep -av '^vm: [AB] \|^vm: lib ' || true
ok=1
grep -aq '^vm: RESULT PASS' "$console" || ok=0
# The files the guest wrote through virtiofs-mount, checked on the host directory itself.
if [ "$ok" = 1 ]; then
  grep -q "over VFIO" "$share/rig/hello.txt" || { echo "vm rig: rig/hello.txt missing on the host"; ok=0; }
  [ "$(stat -c %s "$share/rig/random.bin" 2>/dev/null)" = 4194304 ] || { echo "vm rig: rig/random.bin wrong on the host"; ok=0; }
  [ "$(ls "$share/rig/dir" | wc -l)" = 199 ] && [ -f "$share/rig/renamed" ] || { echo "vm rig: rename/readdir results wrong on the host"; ok=0; }
fi

echo
echo "library API over VFIO (in the guest):"
grep -a '^vm: lib ' "$console" | sed 's/^vm: lib /  /' || true
echo
echo "side by side, same device, same workload (guest, TCG):"
paste -d'\t' <(grep -a '^vm: A ' "$console" | sed 's/^vm: A //' || true) \
  <(grep -a '^vm: B ' "$console" | sed 's/^vm: B //' || true) |
  awk -F'\t' 'NR == 1 { printf "%-38s %16s %16s %8s\n", "", "virtiofs-mount", "linux virtiofs", "ratio"; next }
              { a = $1; b = $2; sub(/[ \t]+$/, "", a); sub(/[ \t]+$/, "", b); va = a; sub(/.* /, "", va); vb = b; sub(/.* /, "", vb); label = substr(a, 1, 38);
                printf "%-38s %16s %16s %7.2fx\n", label, va, vb, (vb > 0 ? va / vb : 0) }'
printf "\nrig: boot to result %s s (qemu exit %d)\n" "$elapsed" "$status"
if [ "$ok" != 1 ]; then
  echo "vm rig: FAILED; guest console:"
  tail -n 200 "$console"
  echo "virtiofsd logs:"; cat "$work"/virtiofsd-*.log
  exit 1
fi
echo "vm rig: PASS"
