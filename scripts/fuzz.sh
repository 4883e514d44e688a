#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang + ASan + UBSan) in build-fuzz and runs each for
# SECONDS (default 45) from its seed corpus in fuzz/corpus/<target>. Fails on the first finding;
# the crashing input is left in build-fuzz/findings/<target>/ (add it to the target's corpus and
# a regression test once fixed). Longer runs: scripts/fuzz.sh 3600, or one target:
# scripts/fuzz.sh 600 fuzz_http_head.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-45}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(fuzz_safetensors fuzz_config fuzz_openai_request fuzz_tokenizer
                                     fuzz_chat_template fuzz_sse fuzz_http_head fuzz_json_schema fuzz_tool_call_parser)
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINTERNLM_FUZZ=ON \
  -DINTERNLM_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz --parallel "$(nproc)" --target "${TARGETS[@]}"
status=0
for t in "${TARGETS[@]}"; do
  work="build-fuzz/corpus/$t" findings="build-fuzz/findings/$t"
  mkdir -p "$work" "$findings"
  echo "fuzz: $t for ${SECONDS_EACH}s"
  if ! ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 "build-fuzz/fuzz/$t" -max_total_time="$SECONDS_EACH" \
       -max_len=8192 -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" \
       "$work" "fuzz/corpus/$t" > "build-fuzz/$t.log" 2>&1; then
    echo "fuzz: $t FOUND A PROBLEM (input in $findings/):"
    tail -40 "build-fuzz/$t.log"
    status=1
  else
    grep -E "stat::number_of_executed_runs|cov:" "build-fuzz/$t.log" | tail -2 | tr '\n' ' '; echo
  fi
done
exit $status
