#include "model/causal_lm.h"

#include <algorithm>
#include <cmath>

namespace ilm {

int64_t CausalLM::context_limit() const {
  const auto& c = config();
  if (c.rope_scaling.type == RopeScaling::Type::None) return c.max_position_embeddings;
  return static_cast<int64_t>(std::floor(static_cast<double>(c.max_position_embeddings) *
                                         c.rope_scaling.factor));
}

KvCache CausalLM::new_cache_as(int64_t capacity, DType dtype) const {
  if (dtype == DType::F32) return new_cache(capacity);
  constexpr int64_t kBlock = 16;  // as a private F32 cache
  const int64_t blocks = std::max<int64_t>(1, (capacity + kBlock - 1) / kBlock);
  return KvCache(new_kv_pool(kBlock, blocks, dtype), capacity);
}

uint64_t CausalLM::kv_bytes_per_token(DType dtype) const {
  const auto& c = config();
  return static_cast<uint64_t>(c.num_layers) * 2 *
         static_cast<uint64_t>(kv_row_bytes(c.num_kv_heads, c.head_dim, dtype));
}

}  // namespace ilm
