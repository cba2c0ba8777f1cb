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
. "$here/boot.sh"
vm_setup virtiofs-vm
work=$vm_work
if [ -n "${VIRTIOFS_VM_KEEP:-}" ]; then
  trap 'cp "$work/console.log" "$VIRTIOFS_VM_KEEP" 2>/dev/null; vm_cleanup' EXIT
fi
started=$(date +%s%N)

vm_kernel
vm_stage "${VIRTIOFS_VM_INIT:-$here/guest-init.sh}" "${binaries[@]}"  # override: for debugging the rig
vm_pack

# Two virtiofsd on one host directory: "vmfs" is the device under test; "hostview" (cache=none)
# lets the guest see the directory directly to check results.
share=$work/share
mkdir -p "$share"
vm_virtiofsd fs "$share" -o cache=auto -o xattr -o log_level=warn
vm_virtiofsd view "$share" -o cache=none -o xattr -o log_level=warn
# Two more devices on the same directory for the interrupt fallbacks: one MSI-X vector shared
# by config and both queues, and no MSI-X at all (INTx).
for dev in shared intx unplug; do
  vm_virtiofsd $dev "$share" -o cache=none -o log_level=${VIRTIOFS_VM_LOG:-warn}
done
vm_wait_sockets fs view shared intx unplug

vm_fs_device fs vmfs
vm_fs_device view hostview
vm_fs_device shared sharedvec vectors=1
vm_fs_device intx intx vectors=0
vm_accel "${VIRTIOFS_VM_ACCEL:-tcg}"  # the rig's timings are TCG's unless asked
vm_qemu 1,maxcpus=2 \
  -device virtio-rng-pci,iommu_platform=on,disable-legacy=on \
  -device virtio-rng-pci,iommu_platform=on,disable-legacy=on,vectors=1 \
  -device virtio-rng-pci,iommu_platform=on,disable-legacy=on,vectors=0 \
  -device pcie-root-port,id=rp1,chassis=1 \
  -chardev socket,id=unplug,path="$work/unplug.sock" -device vhost-user-fs-pci,chardev=unplug,tag=unplug,id=unplugfs,bus=rp1 \
  -qmp unix:"$work/qmp.sock",server=on,wait=off \
  -serial file:"$work/console.log"
qemu=$vm_qemu_pid
timeout_s=${VIRTIOFS_VM_TIMEOUT:-600}
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
vm_pids+=($!)
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
