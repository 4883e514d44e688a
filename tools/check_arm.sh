#!/usr/bin/env bash
# Cross-compiles the aarch64 NEON kernels of the cpu backend together with the standalone
# checker tests/arm/kernel_check.cpp (static, no libraries) and runs it under qemu-aarch64,
# comparing every NEON kernel with the portable one. Works on any Linux host with Debian's
# g++-aarch64-linux-gnu and qemu-user (scripts/setup.sh installs them).
#
# Usage: tools/check_arm.sh [BUILD_DIR]     (default: build-arm in the repository root)
# Exit status: 0 passed, 1 failed; when the cross compiler or qemu-aarch64 is missing it
# prints "skipped" and exits with $CHECK_ARM_SKIP_RC (default 0; ctest sets 77 = SKIP).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${1:-$ROOT/build-arm}"
CXX="${AARCH64_CXX:-aarch64-linux-gnu-g++}"
QEMU="${QEMU_AARCH64:-qemu-aarch64}"
SKIP_RC="${CHECK_ARM_SKIP_RC:-0}"
# On an aarch64 host: the native compiler, and the binary runs as it is.
if [ "$(uname -m)" = aarch64 ] && [ -z "${AARCH64_CXX:-}" ]; then
  CXX=g++
  QEMU=""
fi

missing=()
command -v "$CXX" >/dev/null 2>&1 || missing+=("$CXX (apt-get install g++-aarch64-linux-gnu)")
[ -z "$QEMU" ] || command -v "$QEMU" >/dev/null 2>&1 || missing+=("$QEMU (apt-get install qemu-user)")
if ((${#missing[@]})); then
  echo "check_arm: skipped: not installed: ${missing[*]}"
  exit "$SKIP_RC"
fi

mkdir -p "$BUILD_DIR"
BUILD_DIR="$(cd "$BUILD_DIR" && pwd)"
BIN="$BUILD_DIR/kernel_check"
FLAGS=(-std=c++20 -O2 -Isrc)
# The project's warnings; as errors for the project's own sources (the aarch64 build of the
# kernels must stay clean under INTERNLM_WERROR), as plain warnings for the checker.
WARN=(-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual
      -Wnull-dereference -Wimplicit-fallthrough)
SRCS=(src/backend/cpu/kernels.cpp src/backend/cpu/kernels_generic.cpp src/backend/cpu/kernels_neon.cpp
      src/common/dtype.cpp)
echo "check_arm: $CXX -O2 -static -> $BIN"
cd "$ROOT"
objs=()
for src in "${SRCS[@]}"; do
  obj="$BUILD_DIR/$(basename "$src" .cpp).o"
  "$CXX" "${FLAGS[@]}" "${WARN[@]}" -Werror -c "$src" -o "$obj"
  objs+=("$obj")
done
"$CXX" "${FLAGS[@]}" "${WARN[@]}" -c tests/arm/kernel_check.cpp -o "$BUILD_DIR/kernel_check.o"
"$CXX" -static "$BUILD_DIR/kernel_check.o" "${objs[@]}" -o "$BIN"
if [ -n "$QEMU" ]; then
  echo "check_arm: running under $QEMU"
  "$QEMU" "$BIN"
else
  "$BIN"
fi
