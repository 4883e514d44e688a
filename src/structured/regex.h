#pragma once
// JSON Schema `pattern` (an ECMA-262 regular expression, unanchored: it may match anywhere in
// the string) compiled to a DFA over the string's UTF-8 bytes, so the JSON matcher can follow
// a string value byte by byte and know at every byte whether the string can still match.
//
// Subset: literals; escapes \d \D \w \W \s \S, \n \t \r \f \v \0, \xHH, \uHHHH (not a
// surrogate) and escaped ASCII punctuation; `.` (any code point but \n \r U+2028 U+2029);
// classes [...] with ranges, escapes and negation; groups ( ), (?: ) and (?<name> ); |;
// quantifiers * + ? {n} {n,} {n,m} (n, m <= 1000), each optionally lazy (same language);
// ^ only at the start and $ only at the end of the pattern or of a top-level alternative.
// One regex character is one code point (the "u" flag's view). Refused (RegexError, saying
// what): backreferences, lookaround, \b \B, \p{..}, \c, \u{..}, other anchors, invalid syntax,
// and patterns whose DFA needs more than kMaxDfaStates states.
//
// Only strings the matcher can write count: no control characters other than \b \t \n \f \r
// (the matcher writes no \u escapes in pattern strings), no surrogates. "Live" below is
// relative to that alphabet, so a live state always has a writable completion.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace ilm::structured {

inline constexpr size_t kMaxDfaStates = 2000;
inline constexpr int32_t kDeadState = -1;

class RegexError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A DFA over bytes in which every state can still reach an accepting one (dead states are
// pruned: their transitions are kDeadState).
struct ByteDfa {
  std::vector<int32_t> next;  // state * 256 + byte
  std::vector<uint8_t> accepting;
  int32_t start = kDeadState;  // kDeadState: no writable string matches

  int32_t step(int32_t state, uint8_t byte) const { return next[static_cast<size_t>(state) * 256 + byte]; }
  bool accepts(int32_t state) const { return accepting[static_cast<size_t>(state)] != 0; }
  size_t states() const { return accepting.size(); }
};

// Search semantics, as JSON Schema's `pattern`: the DFA accepts a string when the pattern
// matches some part of it (all of it with ^...$).
ByteDfa compile_pattern(std::string_view pattern, size_t max_states = kMaxDfaStates);

}  // namespace ilm::structured
