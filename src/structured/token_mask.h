#pragma once
// Which tokens of the vocabulary keep a JSON match alive: the vocabulary's byte strings in a
// trie, walked depth-first from the matcher's state, a subtree pruned as soon as its prefix
// kills every thread. Masks are cached per matcher state (many states recur: inside a string
// without length limits, between array items), per compiled grammar.
//
// Special tokens (control tokens, <|im_end|> ...) have no bytes here and are never in a mask;
// the caller allows the end-of-reply ids exactly when the match can end.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "structured/json_matcher.h"
#include "structured/lru_map.h"
#include "tokenizer/tokenizer.h"

namespace ilm::structured {

class TokenTrie {
 public:
  explicit TokenTrie(const Tokenizer& tok);
  int64_t vocab_size() const { return vocab_; }

  struct Node {
    int32_t first_child = -1, next_sibling = -1;
    int32_t tokens_begin = 0, tokens_end = 0;  // ids ending here: ids_[begin, end)
    uint8_t byte = 0;
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<TokenId>& ids() const { return ids_; }
  // The text a token adds to the reply, as the matcher sees it.
  const std::string& bytes(TokenId id) const { return bytes_[static_cast<size_t>(id)]; }
  size_t longest() const { return longest_; }  // bytes of the longest token

 private:
  int64_t vocab_ = 0;
  size_t longest_ = 0;
  std::vector<Node> nodes_;  // nodes_[0]: the root (no byte)
  std::vector<TokenId> ids_;
  std::vector<std::string> bytes_;
};

using TokenBits = std::vector<uint64_t>;  // bit id set: the token is allowed
inline bool allowed(const TokenBits& b, TokenId id) { return (b[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1u; }

// Where one sequence is in a grammar: the forced ids before the value, the value, the forced
// ids after it.
struct GrammarState {
  enum Phase : uint8_t { Prefix, Value, Suffix };
  Phase phase = Value;
  size_t forced = 0;  // Prefix / Suffix: ids of it already generated
  MatchState match;
};

// The grammar's verdict on the next token: the allowed ids, and whether the reply may end.
struct GrammarStep {
  std::shared_ptr<const TokenBits> allowed;
  bool end_allowed = false;
};

// A compiled schema and its mask cache, shared by every sequence that uses the same schema.
// A reply may be constrained to `prefix` ids, then the JSON value, then `suffix` ids (a tool
// call: the action markers, the call's JSON, the closing marker).
class Grammar {
 public:
  // A mask is vocab / 8 bytes (11.3 KiB for InternLM2): 256 of them are ~3 MiB per grammar.
  Grammar(Schema schema, std::shared_ptr<const TokenTrie> trie, size_t cache_entries = 256,
          std::vector<TokenId> prefix = {}, std::vector<TokenId> suffix = {});
  const Schema& schema() const { return schema_; }
  const TokenTrie& trie() const { return *trie_; }
  // The tokens that keep `st` alive (cached).
  std::shared_ptr<const TokenBits> mask(const MatchState& st, bool* hit = nullptr);

  GrammarState start() const;
  GrammarStep next(const GrammarState& st, bool* hit = nullptr);
  // `id` was generated (an allowed one, not an end id).
  void advance(GrammarState& st, TokenId id) const;
  struct Stats {
    uint64_t hits = 0, misses = 0;
  };
  Stats stats() const;

 private:
  TokenBits compute(const MatchState& st) const;

  std::shared_ptr<const TokenBits> only(TokenId id) const;

  Schema schema_;
  std::shared_ptr<const TokenTrie> trie_;
  std::vector<TokenId> prefix_, suffix_;
  std::vector<std::shared_ptr<const TokenBits>> prefix_masks_, suffix_masks_;  // one id each
  std::shared_ptr<const TokenBits> none_;
  mutable std::mutex mu_;
  LruMap<std::shared_ptr<const TokenBits>> cache_;
  Stats stats_;
};

}  // namespace ilm::structured
