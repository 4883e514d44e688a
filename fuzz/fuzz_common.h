#pragma once
// Shared by the libFuzzer targets: the real InternLM2 tokenizer, loaded once, and a trap for
// a violated property (a crash the fuzzer reports and minimizes, like any sanitizer finding).
#include <cstdlib>
#include <cstdio>

#include "tokenizer/tokenizer.h"

namespace ilm::fuzz {

inline const Tokenizer& tokenizer() {
  static const Tokenizer tok = Tokenizer::load(INTERNLM_FUZZ_TOKENIZER_DIR);
  return tok;
}

[[noreturn]] inline void violated(const char* what) {
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

}  // namespace ilm::fuzz
