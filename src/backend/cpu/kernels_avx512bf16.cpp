// AVX512_BF16 kernels: the fast path for bf16 weights (prefill, batched and single-token
// decode alike). Activations are rounded to bf16 (nearest even) once per call, and each
// vdpbf16ps multiplies 32 weight x activation pairs exactly and accumulates them in f32: twice
// the f32-FMA work per instruction, on the weights as stored (consecutive bf16 pairs are what
// the instruction takes, so no repacking, and the weights stay in the page cache's huge pages).
//
// Batch invariance: a (token, row) result is 16 lane sums over the whole row, lane j taking the
// pairs k = 32s + 2j, 2j + 1 in ascending s, then one fixed reduction tree. Cache blocking cuts
// K into slices, but a slice boundary stores the 16 lane sums as they are and the next slice
// reloads them (exact), so every result is the same bits whatever T, the tiling or the thread
// split: a token decoded alone equals the same token in any batch or prefill chunk.
// Everything else (f16/f32 weights) is the AVX-512 table's exact f32 path.
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "backend/cpu/kernels_impl.h"

namespace ilm::cpu {

namespace {

constexpr int64_t kStep = 32;      // bf16 values per vector
constexpr int64_t kSliceK = 2048;  // columns per cache slice: a row group's slice of weights stays in L1
constexpr int64_t kTokBlock = 96;  // tokens per block: 96 x 2048 bf16 = 384 KiB of activations (L2)
constexpr int kTileT = 6, kTileR = 4;  // 24 accumulators + 4 weight vectors + 1 activation

inline __m512bh load_bh(const uint16_t* p, __mmask32 m) { return (__m512bh)_mm512_maskz_loadu_epi16(m, p); }

// Lane sums of tokens [0, TT) x rows [0, RB) over columns [k0, k0 + kn) of the bf16 activation
// rows xb (ldxb apart) and weight rows w (ldw apart). `part` holds the lane sums between
// slices (TT x RB vectors); on the last slice the sums are reduced into y.
template <int TT, int RB>
inline void tile(const uint16_t* xb, int64_t ldxb, const uint16_t* w, int64_t ldw, int64_t k0, int64_t kn,
                 bool first, bool last, float* part, float* y, int64_t ldy) {
  __m512 acc[TT][RB];
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int i = 0; i < RB; ++i)
      acc[t][i] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(part + (t * RB + i) * 16);
  const int64_t kv = kn / kStep * kStep;
  for (int64_t k = k0; k < k0 + kv; k += kStep) {
    __m512bh wv[RB];
    ILM_UNROLL for (int i = 0; i < RB; ++i) wv[i] = (__m512bh)_mm512_loadu_si512(w + i * ldw + k);
    ILM_UNROLL for (int t = 0; t < TT; ++t) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + t * ldxb + k);
      ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm512_dpbf16_ps(acc[t][i], wv[i], xv);
    }
  }
  if (kv < kn) {  // the row's tail: missing pairs load as zeros (0 x 0 adds +0)
    const __mmask32 m = static_cast<__mmask32>((1ull << (kn - kv)) - 1);
    const int64_t k = k0 + kv;
    __m512bh wv[RB];
    ILM_UNROLL for (int i = 0; i < RB; ++i) wv[i] = load_bh(w + i * ldw + k, m);
    ILM_UNROLL for (int t = 0; t < TT; ++t) {
      const __m512bh xv = load_bh(xb + t * ldxb + k, m);
      ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm512_dpbf16_ps(acc[t][i], wv[i], xv);
    }
  }
  if (last) {
    ILM_UNROLL for (int t = 0; t < TT; ++t)
      ILM_UNROLL for (int i = 0; i < RB; ++i) y[t * ldy + i] = _mm512_reduce_add_ps(acc[t][i]);
  } else {
    ILM_UNROLL for (int t = 0; t < TT; ++t)
      ILM_UNROLL for (int i = 0; i < RB; ++i) _mm512_storeu_ps(part + (t * RB + i) * 16, acc[t][i]);
  }
}

// All nt tokens of a block against RB rows over one column slice.
template <int RB>
inline void rows_slice(const uint16_t* xb, int64_t ldxb, int64_t nt, const uint16_t* w, int64_t ldw, int64_t k0,
                       int64_t kn, bool first, bool last, float* part, float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + kTileT <= nt; t += kTileT)
    tile<kTileT, RB>(xb + t * ldxb, ldxb, w, ldw, k0, kn, first, last, part + t * RB * 16, y + t * ldy, ldy);
