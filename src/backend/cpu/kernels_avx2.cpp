// AVX2 kernels (AVX2 + FMA + F16C). Compiled with those flags for this file only and called
// only when the CPU reports them. bf16 weights are widened to f32 in registers (a shift), so
// the math is f32 FMA on the exact weight values.
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "backend/cpu/kernel_policy.h"
#include "backend/cpu/kernels_impl.h"

namespace ilm::cpu {

namespace {

constexpr int kLanes = 8;

inline float reduce_add(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <DType WT>
inline __m256 load_w(const void* w, int64_t i) {
  if constexpr (WT == DType::BF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else if constexpr (WT == DType::F16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_cvtph_ps(h);
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(w) + i);
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

// TT tokens x RB rows over the pass [k0, k0 + kn) (whole summation slices of the shared
// policy, but the last): TT*RB accumulators stay in registers; each slice's sum is reduced to a
// scalar and added to y in slice order (the first slice stores), so a result does not depend
// on T or on how the passes are cut.
template <DType WT, int TT, int RB>
inline void tile(const float* x, int64_t ldx, const void* w, int64_t K, int64_t k0, int64_t kn, int64_t r, float* y,
                 int64_t ldy) {
  for (int64_t s0 = k0; s0 < k0 + kn; s0 += policy::kSliceColumns) {
    const int64_t sn = k0 + kn - s0 < policy::kSliceColumns ? k0 + kn - s0 : policy::kSliceColumns;
    __m256 acc[TT][RB];
    ILM_UNROLL for (int t = 0; t < TT; ++t)
      ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm256_setzero_ps();
    const int64_t kend = s0 + sn / kLanes * kLanes;
    for (int64_t k = s0; k < kend; k += kLanes) {
      __m256 wv[RB];
      ILM_UNROLL for (int i = 0; i < RB; ++i) wv[i] = load_w<WT>(w, (r + i) * K + k);
      ILM_UNROLL for (int t = 0; t < TT; ++t) {
        const __m256 xv = _mm256_loadu_ps(x + t * ldx + k);
        ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm256_fmadd_ps(xv, wv[i], acc[t][i]);
      }
    }
    ILM_UNROLL for (int t = 0; t < TT; ++t)
      ILM_UNROLL for (int i = 0; i < RB; ++i) {
        float sum = reduce_add(acc[t][i]);
        for (int64_t k = kend; k < s0 + sn; ++k) sum += x[t * ldx + k] * load_w1<WT>(w, (r + i) * K + k);
        float& out = y[t * ldy + r + i];
        out = s0 == 0 ? sum : out + sum;
      }
  }
}

template <DType WT, int RB>
inline void tokens(const float* x, int64_t ldx, int64_t T, const void* w, int64_t K, int64_t k0, int64_t kn, int64_t r,
                   float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + 2 <= T; t += 2) tile<WT, 2, RB>(x + t * ldx, ldx, w, K, k0, kn, r, y + t * ldy, ldy);
  switch (T - t) {
    case 1: tile<WT, 1, RB>(x + t * ldx, ldx, w, K, k0, kn, r, y + t * ldy, ldy); break;
    default: break;
  }
}

// Rows [r, r + RB) for a token block, in passes of policy::f32_pass_columns: whole rows (one
// sequential stream per row) while the activations are small, else slice by slice so that the
// rows' slice of weights stays in L1 while the block's token tiles pass over it.
template <DType WT, int RB>
inline void row_group(const float* x, int64_t ldx, int64_t T, const void* w, int64_t K, int64_t r, float* y,
                      int64_t ldy) {
  const int64_t pc = policy::f32_pass_columns(T, K);
  for (int64_t k0 = 0; k0 < K; k0 += pc) tokens<WT, RB>(x, ldx, T, w, K, k0, K - k0 < pc ? K - k0 : pc, r, y, ldy);
}

template <DType WT>
void matmul_typed(const float* x, int64_t ldx, int64_t T, const void* w, int64_t K, int64_t r0,
                  int64_t r1, float* y, int64_t ldy) {
  // Token blocks sized so their activations stay in L2 (policy::kActivationBlockBytes) while
  // this thread's weight rows stream through once per block.
  int64_t tb = policy::kActivationBlockBytes / (K * 4) / 4 * 4;
  if (tb < 4) tb = 4;
  for (int64_t t0 = 0; t0 < T; t0 += tb) {
    const int64_t nt = T - t0 < tb ? T - t0 : tb;
    const float* xb = x + t0 * ldx;
    float* yb = y + t0 * ldy;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) row_group<WT, 4>(xb, ldx, nt, w, K, r, yb, ldy);
    for (; r < r1; ++r) row_group<WT, 1>(xb, ldx, nt, w, K, r, yb, ldy);
  }
}

void matmul_avx2(const float* x, int64_t ldx, int64_t T, const void* w, DType wt, int64_t K,
                   int64_t r0, int64_t r1, float* y, int64_t ldy) {
  switch (wt) {
    case DType::BF16: matmul_typed<DType::BF16>(x, ldx, T, w, K, r0, r1, y, ldy); break;
    case DType::F16: matmul_typed<DType::F16>(x, ldx, T, w, K, r0, r1, y, ldy); break;
    default: matmul_typed<DType::F32>(x, ldx, T, w, K, r0, r1, y, ldy); break;
  }
}

inline float f16_scalar(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

template <int BITS>
inline void load_q32(const uint8_t* data, const uint16_t* scales, int64_t K, int64_t group, int64_t row,
                     int64_t k, __m256 w[4]) {
  const __m256 d = _mm256_set1_ps(f16_scalar(scales[row * (K / group) + k / group]));
  if constexpr (BITS == 8) {
    const uint8_t* p = data + row * K + k;
    for (int j = 0; j < 4; ++j)
      w[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * j)))), d);
  } else {
    const uint8_t* p = data + (row * K + k) / 2;
    const __m256i eight = _mm256_set1_epi32(8), mask = _mm256_set1_epi32(0x0f);
    for (int j = 0; j < 2; ++j) {  // bytes 8j..8j+7 hold weights 8j.. (low) and 16+8j.. (high)
      const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * j)));
      w[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(b, mask), eight)), d);
      w[j + 2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b, 4), eight)), d);
    }
  }
}

