# Sourced by scripts/bench-levers.sh and scripts/bench-wakeups.sh: a work area with a share,
# FUSE over io_uring allowed for mounts made meanwhile (restored on exit), libfuse's
# passthrough_ll compiled, and mount_variant to mount the share with virtiofs-mount options.
work=$(mktemp -d)
mkdir -p "$work/share" "$work/p"
uring_param=/sys/module/fuse/parameters/enable_uring
uring_was=""
cleanup() {
  for m in "$work"/m*; do fusermount3 -u "$m" 2>/dev/null || true; done
  fusermount3 -u "$work/p" 2>/dev/null || true
  if [ -n "$uring_was" ]; then echo "$uring_was" > "$uring_param"; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ -w "$uring_param" ]; then uring_was=$(cat "$uring_param"); echo Y > "$uring_param"; fi
cc -O2 -o "$work/passthrough_ll" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c \
  $(pkg-config --cflags --libs fuse3)
mounts=0
# mount_variant BINARY OPTS: mounts the share at $work/mN (N counts up) with `-o share=...,OPTS`;
# sets mnt to the mount point and pids to its servers (the daemon and the virtiofsd it started).
mount_variant() {
  mounts=$((mounts + 1))
  mnt=$work/m$mounts
  mkdir -p "$mnt"
  "$1" -o "share=$work/share${2:+,$2}" bench "$mnt"
  local pid
  pid=$(pgrep -n -f -- "-o share=$work/share.* $mnt\$")
  pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
}
# Mounts passthrough_ll on the share at $work/p; sets pids to it.
mount_passthrough() {
  "$work/passthrough_ll" -o source="$work/share" "$work/p"
  pids=$(pgrep -n -f "$work/passthrough_ll")
}
