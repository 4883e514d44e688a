#pragma once
// Rotary embedding settings for one forward pass, computed as the official InternLM2 code
// does: base θ, or under dynamic NTK the base recomputed from the total length L = cached +
// new tokens whenever L > max_position_embeddings; f32 inverse frequencies.
#include <cstdint>

#include "backend/backend.h"
#include "model/config.h"

namespace ilm {

// The RoPE base for a forward whose kv length (cached + new tokens) is `total_len`.
double rope_base(const ModelConfig& cfg, int64_t total_len);

// inv_freq[d] = 1 / base^(2d / head_dim), each step in f32 as torch computes it.
RopeSpec rope_spec(const ModelConfig& cfg, int64_t total_len);

}  // namespace ilm