template <int BITS, int TT, int RB>
inline void tile_q(const float* x, int64_t ldx, const uint8_t* data, const uint16_t* scales, int64_t K,
                   int64_t group, int64_t r, float* y, int64_t ldy) {
  __m256 acc[TT][RB];
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __m256 w[RB][4];
    ILM_UNROLL for (int i = 0; i < RB; ++i) load_q32<BITS>(data, scales, K, group, r + i, k, w[i]);
    ILM_UNROLL for (int t = 0; t < TT; ++t)
      for (int j = 0; j < 4; ++j) {
        const __m256 xv = _mm256_loadu_ps(x + t * ldx + k + 8 * j);
        ILM_UNROLL for (int i = 0; i < RB; ++i) acc[t][i] = _mm256_fmadd_ps(xv, w[i][j], acc[t][i]);
      }
  }
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int i = 0; i < RB; ++i) y[t * ldy + r + i] = reduce_add(acc[t][i]);
}

template <int BITS>
void matmul_quant_typed(const float* x, int64_t ldx, int64_t T, const uint8_t* data, const uint16_t* scales,
                        int64_t K, int64_t group, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) {
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) tile_q<BITS, 2, 2>(x + t * ldx, ldx, data, scales, K, group, r, y + t * ldy, ldy);
    if (t < T) tile_q<BITS, 1, 2>(x + t * ldx, ldx, data, scales, K, group, r, y + t * ldy, ldy);
  }
  for (; r < r1; ++r)
    for (int64_t t = 0; t < T; ++t) tile_q<BITS, 1, 1>(x + t * ldx, ldx, data, scales, K, group, r, y + t * ldy, ldy);
}

void matmul_quant_avx2(const float* x, int64_t ldx, int64_t T, const uint8_t* data, const uint16_t* scales,
                       int bits, int64_t K, int64_t group, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (bits == 8)
    matmul_quant_typed<8>(x, ldx, T, data, scales, K, group, r0, r1, y, ldy);
  else
    matmul_quant_typed<4>(x, ldx, T, data, scales, K, group, r0, r1, y, ldy);
}

float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = reduce_add(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float read_sum_avx2(const float* p, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
  }
  float s = reduce_add(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) s += p[i];
  return s;
}

constexpr int kFmaChains = 10;  // 16 registers: 10 chains + constants

