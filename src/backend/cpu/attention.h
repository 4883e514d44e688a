#pragma once
// The cpu backend's causal GQA attention over a paged KV cache (Backend::attention).
#include <cstdint>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "common/thread_pool.h"

namespace ilm::cpu {

// q: [T, n_heads, head_dim] (RoPE applied), query t at position past + t, seeing keys
// 0..past + t of kv; out: [T, n_heads, head_dim].
void attention(const Kernels& k, ThreadPool& pool, const float* q, int64_t T, int64_t n_heads, int64_t n_kv_heads,
               int64_t head_dim, const KvView& kv, int64_t past, float* out);

}  // namespace ilm::cpu
