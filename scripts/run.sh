#!/usr/bin/env bash
# The main job from a fresh machine: install what building and running needs (apt), build the
# `internlm` target only, then `internlm run` with the given arguments. With no arguments it
# chats with the built-in default model (a synthetic checkpoint made on first use).
# Tests and their tools are scripts/test.sh's business.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --run
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINTERNLM_WERROR=ON -DINTERNLM_BUILD_TESTS=OFF >/dev/null
cmake --build build --parallel "$(nproc)" --target internlm
if (($# == 0)); then
  exec build/internlm run --chat --prompt "你好,请介绍一下你自己" --max-tokens 64
fi
exec build/internlm "$@"
