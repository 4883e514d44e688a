#pragma once
// A string-keyed map that keeps the `capacity` most recently used entries (not thread-safe:
// its owners lock around it). Used for compiled grammars and for their token masks.
#include <algorithm>
#include <cstddef>
#include <list>
#include <string>
#include <unordered_map>
#include <utility>

namespace ilm::structured {

template <typename V>
class LruMap {
 public:
  explicit LruMap(size_t capacity) : capacity_(std::max<size_t>(1, capacity)) {}

  // The value under `key` (now the most recent), or nullptr.
  const V* find(const std::string& key) {
    const auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second.second);
    return &it->second.first;
  }

  // Stores `value` unless the key is present; returns the stored value. Evicts the least
  // recently used entries past the capacity.
  const V& put(const std::string& key, V value) {
    if (const V* v = find(key)) return *v;
    order_.push_front(key);
    auto& slot = map_.emplace(key, std::make_pair(std::move(value), order_.begin())).first->second.first;
    while (map_.size() > capacity_) {
      map_.erase(order_.back());
      order_.pop_back();
    }
    return slot;  // the new entry is the most recent: never the one evicted
  }

 private:
  size_t capacity_;
  std::list<std::string> order_;  // most recent first
  std::unordered_map<std::string, std::pair<V, std::list<std::string>::iterator>> map_;
};

}  // namespace ilm::structured
