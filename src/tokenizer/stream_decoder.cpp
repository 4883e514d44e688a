// UTF-8 validation and lossy decoding with one replacement rule for the whole project:
// Unicode's "maximal subpart" practice (Unicode 15, section 3.9, U+FFFD substitution; the
// same as WHATWG's decoder and Python's bytes.decode("utf-8", errors="replace")): each
// maximal prefix of a well-formed sequence that cannot be completed, or each single byte that
// cannot start one, becomes one U+FFFD. The decision for every byte depends only on the bytes
// before it and at most three after it, so decoding a byte stream piecewise (holding back an
// unfinished but so-far-valid sequence) gives exactly the result of decoding it at once.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace ilm {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

enum class Utf8Step { kChar, kInvalid, kTruncated };

struct StepResult {
  Utf8Step kind;
  size_t len;  // kChar: the character; kInvalid: the maximal subpart (>= 1); kTruncated: the valid tail
};

// Classifies the sequence that starts at s[i] (Unicode Table 3-7, well-formed byte sequences).
StepResult utf8_step(std::string_view s, size_t i) {
  const auto b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) return {Utf8Step::kChar, 1};
  int need = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // the range of the second byte; later bytes are 80..BF
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b == 0xE0) {
    need = 2;
    lo = 0xA0;  // no overlongs
  } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
    need = 2;
  } else if (b == 0xED) {
    need = 2;
    hi = 0x9F;  // no surrogates
  } else if (b == 0xF0) {
    need = 3;
    lo = 0x90;  // no overlongs
  } else if (b >= 0xF1 && b <= 0xF3) {
    need = 3;
  } else if (b == 0xF4) {
    need = 3;
    hi = 0x8F;  // <= U+10FFFF
  } else {
    return {Utf8Step::kInvalid, 1};  // 80..C1, F5..FF never start a sequence
  }
  size_t j = i + 1;
  for (int k = 0; k < need; ++k, ++j) {
    if (j >= s.size()) return {Utf8Step::kTruncated, j - i};
    const auto c = static_cast<uint8_t>(s[j]);
    if (c < lo || c > hi) return {Utf8Step::kInvalid, j - i};
    lo = 0x80;
    hi = 0xBF;
  }
  return {Utf8Step::kChar, j - i};
}

}  // namespace

namespace {
size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const StepResult r = utf8_step(s, i);
    if (r.kind != Utf8Step::kChar) return i;
    i += r.len;
  }
  return std::string_view::npos;
}
}  // namespace

size_t Tokenizer::utf8_error_offset(std::string_view s) { return first_invalid_utf8(s); }

bool is_valid_utf8(std::string_view s) { return first_invalid_utf8(s) == std::string_view::npos; }

std::string take_valid_utf8(std::string_view bytes, std::string* rest) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  size_t run = 0;  // start of the pending run of valid bytes, copied in one append
  std::string tail;
  while (i < bytes.size()) {
    if (static_cast<uint8_t>(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    const StepResult r = utf8_step(bytes, i);
    if (r.kind == Utf8Step::kChar) {
      i += r.len;
      continue;
    }
    out.append(bytes.substr(run, i - run));
    if (r.kind == Utf8Step::kTruncated && rest != nullptr) {
      tail.assign(bytes.substr(i));  // may still complete: hold it back
      i = run = bytes.size();
      break;
    }
    out.append(kReplacement);
    i += r.len;
    run = i;
  }
  out.append(bytes.substr(run, i - run));
  if (rest != nullptr) *rest = std::move(tail);  // last: `rest` may alias `bytes`
  return out;
}

std::string StreamDecoder::push(TokenId id) {
  const bool keep = std::find(keep_.begin(), keep_.end(), id) != keep_.end();
  pending_ += tok_->token_bytes(id, skip_special_ && !keep);
  std::string rest;
  std::string out = take_valid_utf8(pending_, &rest);
  pending_ = std::move(rest);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = take_valid_utf8(pending_, nullptr);
  pending_.clear();
  return out;
}

}  // namespace ilm
