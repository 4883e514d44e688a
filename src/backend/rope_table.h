#pragma once
// The RoPE angle table every backend must share: the angle of dimension d at position p is
// formed in f32 (float(p) / divisor * inv_freq[d]) exactly as the official code builds its
// cos/sin table, then cos and sin are rounded once to f32.
#include <cmath>
#include <cstdint>

#include "backend/backend.h"

namespace ilm {

inline void rope_cos_sin(int64_t position, const RopeSpec& spec, float* cos_out, float* sin_out) {
  const float pos = static_cast<float>(position) / spec.position_divisor;
  for (size_t d = 0; d < spec.inv_freq.size(); ++d) {
    const float angle = pos * spec.inv_freq[d];
    cos_out[d] = static_cast<float>(std::cos(static_cast<double>(angle)));
    sin_out[d] = static_cast<float>(std::sin(static_cast<double>(angle)));
  }
}

}  // namespace ilm
