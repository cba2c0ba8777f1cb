#!/usr/bin/env bash
# The benchmark suite, in one run, with ratios side by side (run as root; it drops caches):
#  1. one workload on several targets over the same directory: the directory itself (the limit),
#     the libvirtiofs API on virtiofsd (interrupt-driven, and with poll_us=200: callers reap their
#     own replies), virtiofs-mount (read path, and -o io_uring when the kernel has FUSE over
#     io_uring), and libfuse's passthrough_ll example (compiled here from libfuse3-dev's
#     examples: what a user would pick to expose a directory over FUSE); ratios against
#     passthrough_ll; three interleaved rounds, medians, and how far each ratio moved; CPU per
#     operation of fsbench and each target's servers (every virtiofsd, virtiofs-mount and its
#     virtiofsd, passthrough_ll) and of the servers alone; then the "issue 16 goals": the
#     library in its default mode against passthrough_ll, each goal met or not, with the
#     figures (reported, never failing this script: bench-goals.sh --strict gates);
#  2. multiqueue scaling: the library on the test backend with 1, 2 and 4 request queues, each
#     request taking 50 us of device time, 8 threads;
#  3. ring micro-benchmarks (Google Benchmark): ns per add+kick+complete in-process;
#  4. the Asio front end against the callback API (scripts/bench-asio.sh).
# With --chart FILE.png it also draws the ratios to passthrough_ll (gnuplot).
#   bash scripts/bench.sh [--chart docs/benchmarks.png] [virtiofs-fsbench options, e.g. --mib 64 --rounds 5]
# With --guest: the guest benchmark instead, virtiofs-mount over VFIO against the guest kernel's
# virtio-fs driver in a QEMU guest (scripts/bench-guest.sh: its knobs, e.g.
# VIRTIOFS_BENCH_MOUNT_OPTS=poll_us=50 for a third column).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --guest ]; then shift; exec bash scripts/bench-guest.sh "$@"; fi
chart=""
if [ "${1:-}" = "--chart" ]; then chart=$(realpath -m "$2"); shift 2; fi
bash scripts/build.sh >/dev/null
virtiofsd=/usr/lib/qemu/virtiofsd
work=$(mktemp -d)
mkdir -p "$work/share" "$work/vmnt" "$work/umnt" "$work/pmnt"
pids=()
uring_param=/sys/module/fuse/parameters/enable_uring
uring_was=""
cleanup() {
  fusermount3 -u "$work/vmnt" 2>/dev/null || true
  fusermount3 -u "$work/umnt" 2>/dev/null || true
  fusermount3 -u "$work/pmnt" 2>/dev/null || true
  if [ -n "$uring_was" ]; then echo "$uring_was" > "$uring_param"; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
wait_socket() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "bench: no socket $1" >&2; exit 1; }

cc -O2 -o "$work/passthrough_ll" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c \
  $(pkg-config --cflags --libs fuse3)
# virtiofsd serves one frontend: one for each library target, whose CPU counts with it
# (cpu_pids). The `library` target gives no poll_us: the library's default wait, the one judged.
targets=(host-dir="$work/share")
for t in library: library-poll:,poll_us=200 library-irq:,poll_us=0; do
  label=${t%%:*} opts=${t#*:}
  "$virtiofsd" --socket-path="$work/$label.sock" -o source="$work/share" -o cache=auto \
    -o sandbox=chroot -o log_level=warn &
  vpid=$!
  pids+=("$vpid")
  wait_socket "$work/$label.sock"
  targets+=("$label=socket:$work/$label.sock$opts,cpu_pids=$vpid")
done
# A mount's servers: the virtiofs-mount daemon and the virtiofsd it started (its children).
mount_pids() {
  local pid
  pid=$(pgrep -n -f -- "-o share=$work/share.* $1\$")
  echo "$pid $(pgrep -P "$pid")" | xargs | tr ' ' ':'
}
./build/virtiofs-mount -o share="$work/share" bench "$work/vmnt"
targets+=(virtiofs-mount="$work/vmnt,cpu_pids=$(mount_pids "$work/vmnt")")
if [ -w "$uring_param" ]; then
  # Only connections made while it is on use io_uring; they keep it after it is restored.
  uring_was=$(cat "$uring_param")
  echo Y > "$uring_param"
  ./build/virtiofs-mount -o share="$work/share",io_uring bench "$work/umnt"
  targets+=(mount-io_uring="$work/umnt,cpu_pids=$(mount_pids "$work/umnt")")
else
  echo "(this kernel has no FUSE over io_uring: no mount-io_uring column)"
fi
"$work/passthrough_ll" -o source="$work/share" "$work/pmnt"
targets+=(passthrough_ll="$work/pmnt,cpu_pids=$(pgrep -n -f "$work/passthrough_ll")")

echo "== one workload, one directory (virtiofsd 7.2 behind the library and virtiofs-mount)"
./build/virtiofs-fsbench --ratio-to passthrough_ll --rounds 3 --cpu --data "$work/peers.dat" \
  "$@" "${targets[@]}"

echo
bash scripts/bench-goals.sh "$work/peers.dat"

echo
echo "== multiqueue scaling: library on the test backend, 50 us device time per request, 8 threads"
targets=()
for q in 1 2 4; do
  ./build/tests/virtiofs-test-backend --socket "$work/q$q.sock" --queues "$q" --delay-us 50 &
  pids+=($!)
  wait_socket "$work/q$q.sock"
  targets+=("${q}-queue=socket:$work/q$q.sock")
done
./build/virtiofs-fsbench --stat-threads 8 --seconds 2 "${targets[@]}"

echo
echo "== ring micro-benchmarks (driver ring + in-process device model)"
./build/tests/virtiofs-ring-bench --benchmark_min_time=0.5 2>/dev/null | grep -E "^(Benchmark|add|batch)"

echo
echo "== the Asio front end (virtiofs/asio.hpp) against the callback API"
bash scripts/bench-asio.sh

if [ -n "$chart" ]; then
  # Ratio of each row to passthrough_ll, for every target but the directory and passthrough_ll.
  awk '/-(cpu|all) / { next }  # figures only, not their CPU rows
       NR == 1 { for (i = 2; i <= NF; i++) if ($i == "passthrough_ll") p = i
                 printf "row"
                 for (i = 2; i <= NF; i++) if (i != p && $i != "host-dir") { keep[i] = 1; printf " %s", $i }
                 print ""; next }
       { printf "%s", $1; for (i = 2; i <= NF; i++) if (keep[i]) printf " %.3f", $i / $p; print "" }' \
    "$work/peers.dat" > "$work/ratios.dat"
  columns=$(head -1 "$work/ratios.dat" | wc -w)
  gnuplot <<GP
set terminal pngcairo size 1000,500 font ",10" noenhanced
set output "$chart"
set title "libvirtiofs vs passthrough_ll (1.0 = passthrough_ll), same directory, one run"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set logscale y 2
set yrange [0.03:*]
set grid ytics
set key left top
set xtics rotate by -25 scale 0
set ylabel "ratio to passthrough_ll (log scale)"
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5
plot for [i=2:$columns] "$work/ratios.dat" using i:xtic(1) title columnheader(i)
GP
  echo "chart: $chart"
fi
