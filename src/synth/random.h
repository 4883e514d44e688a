#pragma once
// Counter-based normal random numbers for synthetic weights. Element i of a tensor is a pure
// function of (seed, tensor name, i), so values do not depend on how the tensor is split
// into chunks, on the thread count, or on how the checkpoint is sharded.
//
// Scheme: key = mix(seed, FNV-1a(name)); elements 2j and 2j+1 come from one Box-Muller pair
// fed by splitmix64(key + (j + 1) * golden_gamma): the high 24 bits give u1 in (0, 1], the
// low 32 bits' top 24 give the angle. log/sin/cos are polynomial approximations in f32
// (relative error < 5e-7, far below bf16 resolution) written so the compiler vectorises
// them. |z| <= sqrt(-2 ln 2^-24) ~ 5.77 (tails beyond 5.77 sigma, p ~ 8e-9, are cut).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/dtype.h"

namespace ilm::synth {

// The per-tensor stream key.
uint64_t stream_key(uint64_t seed, std::string_view tensor_name);

// out[k] = mean + stddev * z(key, first + k) for k in [0, n), as f32.
void fill_normal_f32(uint64_t key, uint64_t first, size_t n, float mean, float stddev, float* out);

// The same values stored as `dtype` (F32, or BF16 rounded to nearest even) into `out`
// (n * dtype_size(dtype) bytes, no alignment needed).
void fill_normal(uint64_t key, uint64_t first, size_t n, float mean, float stddev, DType dtype,
                 std::byte* out);

}  // namespace ilm::synth
