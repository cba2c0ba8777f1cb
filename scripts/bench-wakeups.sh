#!/usr/bin/env bash
# Per-request work of the mounts, counted (run as root; not part of the suite): for each
# virtiofs-mount option set and for passthrough_ll, a loop of N open+close on one file (OPEN,
# FLUSH, RELEASE: three requests each, GETATTR answered from the cache) and N cold-ish stats of
# distinct names (one LOOKUP each), and per request: the voluntary context switches (sleeps,
# so wake-ups) of the servers' threads (virtiofs-mount and its virtiofsd; passthrough_ll), the
# caller's, and the CPU time of both; then the servers' syscalls per request (strace -c -f).
#   bash scripts/bench-wakeups.sh [-n N] LABEL=OPTS [LABEL=OPTS...]
set -euo pipefail
cd "$(dirname "$0")/.."
n=2000
if [ "${1:-}" = "-n" ]; then n=$2; shift 2; fi
source scripts/bench-mounts.sh
# The loops, in one process whose own switches count as the caller's.
cat > "$work/loop.py" <<'PY'
import os, sys, resource
d, n, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
f = os.path.join(d, "one")
if what == "open":
    for _ in range(n): os.close(os.open(f, os.O_RDONLY))
else:
    for i in range(n): os.stat(os.path.join(d, "s%d" % i))
r = resource.getrusage(resource.RUSAGE_SELF)
print(r.ru_nvcsw, r.ru_utime + r.ru_stime)
PY
switches() {  # voluntary context switches of every thread of the given processes
  local total=0
  for p in "$@"; do
    for t in /proc/"$p"/task/*; do
      total=$((total + $(awk '/^voluntary_ctxt_switches/ { print $2 }' "$t/status")))
    done
  done
  echo "$total"
}
ticks() {  # utime + stime of the given processes, in clock ticks
  local total=0
  for p in "$@"; do total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
  echo "$total"
}
run_one() {  # LABEL DIR PID...
  local label=$1 dir=$2; shift 2
  touch "$dir/one"
  for i in $(seq 0 $((n - 1))); do : > "$work/share/s$i"; done
  for what in open stat; do
    local reqs=$([ "$what" = open ] && echo 3 || echo 1)
    sync; echo 3 > /proc/sys/vm/drop_caches
    local s0 t0 out
    s0=$(switches "$@"); t0=$(ticks "$@")
    out=$(python3 "$work/loop.py" "$dir" "$n" "$what")
    local s1 t1
    s1=$(switches "$@"); t1=$(ticks "$@")
    python3 - "$label" "$what" "$n" "$reqs" "$s0" "$s1" "$t0" "$t1" $out <<'PY'
import os, sys
label, what, n, reqs, s0, s1, t0, t1, cs, ccpu = sys.argv[1:]
req = int(n) * int(reqs)
tick = 1e6 / os.sysconf("SC_CLK_TCK")
print(f"{label:16s} {what:5s} server sleeps/request {(int(s1) - int(s0)) / req:5.2f}"
      f"   caller sleeps/request {int(cs) / req:5.2f}"
      f"   server CPU/request {(int(t1) - int(t0)) * tick / req:6.1f} us")
PY
  done
  rm -f "$work/share"/s*
}
for v in "$@"; do
  label=${v%%=*} opts=${v#*=}
  mount_variant build/virtiofs-mount "$opts"
  run_one "$label" "$mnt" $pids
  # Syscalls per request of the servers, for the open+close loop.
  strace -c -f -o "$work/strace.txt" -p "$(echo $pids | tr ' ' ',')" &
  spid=$!
  sleep 1
  python3 "$work/loop.py" "$mnt" 500 open > /dev/null
  kill -INT "$spid"; wait "$spid" 2>/dev/null || true
  echo "  $label: syscalls per request (open+close, 1500 requests), by the servers:"
  awk 'NR > 2 && $1 ~ /^[0-9.]+$/ && NF >= 5 { calls = $4; name = $NF; if (calls / 1500 >= 0.05) printf "    %-16s %5.2f\n", name, calls / 1500 }' "$work/strace.txt"
  fusermount3 -u "$mnt"
done
mount_passthrough
run_one passthrough_ll "$work/p" $pids
