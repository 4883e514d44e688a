// AVX-512 kernels (F, BW, VL + FMA). Compiled with those flags for this file only and called
// only when the CPU reports them. bf16 weights are widened to f32 in registers (a shift), so
// the math is f32 FMA on the exact weight values.
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cmath>
#include <cstddef>

#include "backend/cpu/kernel_policy.h"
#include "backend/cpu/kernels_impl.h"

namespace ilm::cpu {

namespace {

constexpr int kLanes = 16;

template <DType WT>
inline __m512 load_w(const void* w, int64_t i) {
  if constexpr (WT == DType::BF16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else if constexpr (WT == DType::F16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
    return _mm512_cvtph_ps(h);
  } else {
    return _mm512_loadu_ps(static_cast<const float*>(w) + i);
  }
}

// Scalar tail loads. Deliberately not the shared inline helpers of common/dtype.h: an inline
// function compiled here could carry this file's instruction set into other callers.
template <DType WT>
inline float load_w1(const void* w, int64_t i) {
  if constexpr (WT == DType::F32) {
    return static_cast<const float*>(w)[i];
  } else {
    const uint16_t h = static_cast<const uint16_t*>(w)[i];
    if constexpr (WT == DType::BF16) {
      return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(h) << 16)));
    } else {
      return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
    }
  }
}

// Columns are summed in slices of kSlice: each slice's vector sum is reduced to a scalar and
// the slices are added in order. matmul_typed either passes whole rows (few tokens) or cuts
// them at the same boundaries for cache blocking, so both give the same bits: a token's
// result never depends on how many others share the call.
constexpr int64_t kSlice = policy::kSliceColumns;

// TT tokens x RB rows: TT*RB accumulators stay in registers over columns [k0, k0 + kn) of
// rows of length K; the sums are stored into y, or added to it when `add`.
template <DType WT, int TT, int RB>
inline void tile(const float* x, int64_t ldx, const void* w, int64_t K, int64_t k0, int64_t kn, int64_t r, float* y,
                 int64_t ldy, bool add) {
  float sum[TT][RB];
  for (int64_t c0 = 0; c0 < kn; c0 += kSlice) {
    const int64_t cn = kn - c0 < kSlice ? kn - c0 : kSlice;
    const int64_t kb = k0 + c0;
    __m512 acc[TT][RB];
    ILM_UNROLL for (int t = 0; t < TT; ++t)
      ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm512_setzero_ps();
    const int64_t kv = cn / kLanes * kLanes;
    for (int64_t k = 0; k < kv; k += kLanes) {
      __m512 wv[RB];
      ILM_UNROLL for (int i = 0; i < RB; ++i) wv[i] = load_w<WT>(w, (r + i) * K + kb + k);
      ILM_UNROLL for (int t = 0; t < TT; ++t) {
        const __m512 xv = _mm512_loadu_ps(x + t * ldx + kb + k);
        ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm512_fmadd_ps(xv, wv[i], acc[t][i]);
      }
    }
    ILM_UNROLL for (int t = 0; t < TT; ++t)
      ILM_UNROLL for (int i = 0; i < RB; ++i) {
        float s = _mm512_reduce_add_ps(acc[t][i]);
        for (int64_t k = kv; k < cn; ++k) s += x[t * ldx + kb + k] * load_w1<WT>(w, (r + i) * K + kb + k);
        sum[t][i] = c0 == 0 ? s : sum[t][i] + s;
      }
  }
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int i = 0; i < RB; ++i) y[t * ldy + r + i] = add ? y[t * ldy + r + i] + sum[t][i] : sum[t][i];
}

template <DType WT, int RB>
inline void tokens(const float* x, int64_t ldx, int64_t T, const void* w, int64_t K, int64_t k0, int64_t kn,
                   int64_t r, float* y, int64_t ldy, bool add) {
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) tile<WT, 4, RB>(x + t * ldx, ldx, w, K, k0, kn, r, y + t * ldy, ldy, add);
  switch (T - t) {
    case 3: tile<WT, 3, RB>(x + t * ldx, ldx, w, K, k0, kn, r, y + t * ldy, ldy, add); break;
    case 2: tile<WT, 2, RB>(x + t * ldx, ldx, w, K, k0, kn, r, y + t * ldy, ldy, add); break;
    case 1: tile<WT, 1, RB>(x + t * ldx, ldx, w, K, k0, kn, r, y + t * ldy, ldy, add); break;
    default: break;
  }
}

