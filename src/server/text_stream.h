#pragma once
// The text side of one choice: token ids in, text out. Decodes incrementally (StreamDecoder:
// whole UTF-8 characters only, the same text as decoding everything at once) and applies the
// request's stop strings to the decoded text. Text that could be the start of a stop string is
// held back until the next token decides it, so a stop string is never sent, even when it is
// split across tokens or across the bytes of one character; text after a stop string is
// dropped.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace ilm::server {

// Stop-string search over text not yet sent. `match`: the byte offset where the earliest stop
// string starts, or npos. `safe`: without a match, how many leading bytes can be sent (the
// rest is the longest tail that is a proper prefix of some stop string). Stop strings are
// valid UTF-8, so both offsets fall on character boundaries of valid UTF-8 text.
struct StopScan {
  size_t match = std::string_view::npos;
  size_t safe = 0;
};
StopScan scan_stop(std::string_view text, const std::vector<std::string>& stop);

// Code points in valid UTF-8 text (OpenAI's text_offset counts these).
size_t count_chars(std::string_view s);

// Stop strings applied to a stream of text: text that could begin a stop string is held back
// until more text decides it; from a match on, nothing more comes out.
class StopFilter {
 public:
  explicit StopFilter(std::vector<std::string> stop) : stop_(std::move(stop)) {}
  // The text that may be sent now (all that is held at `final`).
  std::string feed(const std::string& text, bool final);
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stop_;
  std::string held_;  // not yet sent: might begin a stop string
  bool stopped_ = false;
};

class TextStream {
 public:
  // Stop strings are looked for in the text of the tokens after the first `min_tokens`.
  // `keep`: special ids decoded as text even when skip_special (StreamDecoder).
  TextStream(const Tokenizer& tok, std::vector<std::string> stop, bool skip_special, int64_t min_tokens = 0,
             std::vector<TokenId> keep = {});

  // Adds one generated token; returns the text that may be sent now. After a stop string has
  // matched, stopped() is true and push() returns "".
  std::string push(TokenId id);
  // The end of the choice: flushes the decoder (an incomplete UTF-8 tail becomes U+FFFD, as in
  // a whole decode) and releases the held-back text (stop strings still apply to it).
  std::string finish();

  bool stopped() const { return stop_.stopped(); }
  // Characters (code points) the decoder had produced before the last push(): the offset of
  // that token's text in the choice's text, ignoring stop strings (OpenAI's text_offset).
  size_t last_token_offset() const { return last_offset_; }

 private:
  StreamDecoder decoder_;
  StopFilter stop_;
  size_t decoded_chars_ = 0, last_offset_ = 0;
  int64_t min_tokens_ = 0, pushed_ = 0;
};

}  // namespace ilm::server
