#!/usr/bin/env bash
# The main job: mounts a sample directory through the whole stack
#   virtiofsd -> vhost-user -> libvirtiofs -> FUSE
# with virtiofs-mount, uses it with ordinary commands, and leaves it mounted. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
mnt=${VIRTIOFS_DEMO_MOUNT:-/mnt/virtiofs-demo}
share=${VIRTIOFS_DEMO_SHARE:-/srv/virtiofs-demo}

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
