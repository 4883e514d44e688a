#include "structured/token_mask.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace ilm::structured {

TokenTrie::TokenTrie(const Tokenizer& tok) : vocab_(tok.vocab_size()) {
  bytes_.resize(static_cast<size_t>(vocab_));
  // Children kept in maps while building, then flattened into first-child / next-sibling form.
  struct Build {
    std::map<uint8_t, int32_t> children;
    std::vector<TokenId> ids;
  };
  std::vector<Build> build(1);
  for (TokenId id = 0; id < vocab_; ++id) {
    if (tok.is_special(id)) continue;
    std::string b = tok.token_bytes(id, /*skip_special=*/true);
    if (b.empty()) continue;
    int32_t at = 0;
    for (char ch : b) {
      const auto c = static_cast<uint8_t>(ch);
      auto it = build[static_cast<size_t>(at)].children.find(c);
      if (it == build[static_cast<size_t>(at)].children.end()) {
        build.emplace_back();
        it = build[static_cast<size_t>(at)].children.emplace(c, static_cast<int32_t>(build.size() - 1)).first;
      }
      at = it->second;
    }
    build[static_cast<size_t>(at)].ids.push_back(id);
    longest_ = std::max(longest_, b.size());
    bytes_[static_cast<size_t>(id)] = std::move(b);
  }
  nodes_.resize(build.size());
  for (size_t i = 0; i < build.size(); ++i) {
    Node& n = nodes_[i];
    n.tokens_begin = static_cast<int32_t>(ids_.size());
    ids_.insert(ids_.end(), build[i].ids.begin(), build[i].ids.end());
    n.tokens_end = static_cast<int32_t>(ids_.size());
    int32_t prev = -1;
    for (const auto& [c, child] : build[i].children) {
      nodes_[static_cast<size_t>(child)].byte = c;
      if (prev < 0) n.first_child = child;
      else nodes_[static_cast<size_t>(prev)].next_sibling = child;
      prev = child;
    }
  }
}

Grammar::Grammar(Schema schema, std::shared_ptr<const TokenTrie> trie, size_t cache_entries,
                 std::vector<TokenId> prefix, std::vector<TokenId> suffix)
    : schema_(std::move(schema)),
      trie_(std::move(trie)),
      prefix_(std::move(prefix)),
      suffix_(std::move(suffix)),
      cache_(cache_entries) {
  for (TokenId id : prefix_) prefix_masks_.push_back(only(id));
  for (TokenId id : suffix_) suffix_masks_.push_back(only(id));
  none_ = std::make_shared<const TokenBits>(static_cast<size_t>((trie_->vocab_size() + 63) / 64), 0);
}

std::shared_ptr<const TokenBits> Grammar::only(TokenId id) const {
  if (id < 0 || id >= trie_->vocab_size()) throw std::out_of_range("grammar: a forced id outside the vocabulary");
  TokenBits bits(static_cast<size_t>((trie_->vocab_size() + 63) / 64), 0);
  bits[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  return std::make_shared<const TokenBits>(std::move(bits));
}

GrammarState Grammar::start() const {
  GrammarState st;
  st.phase = prefix_.empty() ? GrammarState::Value : GrammarState::Prefix;
  st.match = initial_state(schema_);
  return st;
}

GrammarStep Grammar::next(const GrammarState& st, bool* hit) {
  if (hit) *hit = true;
  switch (st.phase) {
    case GrammarState::Prefix:
      return {prefix_masks_[st.forced], false};
    case GrammarState::Suffix:
      if (st.forced < suffix_.size()) return {suffix_masks_[st.forced], false};
      return {none_, true};
    case GrammarState::Value:
      break;
  }
  auto bits = mask(st.match, hit);
  const bool complete = can_end(schema_, st.match);
  if (suffix_.empty()) return {std::move(bits), complete};
  if (!complete) return {std::move(bits), false};
  auto with_suffix = std::make_shared<TokenBits>(*bits);  // the value may end: the suffix may begin
  const TokenId id = suffix_.front();
  (*with_suffix)[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  return {std::move(with_suffix), false};
}

void Grammar::advance(GrammarState& st, TokenId id) const {
  switch (st.phase) {
    case GrammarState::Prefix:
      if (id != prefix_[st.forced]) throw std::logic_error("grammar: a forced id was not generated");
      if (++st.forced == prefix_.size()) {
        st.phase = GrammarState::Value;
        st.forced = 0;
      }
      return;
    case GrammarState::Suffix:
      if (st.forced >= suffix_.size() || id != suffix_[st.forced])
        throw std::logic_error("grammar: a forced id was not generated");
      ++st.forced;
      return;
    case GrammarState::Value:
      if (!suffix_.empty() && id == suffix_.front() && can_end(schema_, st.match)) {
        st.phase = GrammarState::Suffix;
        st.forced = 1;
        return;
      }
      st.match = structured::advance(schema_, std::move(st.match), trie_->bytes(id));
      return;
  }
}

TokenBits Grammar::compute(const MatchState& st) const {
  const auto& nodes = trie_->nodes();
  const auto& ids = trie_->ids();
  TokenBits bits(static_cast<size_t>((trie_->vocab_size() + 63) / 64), 0);
  // Depth-first: every child of a live node is tried with its byte; a dead one prunes the
  // tokens below it.
  struct Item {
    int32_t node;
    MatchState state;
  };
  std::vector<Item> stack;
  stack.push_back({0, st});
  while (!stack.empty()) {
    Item it = std::move(stack.back());
    stack.pop_back();
    for (int32_t ch = nodes[static_cast<size_t>(it.node)].first_child; ch >= 0;
         ch = nodes[static_cast<size_t>(ch)].next_sibling) {
      const TokenTrie::Node& n = nodes[static_cast<size_t>(ch)];
      MatchState next = structured::advance(schema_, it.state, n.byte);
      if (next.dead()) continue;
      for (int32_t k = n.tokens_begin; k < n.tokens_end; ++k) {
        const TokenId id = ids[static_cast<size_t>(k)];
        bits[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
      }
      if (n.first_child >= 0) stack.push_back({ch, std::move(next)});
    }
  }
  return bits;
}

std::shared_ptr<const TokenBits> Grammar::mask(const MatchState& st, bool* hit) {
  if (hit) *hit = false;
  // +1: a token's bytes and then one more decision (e.g. the closing quote's count check).
  const std::string key = state_key(st, &schema_, static_cast<int64_t>(trie_->longest()) + 1);
  {
    std::lock_guard lock(mu_);
    if (const auto* bits = cache_.find(key)) {
      ++stats_.hits;
      if (hit) *hit = true;
      return *bits;
    }
    ++stats_.misses;
  }
  auto bits = std::make_shared<const TokenBits>(compute(st));
  std::lock_guard lock(mu_);
  return cache_.put(key, std::move(bits));  // another thread's equal mask may win
}

Grammar::Stats Grammar::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace ilm::structured