template <DType WT>
void matmul_typed(const float* x, int64_t ldx, int64_t T, const void* w, int64_t K, int64_t r0,
                  int64_t r1, float* y, int64_t ldy) {
  // Blocking: a token block of activations (tb x kc floats, 256 KiB) stays in L2 while this
  // thread's weight rows stream through in kc-wide column slices; later slices add into y.
  // Few tokens (decode, small batches) fit in L2 whole: no slicing, so each weight row is one
  // sequential stream for the prefetcher. Either way the sums are the same (see kSlice).
  const int64_t kc_max = policy::f32_pass_columns(T, K);
  const int64_t kc = K < kc_max ? K : kc_max;
  int64_t tb = (256 * 1024) / (kc * 4) / 4 * 4;
  if (tb < 4) tb = 4;
  for (int64_t t0 = 0; t0 < T; t0 += tb) {
    const int64_t nt = T - t0 < tb ? T - t0 : tb;
    const float* xb = x + t0 * ldx;
    float* yb = y + t0 * ldy;
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const int64_t kn = K - k0 < kc ? K - k0 : kc;
      int64_t r = r0;
      for (; r + 4 <= r1; r += 4) tokens<WT, 4>(xb, ldx, nt, w, K, k0, kn, r, yb, ldy, k0 > 0);
      for (; r < r1; ++r) tokens<WT, 1>(xb, ldx, nt, w, K, k0, kn, r, yb, ldy, k0 > 0);
    }
  }
}

void matmul_avx512(const float* x, int64_t ldx, int64_t T, const void* w, DType wt, int64_t K,
                   int64_t r0, int64_t r1, float* y, int64_t ldy) {
  switch (wt) {
    case DType::BF16: matmul_typed<DType::BF16>(x, ldx, T, w, K, r0, r1, y, ldy); break;
    case DType::F16: matmul_typed<DType::F16>(x, ldx, T, w, K, r0, r1, y, ldy); break;
    default: matmul_typed<DType::F32>(x, ldx, T, w, K, r0, r1, y, ldy); break;
  }
}

inline float f16_scalar(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

// 32 dequantized weights (two vectors) of row-block `row` at column k.
template <int BITS>
inline void load_q32(const uint8_t* data, const uint16_t* scales, int64_t K, int64_t group, int64_t row,
                     int64_t k, __m512& w0, __m512& w1) {
  const __m512 d = _mm512_set1_ps(f16_scalar(scales[row * (K / group) + k / group]));
  if constexpr (BITS == 8) {
    const auto* p = reinterpret_cast<const __m128i*>(data + row * K + k);
    w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p))), d);
    w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p + 1))), d);
  } else {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + (row * K + k) / 2)));
    const __m512i eight = _mm512_set1_epi32(8);
    w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x0f)), eight)), d);
    w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(b, 4), eight)), d);
  }
}

template <int BITS, int TT, int RB>
inline void tile_q(const float* x, int64_t ldx, const uint8_t* data, const uint16_t* scales, int64_t K,
                   int64_t group, int64_t r, float* y, int64_t ldy) {
  __m512 acc[TT][RB];
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __m512 w0[RB], w1[RB];
    ILM_UNROLL for (int i = 0; i < RB; ++i) load_q32<BITS>(data, scales, K, group, r + i, k, w0[i], w1[i]);
    ILM_UNROLL for (int t = 0; t < TT; ++t) {
      const __m512 x0 = _mm512_loadu_ps(x + t * ldx + k), x1 = _mm512_loadu_ps(x + t * ldx + k + 16);
      ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm512_fmadd_ps(x1, w1[i], _mm512_fmadd_ps(x0, w0[i], acc[t][i]));
    }
  }
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int i = 0; i < RB; ++i) y[t * ldy + r + i] = _mm512_reduce_add_ps(acc[t][i]);
}

