#include "structured/grammar_cache.h"

#include <functional>

namespace ilm::structured {

std::shared_ptr<const TokenTrie> GrammarCache::trie() {
  std::lock_guard lock(mu_);
  if (!trie_) trie_ = std::make_shared<const TokenTrie>(tok_);
  return trie_;
}

std::shared_ptr<Grammar> GrammarCache::get(const std::string& key, const std::function<Schema()>& compile,
                                           const std::vector<TokenId>& prefix, const std::vector<TokenId>& suffix) {
  {
    std::lock_guard lock(mu_);
    if (const auto* g = cache_.find(key)) return *g;
  }
  auto g = std::make_shared<Grammar>(compile(), trie(), 256, prefix, suffix);  // outside the lock: may throw
  std::lock_guard lock(mu_);
  return cache_.put(key, std::move(g));
}

std::shared_ptr<Grammar> GrammarCache::for_schema(const nlohmann::ordered_json& schema) {
  return get("schema:" + schema.dump(), [&] { return compile_schema(schema); });
}

std::shared_ptr<Grammar> GrammarCache::for_json_object() {
  return get("json_object", [] { return any_json_object(); });
}

std::shared_ptr<Grammar> GrammarCache::for_framed_schema(const nlohmann::ordered_json& schema,
                                                         const std::vector<TokenId>& prefix,
                                                         const std::vector<TokenId>& suffix) {
  std::string key = "framed:";
  for (TokenId id : prefix) key += std::to_string(id) + ",";
  key += ";";
  for (TokenId id : suffix) key += std::to_string(id) + ",";
  return get(key + ":" + schema.dump(), [&] { return compile_schema(schema); }, prefix, suffix);
}

}  // namespace ilm::structured
