#pragma once
// The InternLM2 tokenizer as the official *fast* Hugging Face tokenizer behaves: added
// (special) tokens from tokenizer_config.json are split out of the text literally first,
// every other chunk is encoded by the sentencepiece BPE model, BOS is prepended per
// add_bos_token. Decoding is exact (no space stripping, no clean-up).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace ilm {

using TokenId = int32_t;

struct AddedToken {
  std::string content;
  TokenId id;
  bool special = true;
};

class Tokenizer {
 public:
  // Loads `dir/tokenizer.model` and `dir/tokenizer_config.json` (the latter optional: without
  // it, only sentencepiece's control pieces are known and add_bos_token defaults to true).
  // The sentencepiece pieces whose ids are renamed by added_tokens_decoder (92538..92543,
  // "[UNUSED_TOKEN_141]".."[UNUSED_TOKEN_146]" in the .model file) are renamed in the loaded
  // model, so text such as "[UNUSED_TOKEN_145]" is ordinary text, as in the fast tokenizer,
  // and never becomes the stop id 92542.
  static Tokenizer load(const std::filesystem::path& dir);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // add_special: prepend BOS if add_bos_token (and EOS if add_eos_token).
  // Added tokens (the 9 of tokenizer_config) are matched literally, leftmost first, longest
  // at a position, case-sensitive, no whitespace stripped. Invalid UTF-8 in `text` throws
  // ilm::Error.
  std::vector<TokenId> encode(std::string_view text, bool add_special = true) const;

  // Whether `text` (encoded without BOS/EOS) certainly has more than `limit` tokens, found
  // without encoding all of a long text: a prompt far past the context is refused at the cost
  // of encoding a little more than `limit` tokens, not all of it. Returns a lower bound on the
  // count when it does, nullopt when the text may fit (then encode it).
  std::optional<int64_t> count_beyond(std::string_view text, int64_t limit) const;

  // Exact decoding: "▁" -> " ", byte-fallback pieces joined and decoded as UTF-8 (invalid
  // sequences -> U+FFFD), special tokens rendered as their content unless skip_special.
  // Out-of-range ids throw ilm::Error.
  std::string decode(const std::vector<TokenId>& ids, bool skip_special = false) const;

  // The raw bytes one token contributes (byte-fallback tokens give a single raw byte, which
  // may be part of a UTF-8 sequence). Used by StreamDecoder.
  std::string token_bytes(TokenId id, bool skip_special = false) const;

  std::string id_to_piece(TokenId id) const;
  std::optional<TokenId> piece_to_id(std::string_view piece) const;
  int64_t vocab_size() const;
  bool is_special(TokenId id) const;

  TokenId bos_id() const { return bos_id_; }
  TokenId eos_id() const { return eos_id_; }
  std::optional<TokenId> pad_id() const { return pad_id_; }
  bool add_bos() const { return add_bos_; }
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  const std::string& chat_template() const { return chat_template_; }  // raw jinja, informational

 private:
  Tokenizer();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::vector<AddedToken> added_;  // sorted by content length, longest first
  std::vector<uint8_t> special_;   // per id: 1 if special (added or control)
  TokenId bos_id_ = 1, eos_id_ = 2;
  std::optional<TokenId> pad_id_;
  bool add_bos_ = true, add_eos_ = false;
  std::string chat_template_;
  std::vector<int32_t> added_index_;  // per id: index into added_, or -1
  std::string added_first_bytes_;     // first bytes of the added tokens (split-scan filter)

  std::vector<TokenId> encode_chunk(std::string_view chunk) const;
  void check_id(TokenId id) const;
  // Byte offset of the first byte that is not part of valid UTF-8, or npos (stream_decoder.cpp).
  static size_t utf8_error_offset(std::string_view s);
};

// Turns a stream of token ids into text pieces that are always whole UTF-8: bytes of an
// unfinished character are held back until it completes; a byte sequence that can never
// become valid UTF-8 is emitted as U+FFFD. flush() emits what is held back (U+FFFD for
// an incomplete tail). Concatenating every push() and flush() equals Tokenizer::decode().
class StreamDecoder {
 public:
  // `keep`: special ids written as text even when skipping special tokens (tool-call markers,
  // which the server parses out of the text itself).
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false, std::vector<TokenId> keep = {})
      : tok_(&tok), skip_special_(skip_special), keep_(std::move(keep)) {}
  std::string push(TokenId id);
  std::string flush();

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::vector<TokenId> keep_;
  std::string pending_;  // bytes of an incomplete UTF-8 sequence
};

// Returns the longest prefix of `bytes` made of complete, valid UTF-8, with invalid
// sequences replaced by U+FFFD; `rest` gets the trailing bytes of a sequence that may still
// complete. Shared by StreamDecoder and the server's stop-string handling. With rest == nullptr
// an incomplete tail is replaced too (one U+FFFD), as at the end of a stream. The replacement
// rule is Unicode's "maximal subpart" practice (as Python's errors="replace"): each maximal
// prefix of a sequence that cannot complete, or each byte that cannot start one, becomes one
// U+FFFD; `rest` may point at the string `bytes` views.
std::string take_valid_utf8(std::string_view bytes, std::string* rest);
// True if `s` is entirely valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace ilm