template <int BITS, int RB>
inline void tokens_q(const float* x, int64_t ldx, int64_t T, const uint8_t* data, const uint16_t* scales,
                     int64_t K, int64_t group, int64_t r, float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) tile_q<BITS, 4, RB>(x + t * ldx, ldx, data, scales, K, group, r, y + t * ldy, ldy);
  switch (T - t) {
    case 3: tile_q<BITS, 3, RB>(x + t * ldx, ldx, data, scales, K, group, r, y + t * ldy, ldy); break;
    case 2: tile_q<BITS, 2, RB>(x + t * ldx, ldx, data, scales, K, group, r, y + t * ldy, ldy); break;
    case 1: tile_q<BITS, 1, RB>(x + t * ldx, ldx, data, scales, K, group, r, y + t * ldy, ldy); break;
    default: break;
  }
}

template <int BITS>
void matmul_quant_typed(const float* x, int64_t ldx, int64_t T, const uint8_t* data, const uint16_t* scales,
                        int64_t K, int64_t group, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  int64_t tb = (256 * 1024) / (K * 4) / 4 * 4;
  if (tb < 4) tb = 4;
  for (int64_t t0 = 0; t0 < T; t0 += tb) {
    const int64_t nt = T - t0 < tb ? T - t0 : tb;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) tokens_q<BITS, 4>(x + t0 * ldx, ldx, nt, data, scales, K, group, r, y + t0 * ldy, ldy);
    for (; r < r1; ++r) tokens_q<BITS, 1>(x + t0 * ldx, ldx, nt, data, scales, K, group, r, y + t0 * ldy, ldy);
  }
}

void matmul_quant_avx512(const float* x, int64_t ldx, int64_t T, const uint8_t* data, const uint16_t* scales,
                         int bits, int64_t K, int64_t group, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (bits == 8)
    matmul_quant_typed<8>(x, ldx, T, data, scales, K, group, r0, r1, y, ldy);
  else
    matmul_quant_typed<4>(x, ldx, T, data, scales, K, group, r0, r1, y, ldy);
}

float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float read_sum_avx512(const float* p, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; ++i) s += p[i];
  return s;
}

constexpr int kFmaChains = 12;  // enough independent chains to cover FMA latency x ports

float fma_loop_avx512(int64_t iters) {
  __m512 acc[kFmaChains];
  for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kFmaChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return _mm512_reduce_add_ps(s);
}

// MR rows x NV vectors of C in registers over all of K; the last vector masked to N.
template <int MR, int NV>
inline void gemm_tile(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb, float* C,
                      int64_t ldc, bool accumulate, __mmask16 last) {
  __m512 acc[MR][NV];
  ILM_UNROLL for (int r = 0; r < MR; ++r)
    ILM_UNROLL for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xffff, C + r * ldc + v * kLanes)
                             : _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[NV];
    ILM_UNROLL for (int v = 0; v < NV; ++v) b[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xffff, B + k * ldb + v * kLanes);
    ILM_UNROLL for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * sam + k * sak]);
      ILM_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  ILM_UNROLL for (int r = 0; r < MR; ++r)
    ILM_UNROLL for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(C + r * ldc + v * kLanes, v == NV - 1 ? last : 0xffff, acc[r][v]);
}

template <int NV>
inline void gemm_rows(int64_t M, int64_t K, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb,
                      float* C, int64_t ldc, bool accumulate, __mmask16 last) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) gemm_tile<4, NV>(K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc, accumulate, last);
  switch (M - m) {
    case 3: gemm_tile<3, NV>(K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc, accumulate, last); break;
    case 2: gemm_tile<2, NV>(K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc, accumulate, last); break;
    case 1: gemm_tile<1, NV>(K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc, accumulate, last); break;
    default: break;
  }
}

}  // namespace

