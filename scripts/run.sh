#!/usr/bin/env bash
# The main job from a fresh machine: install deps, build, then `internlm run` with the given arguments.
# With no arguments it chats with the built-in default model (a synthetic checkpoint made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
if (($# == 0)); then
  exec build/internlm run --chat --prompt "你好,请介绍一下你自己" --max-tokens 64
fi
exec build/internlm "$@"
