// AVX512_BF16 kernels: for bf16 weights and several tokens (prefill, batched decode), the
// activations are rounded to bf16 once per call and each vdpbf16ps multiplies 32 weight x
// activation pairs exactly and accumulates them in f32: twice the f32-FMA work per
// instruction, on the weights as stored (consecutive bf16 pairs are what the instruction
// takes, so no repacking). A single token (decode) is bandwidth-bound and keeps the exact
// f32 path. Everything else is the AVX-512 table.
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "backend/cpu/kernels_impl.h"

namespace ilm::cpu {

namespace {

inline __m512bh load_bh(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }

// Accumulates Σ_{k < kn} x[t][k] · w[r + i][k] into y (added to y when `add`, else stored).
// w rows are `ldw` apart; x rows `ldxb` apart.
template <int TT, int RB>
inline void tile(const uint16_t* xb, int64_t ldxb, const uint16_t* w, int64_t ldw, int64_t K, int64_t r, float* y,
                 int64_t ldy, bool add) {
  __m512 acc[TT][RB];
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __m512bh wv[RB];
    ILM_UNROLL for (int i = 0; i < RB; ++i) wv[i] = load_bh(w + (r + i) * ldw + k);
    ILM_UNROLL for (int t = 0; t < TT; ++t) {
      const __m512bh xv = load_bh(xb + t * ldxb + k);
      ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm512_dpbf16_ps(acc[t][i], wv[i], xv);
    }
  }
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int i = 0; i < RB; ++i) {
      const float v = _mm512_reduce_add_ps(acc[t][i]);
      y[t * ldy + r + i] = add ? y[t * ldy + r + i] + v : v;
    }
}

template <int RB>
inline void tokens(const uint16_t* xb, int64_t ldxb, int64_t T, const uint16_t* w, int64_t ldw, int64_t K, int64_t r,
                   float* y, int64_t ldy, bool add) {
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) tile<4, RB>(xb + t * ldxb, ldxb, w, ldw, K, r, y + t * ldy, ldy, add);
  switch (T - t) {
    case 3: tile<3, RB>(xb + t * ldxb, ldxb, w, ldw, K, r, y + t * ldy, ldy, add); break;
    case 2: tile<2, RB>(xb + t * ldxb, ldxb, w, ldw, K, r, y + t * ldy, ldy, add); break;
    case 1: tile<1, RB>(xb + t * ldxb, ldxb, w, ldw, K, r, y + t * ldy, ldy, add); break;
    default: break;
  }
}

// Round-to-nearest-even f32 -> bf16 of n values (n a multiple of 16).
void to_bf16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, (__m512i)v);
  }
}

void matmul_avx512bf16(const float* x, int64_t ldx, int64_t T, const void* w, DType wt, int64_t K, int64_t r0,
                       int64_t r1, float* y, int64_t ldy) {
  if (wt != DType::BF16 || T < 2 || K % 32 != 0) {
    kAvx512Kernels.matmul(x, ldx, T, w, wt, K, r0, r1, y, ldy);
    return;
  }
  // Blocking: a token block of bf16 activations (tb x kc, 256 KiB) stays in L2 while this
  // thread's weight rows stream through in kc-wide column slices; partial sums of later
  // slices are added into y. Each weight byte is read from memory once per token block.
  constexpr int64_t kc_max = 2048;
  const int64_t kc = K < kc_max ? K : kc_max;
  int64_t tb = (256 * 1024) / (kc * 2) / 4 * 4;
  if (tb < 4) tb = 4;
  auto* const xbuf = reinterpret_cast<uint16_t*>(thread_scratch(ScratchSlot::Activations, tb * K * 2));

  const auto* wb = static_cast<const uint16_t*>(w);
  for (int64_t t0 = 0; t0 < T; t0 += tb) {
    const int64_t nt = T - t0 < tb ? T - t0 : tb;
    for (int64_t t = 0; t < nt; ++t) to_bf16(x + (t0 + t) * ldx, xbuf + t * K, K);
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const int64_t kn = K - k0 < kc ? K - k0 : kc;
      const bool add = k0 > 0;
      int64_t r = r0;
      for (; r + 4 <= r1; r += 4) tokens<4>(xbuf + k0, K, nt, wb + k0, K, kn, r, y + t0 * ldy, ldy, add);
      for (; r < r1; ++r) tokens<1>(xbuf + k0, K, nt, wb + k0, K, kn, r, y + t0 * ldy, ldy, add);
    }
  }
}

}  // namespace

// Quantized weights go to the VNNI kernels with activations in one int8 level (every
// AVX512_BF16 CPU also has VNNI).
const Kernels kAvx512Bf16Kernels = {"avx512bf16",
                                    matmul_avx512bf16,
                                    matmul_quant_avx512vnni_q8,
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