// e^x for 16 lanes: x = n·ln2 + r, |r| <= ln2/2, e^r by the Cephes expf polynomial, times
// 2^n with vscalefps; 0 below -87.3, NaN for NaN.
inline __m512 exp16(__m512 x) {
  // max/min return their second operand when either is NaN: x goes second, so NaN stays NaN.
  const __m512 xc = _mm512_min_ps(_mm512_set1_ps(policy::kExpClampHigh), _mm512_max_ps(_mm512_set1_ps(policy::kExpZeroBelow), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(policy::kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(policy::kLn2Hi), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(policy::kLn2Lo), r);
  __m512 p = _mm512_set1_ps(policy::kExpPoly[0]);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(policy::kExpPoly[1]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(policy::kExpPoly[2]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(policy::kExpPoly[3]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(policy::kExpPoly[4]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(policy::kExpPoly[5]));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(policy::kExpZeroBelow), _CMP_LT_OQ);
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(y, n));
}

float exp_row_avx512(float* row, int64_t visible, int64_t n, float* m) {
  const auto upto = [](int64_t left) {
    return left >= kLanes ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
  };
  // max(v, mx) returns mx when v is NaN, as std::max(mx, v) does.
  __m512 mx = _mm512_set1_ps(*m);
  for (int64_t j = 0; j < visible; j += kLanes)
    mx = _mm512_mask_max_ps(mx, upto(visible - j), _mm512_maskz_loadu_ps(upto(visible - j), row + j), mx);
  const float mr = _mm512_reduce_max_ps(mx);
  if (mr == -INFINITY) {
    for (int64_t j = 0; j < n; j += kLanes) _mm512_mask_storeu_ps(row + j, upto(n - j), _mm512_setzero_ps());
    return 0.0f;
  }
  *m = mr;
  const __m512 mv = _mm512_set1_ps(mr);
  __m512 part = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 vis = j < visible ? upto(visible - j) : static_cast<__mmask16>(0);
    const __m512 e = _mm512_maskz_mov_ps(vis, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(vis, row + j), mv)));
    _mm512_mask_storeu_ps(row + j, upto(n - j), e);
    part = _mm512_add_ps(part, e);
  }
  const __m256 p8 = _mm256_add_ps(_mm512_castps512_ps256(part),
                                  _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(part), 1)));
  const __m128 p4 = _mm_add_ps(_mm256_castps256_ps128(p8), _mm256_extractf128_ps(p8, 1));
  const __m128 p2 = _mm_add_ps(p4, _mm_movehl_ps(p4, p4));
  return _mm_cvtss_f32(_mm_add_ss(p2, _mm_movehdup_ps(p2)));
}

void exp_avx512(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) _mm512_storeu_ps(x + i, exp16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

// r[c] = column c of the 16 x 16 block whose rows were r[0..15]: pairs of rows interleaved,
// then 4 x 4 blocks within 128-bit lanes, then the lanes.
inline void transpose16_regs(__m512 (&r)[16]) {
  __m512 t[16], u[16];
  ILM_UNROLL for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  ILM_UNROLL for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  // u[4q + c] holds columns c, c + 4, c + 8, c + 12 (one per 128-bit lane) of rows 4q..4q+3.
  ILM_UNROLL for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
    r[c] = _mm512_shuffle_f32x4(v0, v1, _MM_SHUFFLE(2, 0, 2, 0));
    r[c + 4] = _mm512_shuffle_f32x4(w0, w1, _MM_SHUFFLE(2, 0, 2, 0));
    r[c + 8] = _mm512_shuffle_f32x4(v0, v1, _MM_SHUFFLE(3, 1, 3, 1));
    r[c + 12] = _mm512_shuffle_f32x4(w0, w1, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// Transposes a 16 x 16 block (rows past `rows` read as zeros, columns past `cols` ignored).
inline void transpose16(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  const __mmask16 cm = cols >= kLanes ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << cols) - 1);
  const __mmask16 rm = rows >= kLanes ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rows) - 1);
  __m512 r[16];
  ILM_UNROLL for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_maskz_loadu_ps(cm, src + i * lds) : _mm512_setzero_ps();
  transpose16_regs(r);
  ILM_UNROLL for (int c = 0; c < 16; ++c)
    if (c < cols) _mm512_mask_storeu_ps(dst + c * ldd, rm, r[c]);
}

namespace {

// 16 KV values at p as f32, exactly as widen_avx512 gives them.
template <DType T>
inline __m512 load_kv16(const void* p, float scale) {
  if constexpr (T == DType::I8) {
    const __m128i b = _mm_loadu_si128(static_cast<const __m128i*>(p));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), _mm512_set1_ps(scale));
  } else {
    return load_w<T>(p, 0);
  }
}

template <DType T>
inline const std::byte* kv_at(const KvRows& rows, int64_t j, int64_t d) {
  constexpr int64_t bytes = T == DType::F32 ? 4 : T == DType::I8 ? 1 : 2;
  return static_cast<const std::byte*>(rows.at[j]) + d * bytes;
}

