#!/usr/bin/env bash
# The whole test suite: installs packages, builds, runs every test (unit and integration against
# the real virtiofsd), then the same suite again under ASan+UBSan. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
(cd build && ctest --output-on-failure -j 2)
if [ "${VIRTIOFS_SKIP_SANITIZERS:-0}" != 1 ]; then
  BUILD_DIR=build-asan bash scripts/build.sh -DVIRTIOFS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  (cd build-asan && ctest --output-on-failure -j 2)
fi
