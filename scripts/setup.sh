#!/usr/bin/env bash
# Installs dependencies from Debian packages. Idempotent: skips apt when all are present.
#   scripts/setup.sh --run   only what building and running `internlm` needs (scripts/run.sh, the Dockerfile)
#   scripts/setup.sh         that plus every test tool (scripts/test.sh, .ci/run)
set -euo pipefail
MODE=all
case "${1:-}" in
  --run) MODE=run ;;
  "" | --all) ;;
  *) echo "usage: scripts/setup.sh [--run|--all]" >&2; exit 2 ;;
esac
# Building and running internlm.
RUN_PKGS=(build-essential cmake ninja-build pkg-config git
          libsentencepiece-dev nlohmann-json3-dev libcli11-dev libfmt-dev libcpp-httplib-dev
          libspdlog-dev libtomlplusplus-dev)
# Tests only.
TEST_PKGS=(libgtest-dev libgmock-dev libbenchmark-dev
           python3 python3-numpy python3-sentencepiece python3-jsonschema
           chromium  # python3-jsonschema, chromium: the validate report test (schema, HTML rendering)
           g++-aarch64-linux-gnu qemu-user  # the NEON kernel check (tools/check_arm.sh): cross-compiled, run under qemu
           clang libclang-rt-14-dev  # the libFuzzer targets (scripts/fuzz.sh)
           openmpi-bin libopenmpi-dev  # tensor parallelism (--tp N under mpirun) and its tests; the build works without
           iproute2)  # `ip netns`: the two-host tensor-parallel test (two network namespaces, as root)
PKGS=("${RUN_PKGS[@]}")
[ "$MODE" = all ] && PKGS+=("${TEST_PKGS[@]}")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$MODE" = all ]; then
  # Node runs the API tests with the official `openai` client; a Node install from elsewhere
  # (e.g. one that bundles npm) is used as it is.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # --run: no recommended packages (a build machine or image needs none of them).
  APT_OPTS=(); [ "$MODE" = run ] && APT_OPTS=(--no-install-recommends)
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_OPTS[@]}" "${missing[@]}"
fi
[ "$MODE" = run ] && exit 0
# The `openai` client for tests/node, pinned by its package-lock.json; reinstalled only when
# node_modules is missing or older than the lock file. Without the npm registry only that
# test fails, so building and running do not depend on it.
NODE_DIR="$(dirname "$0")/../tests/node"
if [ ! -f "$NODE_DIR/node_modules/.package-lock.json" ] || [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
  echo "setup: npm ci in tests/node"
  npm ci --prefix "$NODE_DIR" --silent --no-audit --no-fund || echo "setup: warning: npm ci failed; the node API test will fail"
fi
