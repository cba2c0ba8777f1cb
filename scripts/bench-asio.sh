#!/usr/bin/env bash
# The Asio front end (virtiofs/asio.hpp) against the callback API it is built on, in one run:
# cold stats (LOOKUP+FORGET of 5000 names) at depth 1 and 32 through
#   library  - blocking Client::lookup in the directory at depth 1 (api=blocking: the same work
#              as the other rows, not fsbench's default path walk), callbacks at depth 32;
#   callback - callbacks at both depths, each starting the next call;
#   asio     - `depth` C++20 coroutines co_awaiting Connection::async_lookup (use_awaitable),
#              completions handed from the library's thread to the io_context's;
#   asio-reap - the same with app_reaps_completions and a CompletionReaper on the io_context:
#              one thread reaps and runs the coroutines;
#   asio-inline - the coroutines on system_executor: resumed inline on the library's completion
#              thread, where the callbacks run (what the Asio layer itself costs);
# each on its own virtiofsd 7.2 over one directory, three interleaved rounds, medians, and the
# range of the per-round ratios to `callback`; --cpu adds the CPU per operation of this process
# (the library and its threads) and of all CPUs, a row for each.
# The other rows run the same code on all three (a measure of the noise). Run as root.
#   bash scripts/bench-asio.sh [virtiofs-fsbench options]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/virtiofs-fsbench ] || bash scripts/build.sh >/dev/null
work=$(mktemp -d)
mkdir -p "$work/share"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for s in library callback asio asio-reap asio-inline; do
  /usr/lib/qemu/virtiofsd --socket-path="$work/$s.sock" -o source="$work/share" -o cache=auto \
    -o sandbox=chroot -o log_level=warn &
  pids+=($!)
  for _ in $(seq 200); do [ -S "$work/$s.sock" ] && break; sleep 0.05; done
done
./build/virtiofs-fsbench --cpu --rounds 3 --ratio-to callback --mib 32 "$@" \
  library=socket:"$work/library.sock",api=blocking callback=socket:"$work/callback.sock",api=callback \
  asio=socket:"$work/asio.sock",api=asio asio-reap=socket:"$work/asio-reap.sock",api=asio-reap \
  asio-inline=socket:"$work/asio-inline.sock",api=asio-inline
