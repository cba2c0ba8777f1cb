#!/usr/bin/env bash
# virtiofs-fsbench on a directory and on the library (virtiofsd), tiny sizes, two rounds: every
# row runs (fsbench dies naming a row that fails, and checks the tree walk's entry count), the
# library's stat, open+close and create+unlink rows through its path API (Client::stat,
# open_file, File::close, unlink) with its path cache dropped before the cold rows, and --cpu
# adds a CPU row (this process and the target's cpu_pids: here the library's virtiofsd), an
# all-CPU row and a servers' CPU row (cpu_pids alone) for each; --data writes the medians and every round's figures.
#   fsbench_smoke.sh VIRTIOFS_FSBENCH VIRTIOFSD   (root: drops caches, runs virtiofsd)
set -euo pipefail
fsbench=$1 virtiofsd=$2
work=$(mktemp -d)
vpid= idle=
cleanup() { kill $vpid $idle 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/share" "$work/dir"
"$virtiofsd" --socket-path="$work/s.sock" -o source="$work/share" -o cache=auto \
  -o sandbox=chroot -o log_level=warn 2>/dev/null &
vpid=$!
for _ in $(seq 100); do [ -S "$work/s.sock" ] && break; sleep 0.05; done
# cpu_pids: a process that idles (sleep): its CPU counts with the target's.
sleep 60 &
idle=$!
"$fsbench" --cpu --rounds 2 --mib 2 --files 40 --ops 20 --seconds 0.1 \
  dir="$work/dir" watched="$work/dir,cpu_pids=$idle" lib=socket:"$work/s.sock,cpu_pids=$vpid" \
  --data "$work/data" > "$work/out"
kill "$idle"
cat "$work/out"
fail() { echo "fsbench_smoke: $*" >&2; exit 1; }
# The first table: 9 rows, then 9 CPU rows (this process and cpu_pids), 9 all-CPU rows, 9
# servers' CPU rows.
table=$(sed '/^$/q' "$work/out")
[ "$(grep -c '^  CPU: ' <<< "$table")" = 9 ] || fail "not one CPU row per row"
[ "$(grep -c '^  all CPUs: ' <<< "$table")" = 9 ] || fail "not one all-CPU row per row"
[ "$(grep -c "^  servers' CPU: " <<< "$table")" = 9 ] || fail "not one servers' CPU row per row"
walk=$(grep '^tree walk' <<< "$table") || fail "no tree walk row"
read -r -a w <<< "${walk#*(entries/s)}"
for v in "${w[@]:0:3}"; do [ "$v" -gt 0 ] || fail "tree walk rate $v"; done
grep -q '^  CPU: tree walk' <<< "$table" || fail "no CPU row for the tree walk"
grep -q "lowest-highest" "$work/out" || fail "no per-round ratio ranges"
# A ratio to a zero figure is "-", never nan or inf.
! grep -qiE 'nan|inf' "$work/out" || fail "a ratio printed as nan or inf"
# CPU accounting works: the busy directory target used CPU on the write row (us per op > 0).
cpu=$(grep '^  CPU: 1 MiB seq. write' <<< "$table") || fail "no CPU row for the write"
read -r -a c <<< "${cpu#*)}"
awk -v v="${c[0]}" 'BEGIN { exit !(v > 0) }' || fail "CPU per write is ${c[0]}: no accounting"
# The library's CPU per operation is never zero: its own threads' time is counted to the us.
while read -r row dir watched lib; do
  case $row in *-cpu) awk -v v="$lib" 'BEGIN { exit !(v > 0) }' || fail "library $row is $lib" ;; esac
done < <(tail -n +2 "$work/data")
# The servers' CPU is cpu_pids' alone: virtiofsd worked for the library's write, a directory
# target has no server.
read -r _ d _ l < <(grep '^seqwrite-1m-srv ' "$work/data") || fail "no servers' CPU row"
awk -v v="$l" 'BEGIN { exit !(v > 0) }' || fail "virtiofsd's CPU per MB written is $l"
awk -v v="$d" 'BEGIN { exit !(v == 0) }' || fail "a directory's servers' CPU is $d"
[ "$(grep -c ' lib ' "$work/data.rounds")" = 36 ] || fail "not 36 rows of rounds for lib"
[ "$(awk '$2 == "lib" { print NF }' "$work/data.rounds" | sort -u)" = 4 ] ||
  fail "not two rounds per row in the rounds file"
echo "fsbench_smoke: PASS"
