#pragma once
// Compiled grammars by schema text, shared by the requests that use the same schema (compiling
// and the first masks are the expensive part), plus the vocabulary trie they all walk (built
// once, on first use: ~0.3 s for InternLM2's 92,544 tokens).
#include <memory>
#include <mutex>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "structured/lru_map.h"
#include "structured/token_mask.h"

namespace ilm::structured {

class GrammarCache {
 public:
  // At most `capacity` grammars (each with up to ~3 MiB of cached masks) are kept.
  explicit GrammarCache(const Tokenizer& tok, size_t capacity = 16) : tok_(tok), cache_(capacity) {}
  // The grammar of `schema` (throws SchemaError); compiled once per distinct schema text.
  std::shared_ptr<Grammar> for_schema(const nlohmann::ordered_json& schema);
  // Any JSON object (response_format json_object).
  std::shared_ptr<Grammar> for_json_object();
  // `schema` between forced ids (a tool call: the markers around the call's JSON).
  std::shared_ptr<Grammar> for_framed_schema(const nlohmann::ordered_json& schema, const std::vector<TokenId>& prefix,
                                             const std::vector<TokenId>& suffix);

 private:
  std::shared_ptr<const TokenTrie> trie();
  std::shared_ptr<Grammar> get(const std::string& key, const std::function<Schema()>& compile,
                               const std::vector<TokenId>& prefix = {}, const std::vector<TokenId>& suffix = {});

  const Tokenizer& tok_;
  std::mutex mu_;
  std::shared_ptr<const TokenTrie> trie_;
  LruMap<std::shared_ptr<Grammar>> cache_;
};

}  // namespace ilm::structured
