#include "model/rope.h"

#include <cmath>

namespace ilm {

double rope_base(const ModelConfig& cfg, int64_t total_len) {
  const auto& rs = cfg.rope_scaling;
  const auto M = cfg.max_position_embeddings;
  if (rs.type != RopeScaling::Type::Dynamic || total_len <= M) return cfg.rope_theta;
  const double hd = static_cast<double>(cfg.head_dim);
  const double f = rs.factor;
  // Python-float arithmetic in the official code: theta * (f*L/M - (f-1)) ** (hd/(hd-2)).
  return cfg.rope_theta *
         std::pow(f * static_cast<double>(total_len) / static_cast<double>(M) - (f - 1.0),
                  hd / (hd - 2.0));
}

RopeSpec rope_spec(const ModelConfig& cfg, int64_t total_len) {
  RopeSpec spec;
  const float base = static_cast<float>(rope_base(cfg, total_len));
  const float hd = static_cast<float>(cfg.head_dim);
  spec.inv_freq.resize(static_cast<size_t>(cfg.head_dim / 2));
  for (int64_t d = 0; d < cfg.head_dim / 2; ++d) {
    const float exponent = static_cast<float>(2 * d) / hd;
    spec.inv_freq[static_cast<size_t>(d)] = 1.0f / std::pow(base, exponent);
  }
  if (cfg.rope_scaling.type == RopeScaling::Type::Linear)
    spec.position_divisor = static_cast<float>(cfg.rope_scaling.factor);
  return spec;
}

}  // namespace ilm