// Prefetches (into L2) the ahead rows [j0, j1) of `rows`.
inline void prefetch_ahead(const KvRows& rows, int64_t j0, int64_t j1) {
  if (j1 > rows.n_ahead) j1 = rows.n_ahead;
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t c = 0; c < rows.ahead_bytes; c += 64) _mm_prefetch(static_cast<const char*>(rows.ahead[j]) + c, _MM_HINT_T1);
}

template <DType T>
void widen_transpose_t(const KvRows& rows, int64_t n, int64_t hd, float* kt, int64_t ldk) {
  for (int64_t j0 = 0; j0 < n; j0 += kLanes) {
    const int64_t nr = n - j0 < kLanes ? n - j0 : kLanes;
    const __mmask16 rm = nr == kLanes ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << nr) - 1);
    prefetch_ahead(rows, j0, n - j0 <= kLanes ? rows.n_ahead : j0 + kLanes);
    for (int64_t d0 = 0; d0 < hd; d0 += kLanes) {
      __m512 r[16];
      ILM_UNROLL for (int i = 0; i < 16; ++i)
        r[i] = i < nr ? load_kv16<T>(kv_at<T>(rows, j0 + i, d0), T == DType::I8 ? rows.scales[j0 + i] : 1.0f)
                      : _mm512_setzero_ps();
      transpose16_regs(r);
      ILM_UNROLL for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(kt + (d0 + c) * ldk + j0, rm, r[c]);
    }
  }
}

// MR rows x NV vectors of C (columns d0...) in registers over all n rows.
template <DType T, int MR, int NV>
inline void gemm_kv_tile(int64_t n, const float* A, int64_t sam, int64_t sak, const KvRows& rows, int64_t d0,
                         float* C, int64_t ldc, bool prefetch) {
  __m512 acc[MR][NV];
  ILM_UNROLL for (int r = 0; r < MR; ++r)
    ILM_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_loadu_ps(C + r * ldc + d0 + v * kLanes);
  for (int64_t j = 0; j < n; ++j) {
    if (prefetch && (j & 15) == 0) prefetch_ahead(rows, j, n - j <= kLanes ? rows.n_ahead : j + kLanes);
    const float scale = T == DType::I8 ? rows.scales[j] : 1.0f;
    __m512 b[NV];
    ILM_UNROLL for (int v = 0; v < NV; ++v) b[v] = load_kv16<T>(kv_at<T>(rows, j, d0 + v * kLanes), scale);
    ILM_UNROLL for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * sam + j * sak]);
      ILM_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  ILM_UNROLL for (int r = 0; r < MR; ++r)
    ILM_UNROLL for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + r * ldc + d0 + v * kLanes, acc[r][v]);
}

template <DType T, int NV>
inline void gemm_kv_cols(int64_t M, int64_t n, const float* A, int64_t sam, int64_t sak, const KvRows& rows,
                         int64_t d0, float* C, int64_t ldc) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) gemm_kv_tile<T, 4, NV>(n, A + m * sam, sam, sak, rows, d0, C + m * ldc, ldc, d0 == 0 && m == 0);
  switch (M - m) {
    case 3: gemm_kv_tile<T, 3, NV>(n, A + m * sam, sam, sak, rows, d0, C + m * ldc, ldc, d0 == 0 && m == 0); break;
    case 2: gemm_kv_tile<T, 2, NV>(n, A + m * sam, sam, sak, rows, d0, C + m * ldc, ldc, d0 == 0 && m == 0); break;
    case 1: gemm_kv_tile<T, 1, NV>(n, A + m * sam, sam, sak, rows, d0, C + m * ldc, ldc, d0 == 0 && m == 0); break;
    default: break;
  }
}

template <DType T>
void gemm_kv_rows_t(int64_t M, int64_t hd, int64_t n, const float* A, int64_t sam, int64_t sak, const KvRows& rows,
                    float* C, int64_t ldc) {
  int64_t d0 = 0;
  for (; d0 + 4 * kLanes <= hd; d0 += 4 * kLanes) gemm_kv_cols<T, 4>(M, n, A, sam, sak, rows, d0, C, ldc);
  for (; d0 < hd; d0 += kLanes) gemm_kv_cols<T, 1>(M, n, A, sam, sak, rows, d0, C, ldc);
}

}  // namespace

