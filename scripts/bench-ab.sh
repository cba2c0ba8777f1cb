#!/usr/bin/env bash
# A/B against another revision, in one session on one machine (run as root; not part of the
# suite). Builds REV in a temporary git worktree, then:
#  1. mounts the same directory with REV's virtiofs-mount and this tree's, beside libfuse's
#     passthrough_ll, and runs one virtiofs-fsbench over all three: 3 interleaved rounds,
#     ratios to REV's mount (medians, and each round's lowest-highest);
#  2. runs REV's and this tree's library (interrupt-driven, and poll_us=200) on virtiofsd,
#     alternated ROUNDS times (default 3), each run beside passthrough_ll; prints the median
#     ratio to passthrough_ll of each side and after/before;
#  3. the ring micro-benchmarks of both, alternated.
#   bash scripts/bench-ab.sh REV [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench-ab.sh REV [ROUNDS]}
rounds=${2:-3}
bash scripts/build.sh >/dev/null
work=$(mktemp -d)
mkdir -p "$work/share" "$work/m1" "$work/m2" "$work/p"
pids=()
cleanup() {
  for m in m1 m2 p; do fusermount3 -u "$work/$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  git worktree remove --force "$work/old" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
git worktree add -q --detach "$work/old" "$rev"
(cd "$work/old" && cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build build -j "$(nproc)" --target virtiofs-mount virtiofs-fsbench virtiofs-ring-bench \
    | { grep -vE "^\[ *[0-9]+%\]" || true; })
old=$work/old/build
new=build
cc -O2 -o "$work/passthrough_ll" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c \
  $(pkg-config --cflags --libs fuse3)
"$old/virtiofs-mount" -o share="$work/share" bench "$work/m1"
"$new/virtiofs-mount" -o share="$work/share" bench "$work/m2"
"$work/passthrough_ll" -o source="$work/share" "$work/p"
echo "== virtiofs-mount at $rev and here, one fsbench run (ratios to mount-$rev)"
"$new/virtiofs-fsbench" --ratio-to "mount-$rev" --rounds 3 "mount-$rev=$work/m1" \
  "mount-here=$work/m2" "passthrough_ll=$work/p"

echo
echo "== library at $rev and here, alternated $rounds times, each beside passthrough_ll"
for round in $(seq "$rounds"); do
  for side in before after; do
    bin=$([ "$side" = before ] && echo "$old" || echo "$new")
    for s in lib poll; do
      rm -f "$work/$s.sock"
      /usr/lib/qemu/virtiofsd --socket-path="$work/$s.sock" -o source="$work/share" \
        -o cache=auto -o sandbox=chroot -o log_level=warn 2>/dev/null &
      pids+=($!)
      for _ in $(seq 200); do [ -S "$work/$s.sock" ] && break; sleep 0.05; done
    done
    echo "## $side"
    "$bin/virtiofs-fsbench" --ratio-to passthrough_ll --rounds 1 library="socket:$work/lib.sock" \
      library-poll="socket:$work/poll.sock,poll_us=200" passthrough_ll="$work/p"
  done
done > "$work/library.txt"
python3 - "$work/library.txt" <<'PY'
import re, statistics as st, sys
side, res = None, {}
for line in open(sys.argv[1]):
    if line.startswith("## "):
        side = line[3:].strip()
        continue
    m = re.match(r"^(.*\))\s+\d+\s+\d+\s+\d+\s+([\d.]+)x\s+([\d.]+)x", line)
    if m:
        res.setdefault(m.group(1).strip(), {}).setdefault(side, []).append((float(m.group(2)), float(m.group(3))))
print(f"{'ratio to passthrough_ll, medians':40s} {'library before':>14s} {'after':>6s} {'a/b':>5s}  {'poll before':>11s} {'after':>6s} {'a/b':>5s}")
for row, d in res.items():
    lb, la = [x[0] for x in d["before"]], [x[0] for x in d["after"]]
    pb, pa = [x[1] for x in d["before"]], [x[1] for x in d["after"]]
    print(f"{row:40s} {st.median(lb):14.2f} {st.median(la):6.2f} {st.median(la)/st.median(lb):5.2f}"
          f"  {st.median(pb):11.2f} {st.median(pa):6.2f} {st.median(pa)/st.median(pb):5.2f}")
PY

echo
echo "== ring micro-benchmarks, alternated (ns per operation)"
for round in $(seq "$rounds"); do
  for side in before after; do
    bin=$([ "$side" = before ] && echo "$old" || echo "$new")
    "$bin/tests/virtiofs-ring-bench" --benchmark_min_time=0.5 2>/dev/null |
      awk -v s="$side" '/^(add|batch)/ { print s, $1, $2 }'
  done
done | sort -k2,2 -k1,1 | awk '{ k = $2 " " $1; v[k] = v[k] " " $3 } END { for (k in v) print k ":" v[k] }' | sort
