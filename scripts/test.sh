#!/usr/bin/env bash
# Builds and runs every test: the Release build (warnings as errors) under ctest, the unit
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer, then each libFuzzer target
# for a bounded time (INTERNLM_FUZZ_SECONDS, default 45; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure --timeout 900 -j "$(nproc)")
if [ "${INTERNLM_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DINTERNLM_WERROR=ON -DINTERNLM_SANITIZE=ON >/dev/null
  cmake --build build-asan --parallel "$(nproc)" --target unit_tests
  # The 600-token cpu-vs-ref sweep over every KV dtype is pure arithmetic that the Release run
  # above checks; under the Debug sanitizer build it alone would take most of the CI budget.
  (cd build-asan && ctest --output-on-failure --timeout 900 -L unit -j "$(nproc)" \
    -E '^LongContext\.PastMaxPositionEmbeddingsAndManySegmentsMatchRefOnEveryKvType$')
fi
if [ "${INTERNLM_FUZZ_SECONDS:-45}" != 0 ]; then
  scripts/fuzz.sh "${INTERNLM_FUZZ_SECONDS:-45}"
fi
