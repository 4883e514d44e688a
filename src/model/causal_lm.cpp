#include "model/causal_lm.h"

#include <cmath>

namespace ilm {

int64_t CausalLM::context_limit() const {
  const auto& c = config();
  if (c.rope_scaling.type == RopeScaling::Type::None) return c.max_position_embeddings;
  return static_cast<int64_t>(std::floor(static_cast<double>(c.max_position_embeddings) *
                                         c.rope_scaling.factor));
}

uint64_t CausalLM::kv_bytes_per_token(DType dtype) const {
  const auto& c = config();
  return static_cast<uint64_t>(c.num_layers) * 2 *
         static_cast<uint64_t>(kv_row_bytes(c.num_kv_heads, c.head_dim, dtype));
}

}  // namespace ilm
