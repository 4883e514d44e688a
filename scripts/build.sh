#!/usr/bin/env bash
# Configures and builds everything, tests included, into build/ (Release, warnings as errors).
# Usage: scripts/build.sh [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."
# INTERNLM_BUILD_TESTS=ON explicitly: scripts/run.sh configures the same build/ with it OFF.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINTERNLM_WERROR=ON -DINTERNLM_BUILD_TESTS=ON "$@" >/dev/null
cmake --build build --parallel "$(nproc)"
