#!/usr/bin/env bash
# Configures and builds into build/ (Release, warnings as errors). Usage: scripts/build.sh [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINTERNLM_WERROR=ON "$@" >/dev/null
cmake --build build --parallel "$(nproc)"
