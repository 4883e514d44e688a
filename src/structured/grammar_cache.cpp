#include "structured/grammar_cache.h"

#include <functional>

namespace ilm::structured {

std::shared_ptr<const TokenTrie> GrammarCache::trie() {
  std::lock_guard lock(mu_);
  if (!trie_) trie_ = std::make_shared<const TokenTrie>(tok_);
  return trie_;
}

std::shared_ptr<Grammar> GrammarCache::get(const std::string& key, const std::function<Schema()>& compile) {
  {
    std::lock_guard lock(mu_);
    if (const auto* g = cache_.find(key)) return *g;
  }
  auto g = std::make_shared<Grammar>(compile(), trie());  // outside the lock: may throw
  std::lock_guard lock(mu_);
  return cache_.put(key, std::move(g));
}

std::shared_ptr<Grammar> GrammarCache::for_schema(const nlohmann::ordered_json& schema) {
  return get("schema:" + schema.dump(), [&] { return compile_schema(schema); });
}

std::shared_ptr<Grammar> GrammarCache::for_json_object() {
  return get("json_object", [] { return any_json_object(); });
}

}  // namespace ilm::structured
