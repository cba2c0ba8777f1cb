#!/usr/bin/env bash
# Issue 16's goals, checked on a virtiofs-fsbench --data file (scripts/bench.sh writes it): the
# `library` column (the library's default mode) against `passthrough_ll`, medians of the rounds,
# with the lowest-highest per-round ratio when FILE.rounds is there. One line per goal, "met" or
# "NOT met" with the figures:
#   repeated stat >= 1.0x; cold stat at depth 1, open+close, create+unlink and 4 KiB random
#   reads at depth 1 >= 1.5x; the CPU per operation of those five rows (fsbench and the
#   target's servers: the library and its virtiofsd; the kernel's FUSE work in fsbench and
#   passthrough_ll) <= 2x passthrough_ll's.
#   bash scripts/bench-goals.sh PEERS.dat [LIBRARY_LABEL [REFERENCE_LABEL]]
set -euo pipefail
data=$1 lib=${2:-library} ref=${3:-passthrough_ll}
rounds=$data.rounds
[ -f "$rounds" ] || rounds=/dev/null
echo "== issue 16 goals: $lib against $ref (medians; per-round ratios lowest-highest)"
awk -v lib="$lib" -v ref="$ref" '
  FILENAME == ARGV[1] { round[$1, $2] = $0; next }   # row label v1 v2 ...
  FNR == 1 { for (i = 2; i <= NF; i++) col[$i] = i
             if (!(lib in col) || !(ref in col)) { print "no column " lib " or " ref; bad = 1; exit 1 }
             next }
  { value[$1] = $col[lib] / 1; base[$1] = $col[ref] / 1 }
  # The lowest-highest of the per-round ratios of row r, "" without the rounds file.
  function range(r,    a, b, n, i, q, lo, hi) {
    if (!((r, lib) in round) || !((r, ref) in round)) return ""
    n = split(round[r, lib], a, " "); split(round[r, ref], b, " ")
    lo = ""; hi = ""
    for (i = 3; i <= n; i++) {
      if (b[i] + 0 == 0) continue
      q = a[i] / b[i]
      if (lo == "" || q < lo) lo = q
      if (hi == "" || q > hi) hi = q
    }
    return lo == "" ? "" : sprintf(" (rounds %.2f-%.2fx)", lo, hi)
  }
  # A goal: row r, its ratio at least (higher = 1) or at most (higher = 0) goal.
  function check(what, r, unit, goal, higher,    q, ok) {
    if (!(r in value)) { printf "%-34s no row %s: NOT met\n", what, r; failed++; return }
    q = base[r] > 0 ? value[r] / base[r] : -1
    ok = q >= 0 && (higher ? q >= goal : q <= goal)
    if (!ok) failed++
    printf "%-34s %s %.6g, %s %.6g %s: %s%s, goal %s %.1fx: %s\n", what, lib, value[r], ref,
           base[r], unit, q < 0 ? "no ratio" : sprintf("%.2fx", q), range(r),
           higher ? ">=" : "<=", goal, ok ? "met" : "NOT met"
  }
  END {
    if (bad) exit 1
    check("repeated stat", "stat-repeat", "ops/s", 1.0, 1)
    check("cold stat, depth 1", "stat-cold-qd1", "ops/s", 1.5, 1)
    check("open+close", "open-close", "ops/s", 1.5, 1)
    check("create+unlink", "create-unlink", "ops/s", 1.5, 1)
    check("4 KiB random read, depth 1", "randread-4k", "IOPS", 1.5, 1)
    check("CPU: repeated stat", "stat-repeat-cpu", "us/op", 2.0, 0)
    check("CPU: cold stat, depth 1", "stat-cold-qd1-cpu", "us/op", 2.0, 0)
    check("CPU: open+close", "open-close-cpu", "us/op", 2.0, 0)
    check("CPU: create+unlink", "create-unlink-cpu", "us/op", 2.0, 0)
    check("CPU: 4 KiB random read", "randread-4k-cpu", "us/op", 2.0, 0)
    printf "%d of 10 goals not met\n", failed
  }' "$rounds" "$data"
