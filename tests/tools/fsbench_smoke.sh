#!/usr/bin/env bash
# virtiofs-fsbench on a directory and on the library (virtiofsd), tiny sizes, two rounds: every
# row runs (fsbench dies naming a row that fails, and checks the tree walk's entry count), and
# --cpu puts a CPU line under each row with the libvirtiofs process's share where it is known.
#   fsbench_smoke.sh VIRTIOFS_FSBENCH VIRTIOFSD   (root: drops caches, runs virtiofsd)
set -euo pipefail
fsbench=$1 virtiofsd=$2
work=$(mktemp -d)
vpid=
cleanup() { kill "$vpid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/share" "$work/dir"
"$virtiofsd" --socket-path="$work/s.sock" -o source="$work/share" -o cache=auto \
  -o sandbox=chroot -o log_level=warn 2>/dev/null &
vpid=$!
for _ in $(seq 100); do [ -S "$work/s.sock" ] && break; sleep 0.05; done
# --pid: a process that idles (sleep), so its CPU per operation is a number, 0.
sleep 60 &
idle=$!
"$fsbench" --cpu --rounds 2 --mib 2 --files 40 --ops 20 --seconds 0.1 --pid "watched=$idle" \
  dir="$work/dir" watched="$work/dir" lib=socket:"$work/s.sock" > "$work/out"
kill "$idle"
cat "$work/out"
fail() { echo "fsbench_smoke: $*" >&2; exit 1; }
# The first table: 9 rows, each followed by its CPU line.
table=$(sed '/^$/q' "$work/out")
[ "$(grep -c '^  CPU us/op' <<< "$table")" = 9 ] || fail "not one CPU line per row"
walk=$(grep '^tree walk' <<< "$table") || fail "no tree walk row"
read -r -a w <<< "${walk#*(entries/s)}"
for v in "${w[@]:0:3}"; do [ "$v" -gt 0 ] || fail "tree walk rate $v"; done
# Under the tree walk: dir has no process to watch (-), watched and lib have one (a number).
read -r -a c <<< "$(grep -A1 '^tree walk' <<< "$table" | tail -1 | sed 's/.*libvirtiofs//')"
[[ ${c[0]} == */- ]] || fail "dir's CPU cell ${c[0]}: want ALL/-"
[[ ${c[1]} =~ /[0-9.]+$ ]] || fail "watched's CPU cell ${c[1]}: want ALL/N"
[[ ${c[2]} =~ /[0-9.]+$ ]] || fail "lib's CPU cell ${c[2]}: want ALL/N"
grep -q "lowest-highest" "$work/out" || fail "no per-round ratio ranges"
echo "fsbench_smoke: PASS"
