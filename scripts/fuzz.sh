#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) into ./build-fuzz and runs each for SECONDS
# (default 20) on its corpus in tests/fuzz/corpus/<target>, which it grows in place. CI runs the
# bounded default; for a long run: bash scripts/fuzz.sh 3600
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
bash scripts/install-deps.sh
build_dir=${BUILD_DIR:-build-fuzz}
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Debug -DVIRTIOFS_FUZZ=ON \
  -DVIRTIOFS_BUILD_TESTS=OFF -DVIRTIOFS_WERROR=OFF >/dev/null
targets=(fuzz_used_ring fuzz_fuse_reply fuzz_dirents fuzz_init fuzz_vhost_user_reply fuzz_session)
# Only the fuzz targets: the tools are no fuzz input (and clang 14 cannot build coroutines with
# the fuzzer's instrumentation: "Cannot represent a difference across sections").
cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]}" | { grep -vE "^\[ *[0-9]+%\]" || true; }
status=0
for target in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/$target
  mkdir -p "$corpus"
  work=$(mktemp -d)
  # New inputs go to a scratch dir so a CI run leaves the committed corpus as it was.
  if "$build_dir/tests/fuzz/$target" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
      -artifact_prefix="$work/" -print_final_stats=1 "$work" "$corpus" > "$work/log" 2>&1; then
    echo "$target: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$') executions, no findings"
  else
    echo "$target: FINDING"; tail -n 40 "$work/log"; ls "$work"; status=1
  fi
  [ -n "${VIRTIOFS_FUZZ_KEEP:-}" ] && cp -n "$work"/[0-9a-f]* "$corpus"/ 2>/dev/null || true
  rm -rf "$work"
done
exit $status
