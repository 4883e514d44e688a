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
// 24 accumulators + 6 weight vectors + 1 activation. Four tokens by six rows beat six by four
// (kernel_bench, docs/PERFORMANCE.md): per 24 dot products the tile loads 6 weight vectors that
// stay in L1 and only 4 activation vectors that come from L2, and 16-sequence decode is exactly
// four tiles.
constexpr int kTileT = 4, kTileR = 6;

inline __m512bh load_bh(const uint16_t* p, __mmask32 m) { return (__m512bh)_mm512_maskz_loadu_epi16(m, p); }

// Lane sums of the TT tokens of one packed tile x rows [0, RB) over columns [k0, k0 + kn). The
// tile's activations are packed step-major (xt[(s * TT + t) * 32 ...], s = column / 32), so the
// whole tile is one sequential stream the hardware prefetcher follows, not TT strided ones.
// `part` holds the lane sums between slices (TT x RB vectors); on the last slice the sums are
// reduced into y.
template <int TT, int RB>
inline void tile(const uint16_t* xt, const uint16_t* w, int64_t ldw, int64_t k0, int64_t kn, bool first, bool last,
                 float* part, float* y, int64_t ldy) {
  __m512 acc[TT][RB];
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int i = 0; i < RB; ++i)
      acc[t][i] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(part + (t * RB + i) * 16);
  const uint16_t* xp = xt + k0 * TT;
  auto step = [&](const __m512bh (&wv)[RB]) {
    ILM_UNROLL for (int t = 0; t < TT; ++t) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(xp + t * kStep);
      ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm512_dpbf16_ps(acc[t][i], wv[i], xv);
    }
    xp += TT * kStep;
  };
  const int64_t kv = kn / kStep * kStep;
  for (int64_t k = k0; k < k0 + kv; k += kStep) {
    __m512bh wv[RB];
    ILM_UNROLL for (int i = 0; i < RB; ++i) wv[i] = (__m512bh)_mm512_loadu_si512(w + i * ldw + k);
    step(wv);
  }
  if (kv < kn) {  // the row's tail: missing weight pairs load as zeros, the packed activations are zero there
    const __mmask32 m = static_cast<__mmask32>((1ull << (kn - kv)) - 1);
    __m512bh wv[RB];
    ILM_UNROLL for (int i = 0; i < RB; ++i) wv[i] = load_bh(w + i * ldw + k0 + kv, m);
    step(wv);
  }
  if (last) {
    ILM_UNROLL for (int t = 0; t < TT; ++t)
      ILM_UNROLL for (int i = 0; i < RB; ++i) y[t * ldy + i] = _mm512_reduce_add_ps(acc[t][i]);
  } else {
    ILM_UNROLL for (int t = 0; t < TT; ++t)
      ILM_UNROLL for (int i = 0; i < RB; ++i) _mm512_storeu_ps(part + (t * RB + i) * 16, acc[t][i]);
  }
}

// All nt tokens of a block (packed tile after tile, kp columns each) against RB rows over one
// column slice.
template <int RB>
inline void rows_slice(const uint16_t* xb, int64_t kp, int64_t nt, const uint16_t* w, int64_t ldw, int64_t k0,
                       int64_t kn, bool first, bool last, float* part, float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + kTileT <= nt; t += kTileT)
    tile<kTileT, RB>(xb + t * kp, w, ldw, k0, kn, first, last, part + t * RB * 16, y + t * ldy, ldy);
  switch (nt - t) {
    case 3: tile<3, RB>(xb + t * kp, w, ldw, k0, kn, first, last, part + t * RB * 16, y + t * ldy, ldy); break;
    case 2: tile<2, RB>(xb + t * kp, w, ldw, k0, kn, first, last, part + t * RB * 16, y + t * ldy, ldy); break;
    case 1: tile<1, RB>(xb + t * kp, w, ldw, k0, kn, first, last, part + t * RB * 16, y + t * ldy, ldy); break;
    default: break;
  }
}

