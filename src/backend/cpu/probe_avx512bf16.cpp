// Dot-product peak probes: vdpbf16ps (32 bf16 products into 16 f32 lanes per instruction) and
// vpdpbusd (64 u8 x s8 products into 16 i32 lanes). Compiled with AVX512_BF16 / VNNI for this
// file only; each is used only when the CPU has it.
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "backend/cpu/kernels_impl.h"

namespace ilm::cpu {

namespace {

constexpr int kChains = 12;

float bf16_dot_loop(int64_t iters) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // 1.0 in bf16
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3380);  // ~6e-8 in bf16
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return _mm512_reduce_add_ps(s);
}

float int8_dot_loop(int64_t iters) {
  __m512i acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_epi32(c);
  const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(1);
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
  // Sum in 64 bits: the lanes of all chains together can pass INT32_MAX.
  int64_t total = 0;
  alignas(64) int32_t lanes[16];
  for (int c = 0; c < kChains; ++c) {
    _mm512_store_si512(lanes, acc[c]);
    for (int32_t v : lanes) total += v;
  }
  return static_cast<float>(total);
}

}  // namespace

// Each vdpbf16ps: 32 multiplies + 32 adds. Each vpdpbusd: 64 multiplies + 64 adds.
const DotPeakProbe kBf16DotProbe = {bf16_dot_loop, 64 * kChains};
const DotPeakProbe kInt8DotProbe = {int8_dot_loop, 128 * kChains};

}  // namespace ilm::cpu
#endif
