#include "model/kv_cache.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm {

KvCache::KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t capacity)
    : n_layers_(n_layers),
      stride_(n_kv_heads * head_dim),
      capacity_(capacity),
      k_(static_cast<size_t>(n_layers)),
      v_(static_cast<size_t>(n_layers)) {}

void KvCache::reserve_more(int64_t n) {
  const int64_t need = length_ + n;
  if (need > capacity_)
    throw Error(fmt::format("sequence of {} tokens exceeds the context limit of {} tokens", need,
                            capacity_));
  if (need <= allocated_) return;
  // Grow geometrically so a long generation does not reallocate every step.
  const int64_t grown = std::min(capacity_, std::max(need, allocated_ * 2));
  for (int64_t l = 0; l < n_layers_; ++l) {
    k_[static_cast<size_t>(l)].resize(static_cast<size_t>(grown * stride_));
    v_[static_cast<size_t>(l)].resize(static_cast<size_t>(grown * stride_));
  }
  allocated_ = grown;
}

KvView KvCache::layer(int64_t layer, int64_t length) {
  auto l = static_cast<size_t>(layer);
  return KvView{k_[l].data(), v_[l].data(), length, stride_};
}

void KvCache::truncate(int64_t n) { length_ = std::clamp<int64_t>(n, 0, length_); }

}  // namespace ilm