#define ILM_TAIL(n) \
  case n: tile<n, RB>(xb + t * ldxb, ldxb, w, ldw, k0, kn, first, last, part + t * RB * 16, y + t * ldy, ldy); break;
  switch (nt - t) {
    ILM_TAIL(5)
    ILM_TAIL(4)
    ILM_TAIL(3)
    ILM_TAIL(2)
    ILM_TAIL(1)
    default: break;
  }
#undef ILM_TAIL
}

// Round-to-nearest-even f32 -> bf16 of n values; the row is padded with zeros to a multiple of
// kStep (so whole-vector loads past K read zeros, never the next row).
void to_bf16(const float* x, uint16_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, (__m512i)v);
  }
  if (i < n) {
    const int64_t r = n - i;
    const __mmask16 lo = static_cast<__mmask16>(r >= 16 ? 0xffff : (1u << r) - 1);
    const __mmask16 hi = static_cast<__mmask16>(r <= 16 ? 0 : (1u << (r - 16)) - 1);
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + i + 16), _mm512_maskz_loadu_ps(lo, x + i));
    _mm512_storeu_si512(out + i, (__m512i)v);
  }
}

// Rows [r, r + RB) against the token block, slice by slice: the rows' slice of weights stays in
// L1 while every token tile of the block passes over it.
template <int RB>
inline void row_group(const uint16_t* xb, int64_t ldxb, int64_t nt, const uint16_t* w, int64_t K, float* part,
                      float* y, int64_t ldy) {
  for (int64_t k0 = 0; k0 < K; k0 += kSliceK) {
    const int64_t kn = K - k0 < kSliceK ? K - k0 : kSliceK;
    rows_slice<RB>(xb, ldxb, nt, w, K, k0, kn, k0 == 0, k0 + kn >= K, part, y, ldy);
  }
}

void matmul_bf16_dot(const float* x, int64_t ldx, int64_t T, const uint16_t* w, int64_t K, int64_t r0, int64_t r1,
                     float* y, int64_t ldy) {
  // Padded activation row, plus one vector so that the rows of a tile do not all fall in the same
  // L1 sets (rows 2^n bytes apart alias; measured in kernel_bench).
  const int64_t kp = (K + kStep - 1) / kStep * kStep + kStep;
  const int64_t tb = T < kTokBlock ? T : kTokBlock;
  auto* const xb = reinterpret_cast<uint16_t*>(thread_scratch(ScratchSlot::Activations, tb * kp * 2));
  auto* const part = reinterpret_cast<float*>(thread_scratch(ScratchSlot::Partials, tb * kTileR * 16 * 4));
  for (int64_t t0 = 0; t0 < T; t0 += tb) {
    const int64_t nt = T - t0 < tb ? T - t0 : tb;
    for (int64_t t = 0; t < nt; ++t) to_bf16(x + (t0 + t) * ldx, xb + t * kp, K);
    float* const yb = y + t0 * ldy;
    int64_t r = r0;
    for (; r + kTileR <= r1; r += kTileR) row_group<kTileR>(xb, kp, nt, w + r * K, K, part, yb + r, ldy);
    for (; r < r1; ++r) row_group<1>(xb, kp, nt, w + r * K, K, part, yb + r, ldy);
  }
}

void matmul_avx512bf16(const float* x, int64_t ldx, int64_t T, const void* w, DType wt, int64_t K, int64_t r0,
                       int64_t r1, float* y, int64_t ldy) {
  if (wt == DType::BF16)
    matmul_bf16_dot(x, ldx, T, static_cast<const uint16_t*>(w), K, r0, r1, y, ldy);
  else
    kAvx512Kernels.matmul(x, ldx, T, w, wt, K, r0, r1, y, ldy);
}

}  // namespace

// Quantized weights go to the VNNI kernels with activations in two int8 levels (every
// AVX512_BF16 CPU also has VNNI): one level (2x the speed) measured 1.8e-2 relative logit error
// on the small preset, three times the precision rule's bound.
const Kernels kAvx512Bf16Kernels = {"avx512bf16", Precision::Fast,
                                    matmul_avx512bf16,
                                    matmul_quant_avx512vnni,
                                    kAvx512Kernels.dot,
                                    kAvx512Kernels.read_sum,
                                    kAvx512Kernels.fma_loop,
                                    kAvx512Kernels.fma_loop_flops_per_iter,
                                    pack_quant_avx512vnni,
                                    kAvx512VnniQuantRows,
                                    gemm_avx512,
                                    exp_avx512,
                                    transpose_avx512,
                                    widen_avx512};

}  // namespace ilm::cpu
#endif
