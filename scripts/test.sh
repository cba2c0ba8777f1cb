#!/usr/bin/env bash
# The whole test suite: installs packages, builds, runs every test (unit, integration against the
# real virtiofsd, real FUSE mounts, the VFIO rig in a QEMU guest), then unit, integration and
# mount tests again under ASan+UBSan, unit and integration under TSan, then each fuzz target for
# a bounded time. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
(cd build && ctest --output-on-failure -j 2)
if [ "${VIRTIOFS_SKIP_SANITIZERS:-0}" != 1 ]; then
  BUILD_DIR=build-asan bash scripts/build.sh -DVIRTIOFS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  (cd build-asan && ctest --output-on-failure -j 2)
fi
if [ "${VIRTIOFS_SKIP_SANITIZERS:-0}" != 1 ]; then
  # ThreadSanitizer over the ring, session and loop concurrency (unit and integration tests).
  BUILD_DIR=build-tsan bash scripts/build.sh -DVIRTIOFS_SANITIZE_THREAD=ON -DCMAKE_BUILD_TYPE=Debug
  (cd build-tsan && ctest --output-on-failure -j 2 -L 'unit|integration')
fi
if [ "${VIRTIOFS_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${VIRTIOFS_FUZZ_SECONDS:-20}"
fi
