#pragma once
// Cached context made up directly in the KV cache, for `bench --context N`: decode speed at a
// long context without prefilling N tokens first (a 32k-token prefill of a 7B model takes far
// longer than the decode it precedes). Decode reads the rows exactly as it reads computed
// ones, in the cache's element type, so the bytes and the work per step are those of a real
// context of that length; only the values (and so the logits) are made up.
#include <cstdint>

#include "model/kv_cache.h"

namespace ilm {

// Appends `n` positions to `cache`, every layer's K and V row filled with deterministic
// pseudo-random values in [-1, 1) (a function of `seed`, the layer, the position and K vs V)
// stored through kv_row_store (rounded / quantized as the cache's dtype says), then advances
// the cache by n. Throws as reserve_more does when the cache cannot hold them.
void fill_synthetic_context(KvCache& cache, int64_t n, uint64_t seed);

}  // namespace ilm