void gemm_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t n0 = 0; n0 < N; n0 += 4 * kLanes) {
    const int64_t w = N - n0 < 4 * kLanes ? N - n0 : 4 * kLanes;
    const int64_t nv = (w + kLanes - 1) / kLanes, rem = w - (nv - 1) * kLanes;
    const __mmask16 last = rem == kLanes ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rem) - 1);
    switch (nv) {
      case 4: gemm_rows<4>(M, K, A, sam, sak, B + n0, ldb, C + n0, ldc, accumulate, last); break;
      case 3: gemm_rows<3>(M, K, A, sam, sak, B + n0, ldb, C + n0, ldc, accumulate, last); break;
      case 2: gemm_rows<2>(M, K, A, sam, sak, B + n0, ldb, C + n0, ldc, accumulate, last); break;
      default: gemm_rows<1>(M, K, A, sam, sak, B + n0, ldb, C + n0, ldc, accumulate, last); break;
    }
  }
}

void transpose_avx512(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  for (int64_t r0 = 0; r0 < rows; r0 += kLanes)
    for (int64_t c0 = 0; c0 < cols; c0 += kLanes)
      transpose16(src + r0 * lds + c0, lds, rows - r0, cols - c0, dst + c0 * ldd + r0, ldd);
}

void widen_avx512(const void* src, DType t, float scale, int64_t n, float* dst) {
  int64_t i = 0;
  switch (t) {
    case DType::BF16:
      for (; i + kLanes <= n; i += kLanes) _mm512_storeu_ps(dst + i, load_w<DType::BF16>(src, i));
      for (; i < n; ++i) dst[i] = load_w1<DType::BF16>(src, i);
      break;
    case DType::F16:
      for (; i + kLanes <= n; i += kLanes) _mm512_storeu_ps(dst + i, load_w<DType::F16>(src, i));
      for (; i < n; ++i) dst[i] = load_w1<DType::F16>(src, i);
      break;
    case DType::I8: {
      const auto* q = static_cast<const int8_t*>(src);
      const __m512 s = _mm512_set1_ps(scale);
      for (; i + kLanes <= n; i += kLanes) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i));
        _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), s));
      }
      for (; i < n; ++i) dst[i] = static_cast<float>(q[i]) * scale;
      break;
    }
    default:
      for (; i + kLanes <= n; i += kLanes) _mm512_storeu_ps(dst + i, load_w<DType::F32>(src, i));
      for (; i < n; ++i) dst[i] = static_cast<const float*>(src)[i];
      break;
  }
}

void widen_transpose_avx512(const KvRows& rows, int64_t n, int64_t hd, float* kt, int64_t ldk) {
  switch (rows.type) {
    case DType::BF16: return widen_transpose_t<DType::BF16>(rows, n, hd, kt, ldk);
    case DType::F16: return widen_transpose_t<DType::F16>(rows, n, hd, kt, ldk);
    case DType::I8: return widen_transpose_t<DType::I8>(rows, n, hd, kt, ldk);
    default: return widen_transpose_t<DType::F32>(rows, n, hd, kt, ldk);
  }
}

void gemm_kv_rows_avx512(int64_t M, int64_t hd, int64_t n, const float* A, int64_t sam, int64_t sak,
                         const KvRows& rows, float* C, int64_t ldc) {
  switch (rows.type) {
    case DType::BF16: return gemm_kv_rows_t<DType::BF16>(M, hd, n, A, sam, sak, rows, C, ldc);
    case DType::F16: return gemm_kv_rows_t<DType::F16>(M, hd, n, A, sam, sak, rows, C, ldc);
    case DType::I8: return gemm_kv_rows_t<DType::I8>(M, hd, n, A, sam, sak, rows, C, ldc);
    default: return gemm_kv_rows_t<DType::F32>(M, hd, n, A, sam, sak, rows, C, ldc);
  }
}

const Kernels kAvx512Kernels = {"avx512", Precision::Exact, matmul_avx512, matmul_quant_avx512, dot_avx512,
                                read_sum_avx512, fma_loop_avx512, 2 * kLanes * kFmaChains, nullptr, 0, gemm_avx512, exp_avx512, transpose_avx512, widen_avx512, widen_transpose_avx512, gemm_kv_rows_avx512, exp_row_avx512};

}  // namespace ilm::cpu
#endif
