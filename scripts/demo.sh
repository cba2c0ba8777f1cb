#!/usr/bin/env bash
# The main job: serves a sample directory with virtiofsd and uses it through the whole stack
# (virtiofsd -> vhost-user -> libvirtiofs) with the `virtiofs` client. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
vfsd=$(grep -E '^VIRTIOFS_VIRTIOFSD:' build/CMakeCache.txt | cut -d= -f2)
work=$(mktemp -d)
share="$work/share"
mkdir -p "$share"
echo "hello from the host" > "$share/hello.txt"
trap 'rm -rf "$work"' EXIT

# virtiofsd serves one connection and exits when it ends: start one per command.
client() {
  local sock="$work/vfsd.sock"
  rm -f "$sock"
  "$vfsd" --socket-path="$sock" -o source="$share" -o sandbox=chroot -o cache=auto \
    -o log_level=warn 2>>"$work/virtiofsd.log" &
  local pid=$!
  # Listening (flags 00010000 in /proc/net/unix), not just bound: a probe would use the connection.
  for _ in $(seq 100); do
    grep -q " 00010000 .* $sock\$" /proc/net/unix && break
    sleep 0.05
  done
  ./build/virtiofs --socket "$sock" "$@"
  wait "$pid" || true
}

echo "== shared directory: $share"
echo "== virtiofs ls /";                client ls /
echo "== virtiofs cat hello.txt";       client cat hello.txt
printf 'written through libvirtiofs\n' > "$work/local.txt"
echo "== virtiofs put local.txt notes/from-client.txt"
client mkdir notes
client put "$work/local.txt" notes/from-client.txt
echo "== on the host: $share/notes/from-client.txt"; cat "$share/notes/from-client.txt"
echo "== virtiofs stat notes/from-client.txt"; client stat notes/from-client.txt
echo "== virtiofs statfs";              client statfs
