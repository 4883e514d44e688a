#pragma once
// One sequence's key/value cache: for every layer, K and V of each cached position
// (n_kv_heads x head_dim f32). Storage grows on demand up to `capacity`.
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace ilm {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t capacity);

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t stride() const { return stride_; }  // floats per position

  // Makes room for `n` more positions (throws ilm::Error past capacity). Existing K/V stay.
  void reserve_more(int64_t n);
  // View of one layer covering positions [0, length).
  KvView layer(int64_t layer, int64_t length);
  // Marks `n` more positions as filled (after every layer wrote them).
  void advance(int64_t n) { length_ += n; }
  // Forgets positions >= n (e.g. to re-run a prompt's tail).
  void truncate(int64_t n);

 private:
  int64_t n_layers_, stride_, capacity_, length_ = 0, allocated_ = 0;
  std::vector<std::vector<float>> k_, v_;  // per layer, allocated_ * stride_ floats
};

}  // namespace ilm
