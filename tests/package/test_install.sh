#!/usr/bin/env bash
# ctest package.install: `cmake --install` into a fresh temporary prefix, moved to another
# directory (so nothing can point back at the build or the install step), and — where cpack and
# dpkg-deb are available — the .deb built by `cpack -G DEB` and unpacked with `dpkg-deb -x`.
# From a working directory outside the source tree, with no INTERNLM_* environment pointing at
# it, each copy runs `internlm --version` (and must report its own share/internlm as data dir),
# `synth --preset tiny` (the installed tokenizer), `inspect --strict`, the built-in default
# model (created in $XDG_CACHE_HOME), and the installed prefix also `validate --quick` (the
# installed prompt set; the API stage starts the installed binary as `serve`).
# Usage: test_install.sh BUILD_DIR. Exit 77 (skipped) when the build has no tokenizer to install.
set -euo pipefail
BUILD_DIR="$(cd "$1" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/internlm-install-test.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
unset INTERNLM_TOKENIZER_DIR INTERNLM_DEFAULT_MODEL INTERNLM_DATA_DIR INTERNLM_BIN INTERNLM_CPU_KERNELS
export HOME="$WORK/home" XDG_CACHE_HOME="$WORK/cache"
mkdir -p "$HOME" "$WORK/run"

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

step "cmake --install $BUILD_DIR --prefix $WORK/stage"
cmake --install "$BUILD_DIR" --prefix "$WORK/stage" >/dev/null
[ -x "$WORK/stage/bin/internlm" ] || fail "no bin/internlm in the install"
[ -f "$WORK/stage/share/internlm/prompts.jsonl" ] || fail "no share/internlm/prompts.jsonl in the install"
[ -f "$WORK/stage/share/internlm/report.schema.json" ] || fail "no share/internlm/report.schema.json in the install"
if [ ! -f "$WORK/stage/share/internlm/internlm2-tokenizer/tokenizer.model" ]; then
  echo "SKIP: the build installs no tokenizer (no ../shared/models/internlm2-tokenizer at configure time)"
  exit 77
fi
mv "$WORK/stage" "$WORK/prefix"

# check_prefix PREFIX NAME [validate]: runs the installed binary of PREFIX from $WORK/run.
check_prefix() {
  local prefix="$1" name="$2" bin="$1/bin/internlm"
  touch "$WORK/$name.start"
  cd "$WORK/run"
  step "$name: internlm --version"
  local version
  version="$("$bin" --version)" || fail "$name: --version exited non-zero"
  echo "$version"
  grep -q "^internlm.cpp [0-9]" <<<"$version" || fail "$name: --version prints no version"
  grep -q "^commit: " <<<"$version" || fail "$name: --version prints no commit"
  grep -q "^build type: " <<<"$version" || fail "$name: --version prints no build type"
  grep -q "^kernel sets: .*generic" <<<"$version" || fail "$name: --version lists no kernel sets"
  grep -qx "data dir: *$prefix/share/internlm" <<<"$version" ||
    fail "$name: the data dir is not $prefix/share/internlm"

  step "$name: internlm synth --preset tiny"
  "$bin" synth --preset tiny --out "$WORK/run/$name-tiny" >/dev/null
  step "$name: internlm inspect --strict"
  "$bin" inspect --model "$WORK/run/$name-tiny" --strict >/dev/null
  step "$name: internlm run (built-in default model, created in \$XDG_CACHE_HOME)"
  rm -rf "$XDG_CACHE_HOME"
  "$bin" run --prompt "hello" --max-tokens 4 --temperature 0 >/dev/null 2>"$WORK/run/$name-run.err" ||
    { cat "$WORK/run/$name-run.err" >&2; fail "$name: run with the default model failed"; }
  [ -f "$XDG_CACHE_HOME/internlm/default-tiny/config.json" ] ||
    fail "$name: the default model was not created in $XDG_CACHE_HOME/internlm/default-tiny"
  if [ "${3:-}" = validate ]; then
    step "$name: internlm validate --quick"
    "$bin" validate --model "$WORK/run/$name-tiny" --quick --out "$WORK/run/$name-report" >"$WORK/run/$name-validate.log" 2>&1 ||
      { tail -40 "$WORK/run/$name-validate.log" >&2; fail "$name: validate --quick failed"; }
    [ -f "$WORK/run/$name-report/report.json" ] || fail "$name: validate wrote no report.json"
    tail -3 "$WORK/run/$name-validate.log"
  fi
  # Nothing was written into the installed prefix.
  [ -z "$(find "$prefix" -newer "$WORK/$name.start" -print -quit)" ] || fail "$name: files were written into the prefix"
}

check_prefix "$WORK/prefix" install validate

if command -v cpack >/dev/null && command -v dpkg-deb >/dev/null; then
  step "cpack -G DEB"
  (cd "$BUILD_DIR" && cpack -G DEB -B "$WORK/cpack" >"$WORK/cpack.log" 2>&1) ||
    { cat "$WORK/cpack.log" >&2; fail "cpack -G DEB failed"; }
  deb="$(ls "$WORK"/cpack/internlm_*.deb)"
  dpkg-deb -f "$deb" Package Version Architecture Depends
  [ "$(dpkg-deb -f "$deb" Package)" = internlm ] || fail "the package is not named internlm"
  deps="$(dpkg-deb -f "$deb" Depends)"
  for lib in libsentencepiece0 libfmt9 libc6 libstdc++6; do
    grep -q "\b$lib\b" <<<"$deps" || fail "Depends lacks $lib: $deps"
  done
  dpkg-deb -x "$deb" "$WORK/deb"
  [ -x "$WORK/deb/usr/bin/internlm" ] || fail "the .deb has no /usr/bin/internlm"
  check_prefix "$WORK/deb/usr" deb
else
  echo "cpack or dpkg-deb not found: the .deb is not checked"
fi
echo "PASS"
