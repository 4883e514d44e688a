#pragma once
// A byte-at-a-time recognizer of the JSON texts a compiled schema allows (json_schema.h).
// The state is a set of threads (anyOf, enum and object keys branch), each a stack of frames;
// a byte advances every thread and keeps the survivors. A state is *viable* when some
// continuation reaches a complete value: the matcher prunes a thread as soon as its prefix can
// no longer complete (integer ranges included), so a constrained generation never paints itself
// into a corner.
//
// Strings with a pattern / format feed each decoded character byte to the pattern's DFA
// (regex.h) and end only in an accepting state; numbers with decimal bounds follow
// number_range.h.
//
// Output form: whitespace runs of at most kMaxWhitespace bytes between tokens (none before the
// value or after it), numbers of at most 64 digits and exponents of at most 2 (finite as
// doubles; bounded numbers: no exponent, at most 15 digits), strings without \u escapes of
// surrogates (and none at all in pattern strings),
// at most kMaxThreads alternatives alive at once (more are dropped: stricter, never looser).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "structured/json_schema.h"

namespace ilm::structured {

inline constexpr int kMaxWhitespace = 16;
inline constexpr size_t kMaxThreads = kMaxAlternatives;

struct Frame {
  enum Kind : uint8_t { Value, Literal, Object, Array, String, ExtraKey, Number };
  Kind kind = Value;
  uint8_t phase = 0;
  uint8_t ws = 0;     // whitespace bytes in a row
  uint8_t flags = 0;  // number: integer-only, negative; string: \u escape began with d/D
  NodeId node = 0;
  int32_t a = 0;  // literal: text id; object: next listed property; string: UTF-8 bytes pending;
                  // decimal-bounded number: fraction digits
  int32_t b = 0;  // literal: position; object: property being read (-1: an extra key); string:
                  // the next continuation byte's range; number: digits (bounded: integer digits)
  int64_t c = 0;  // array: items so far; string: characters so far; number: |value| (bounded
                  // ints), all digits as one integer (decimal-bounded numbers)
  int32_t d = 0;  // string with a pattern: the DFA state after the characters so far
};

struct Thread {
  std::vector<Frame> stack;
  std::string key;  // an extra object key being read
};

struct MatchState {
  std::vector<Thread> threads;
  bool dead() const { return threads.empty(); }
};

// The state before any byte: one thread expecting the root value.
MatchState initial_state(const Schema& s);
// The state after `byte` (empty when no thread survives).
MatchState advance(const Schema& s, const MatchState& st, uint8_t byte);
MatchState advance(const Schema& s, MatchState st, std::string_view bytes);
// True when the bytes so far are a complete value the schema allows.
bool can_end(const Schema& s, const MatchState& st);
// An encoding of the state (equal states, equal keys): the token-mask cache key. With the
// schema and `clamp` (the most bytes one token adds), counters are reduced to what the next
// `clamp` bytes can observe, so states that allow the same tokens share a key.
std::string state_key(const MatchState& st, const Schema* s = nullptr, int64_t clamp = 0);

// Whole-text check: the matcher accepts `text` as a complete value.
bool matches(const Schema& s, std::string_view text);

}  // namespace ilm::structured