float fma_loop_avx2(int64_t iters) {
  __m256 acc[kFmaChains];
  for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  __m256 s = acc[0];
  for (int c = 1; c < kFmaChains; ++c) s = _mm256_add_ps(s, acc[c]);
  return reduce_add(s);
}

// Lane masks for _mm256_maskload/maskstore: the first n of 8 lanes.
inline __m256i first_lanes(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// MR rows x NV vectors of C in registers over all of K; the last vector masked to N.
template <int MR, int NV>
inline void gemm_tile(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb, float* C,
                      int64_t ldc, bool accumulate, __m256i last) {
  const __m256i all = _mm256_set1_epi32(-1);
  __m256 acc[MR][NV];
  ILM_UNROLL for (int r = 0; r < MR; ++r)
    ILM_UNROLL for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? _mm256_maskload_ps(C + r * ldc + v * kLanes, v == NV - 1 ? last : all)
                             : _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m256 b[NV];
    ILM_UNROLL for (int v = 0; v < NV; ++v) b[v] = _mm256_maskload_ps(B + k * ldb + v * kLanes, v == NV - 1 ? last : all);
    ILM_UNROLL for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_set1_ps(A[r * sam + k * sak]);
      ILM_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  ILM_UNROLL for (int r = 0; r < MR; ++r)
    ILM_UNROLL for (int v = 0; v < NV; ++v) _mm256_maskstore_ps(C + r * ldc + v * kLanes, v == NV - 1 ? last : all, acc[r][v]);
}

template <int NV>
inline void gemm_rows(int64_t M, int64_t K, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb,
                      float* C, int64_t ldc, bool accumulate, __m256i last) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) gemm_tile<4, NV>(K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc, accumulate, last);
  for (; m < M; ++m) gemm_tile<1, NV>(K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc, accumulate, last);
}

// e^x for 8 lanes: x = n·ln2 + r, |r| <= ln2/2, e^r by the Cephes expf polynomial, times 2^n
// through the exponent bits; 0 below -87.3, NaN for NaN.
inline __m256 exp8(__m256 x) {
  // max/min return their second operand when either is NaN: x goes second, so NaN stays NaN.
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(policy::kExpClampHigh), _mm256_max_ps(_mm256_set1_ps(policy::kExpZeroBelow), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(policy::kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(policy::kLn2Hi), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(policy::kLn2Lo), r);
  __m256 p = _mm256_set1_ps(policy::kExpPoly[0]);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(policy::kExpPoly[1]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(policy::kExpPoly[2]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(policy::kExpPoly[3]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(policy::kExpPoly[4]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(policy::kExpPoly[5]));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  // 2^n in two steps (n in [-126, 128]: one power of two could leave the exponent range).
  const __m256i e = _mm256_cvtps_epi32(n);
  const __m256i e1 = _mm256_srai_epi32(e, 1), e2 = _mm256_sub_epi32(e, e1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, _mm256_set1_epi32(127)), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, _mm256_set1_epi32(127)), 23));
  const __m256 out = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
  return _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(policy::kExpZeroBelow), _CMP_LT_OQ), out);
}

void exp_avx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(x + i, exp8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = first_lanes(n - i);
    _mm256_maskstore_ps(x + i, m, exp8(_mm256_maskload_ps(x + i, m)));
  }
}

void gemm_avx2(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
               int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t n0 = 0; n0 < N; n0 += 2 * kLanes) {
    const int64_t w = N - n0 < 2 * kLanes ? N - n0 : 2 * kLanes;
    const int64_t nv = (w + kLanes - 1) / kLanes;
    const __m256i last = first_lanes(w - (nv - 1) * kLanes);
    if (nv == 2)
      gemm_rows<2>(M, K, A, sam, sak, B + n0, ldb, C + n0, ldc, accumulate, last);
    else
      gemm_rows<1>(M, K, A, sam, sak, B + n0, ldb, C + n0, ldc, accumulate, last);
  }
}

}  // namespace

const Kernels kAvx2Kernels = {"avx2", Precision::Exact, matmul_avx2, matmul_quant_avx2, dot_avx2,
                              read_sum_avx2, fma_loop_avx2, 2 * kLanes * kFmaChains, nullptr, 0, gemm_avx2, exp_avx2, transpose_generic, widen_generic, nullptr, nullptr, nullptr};

}  // namespace ilm::cpu
#endif