// Rounds the tt activation rows of one tile to bf16 (nearest even) into the step-major packed
// layout `tile` reads; columns past K are zeros up to kp (a multiple of kStep).
void pack_tile(const float* x, int64_t ldx, int64_t tt, int64_t K, int64_t kp, uint16_t* out) {
  for (int64_t t = 0; t < tt; ++t) {
    const float* xr = x + t * ldx;
    for (int64_t i = 0; i < kp; i += kStep) {
      const int64_t r = K - i;  // values left in the row (the last vector may be partial or empty)
      const __mmask16 lo = static_cast<__mmask16>(r >= 16 ? 0xffff : r <= 0 ? 0 : (1u << r) - 1);
      const __mmask16 hi = static_cast<__mmask16>(r >= 32 ? 0xffff : r <= 16 ? 0 : (1u << (r - 16)) - 1);
      const __m512bh v =
          _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, xr + i + 16), _mm512_maskz_loadu_ps(lo, xr + i));
      _mm512_storeu_si512(out + (i / kStep * tt + t) * kStep, (__m512i)v);
    }
  }
}

// Rows [r, r + RB) against the token block, slice by slice: the rows' slice of weights stays in
// L1 while every token tile of the block passes over it.
template <int RB>
inline void row_group(const uint16_t* xb, int64_t kp, int64_t nt, const uint16_t* w, int64_t K, float* part,
                      float* y, int64_t ldy) {
  for (int64_t k0 = 0; k0 < K; k0 += kSliceK) {
    const int64_t kn = K - k0 < kSliceK ? K - k0 : kSliceK;
    rows_slice<RB>(xb, kp, nt, w, K, k0, kn, k0 == 0, k0 + kn >= K, part, y, ldy);
  }
}

void matmul_bf16_dot(const float* x, int64_t ldx, int64_t T, const uint16_t* w, int64_t K, int64_t r0, int64_t r1,
                     float* y, int64_t ldy) {
  const int64_t kp = (K + kStep - 1) / kStep * kStep;
  const int64_t tb = T < kTokBlock ? T : kTokBlock;
  auto* const xb = reinterpret_cast<uint16_t*>(thread_scratch(ScratchSlot::Activations, tb * kp * 2));
  auto* const part = reinterpret_cast<float*>(thread_scratch(ScratchSlot::Partials, tb * kTileR * 16 * 4));
  for (int64_t t0 = 0; t0 < T; t0 += tb) {
    const int64_t nt = T - t0 < tb ? T - t0 : tb;
    for (int64_t t = 0; t < nt; t += kTileT) {
      const int64_t tt = nt - t < kTileT ? nt - t : kTileT;
      pack_tile(x + (t0 + t) * ldx, ldx, tt, K, kp, xb + t * kp);
    }
    float* const yb = y + t0 * ldy;
    int64_t r = r0;
    for (; r + kTileR <= r1; r += kTileR) row_group<kTileR>(xb, kp, nt, w + r * K, K, part, yb + r, ldy);
    switch (r1 - r) {
      case 5: row_group<5>(xb, kp, nt, w + r * K, K, part, yb + r, ldy); break;
      case 4: row_group<4>(xb, kp, nt, w + r * K, K, part, yb + r, ldy); break;
      case 3: row_group<3>(xb, kp, nt, w + r * K, K, part, yb + r, ldy); break;
      case 2: row_group<2>(xb, kp, nt, w + r * K, K, part, yb + r, ldy); break;
      case 1: row_group<1>(xb, kp, nt, w + r * K, K, part, yb + r, ldy); break;
      default: break;
    }
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
                                    widen_avx512,
                                    widen_transpose_avx512,
                                    gemm_kv_rows_avx512,
                                    exp_row_avx512};

}  // namespace ilm::cpu
#endif
