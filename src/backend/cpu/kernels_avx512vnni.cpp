// AVX512_VNNI kernels for group-quantized (int8 / int4) weights, exact to ~15 bits.
//
// vpdpbusd multiplies 64 u8 x s8 pairs per instruction (4x an f32 FMA) with exact int32 sums,
// so the weights need no widening to f32. The activations are not rounded to 8 bits (that
// would cost ~1e-2 relative error): each block of `group` activations is split into two int8
// levels, x ≈ s·(h + l/254), s = max|x| / 127, which carries x to within max|x| / 64516, and
// both levels go through vpdpbusd. Two instructions per 64 products still beat the f32 path,
// which spends ~5 more per 32 weights unpacking and converting them.
//
// Layout (made once at load time by pack_quant_avx512vnni): rows in blocks of 16, and within a
// block the weights of 4 consecutive k for all 16 rows in one 64-byte vector, so a vpdpbusd
// with a broadcast of 4 activation bytes adds 4 products to each of 16 row sums (no horizontal
// reductions). Weights are stored unsigned (vpdpbusd's u8 operand): int8 as q + 128, int4 as
// the nibble q + 8 with the nibbles of k..k+3 and k+4..k+7 in one byte; the offsets are taken
// back exactly, in int32, with the activations' block sums. The f16 scales of the 16 rows of a
// group are stored together.
//
// Every (token, row) result goes through the same integer sums and the same float steps in the
// same order whatever the batch, tile or thread split, so batched and single runs agree bit
// for bit.
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/kernels_impl.h"

namespace ilm::cpu {

namespace {

constexpr int64_t kRows = kAvx512VnniQuantRows;  // rows per packed block = i32 lanes of a vector
constexpr float kLoStep = 1.0f / 254.0f;  // the second level's step, in units of the first

// --- packing --------------------------------------------------------------------------------

// data_out must be zeroed: rows past `rows` (padding) are left as they are.
void pack_quant_impl(const uint8_t* data, const uint16_t* scales, int bits, int64_t rows, int64_t K, int64_t group,
                     uint8_t* data_out, uint16_t* scales_out) {
  uint8_t* u = thread_scratch(ScratchSlot::PackRow, K);  // one row's unsigned weights, in column order
  const int64_t blocks = (rows + kRows - 1) / kRows, ng = K / group;
  const int64_t block_bytes = bits == 8 ? kRows * K : kRows * K / 2;
  for (int64_t row = 0; row < rows; ++row) {
    if (bits == 8) {
      for (int64_t k = 0; k < K; ++k) u[k] = static_cast<uint8_t>(data[row * K + k] ^ 0x80);
    } else {
      for (int64_t k0 = 0; k0 < K; k0 += 32) {
        const uint8_t* src = data + (row * K + k0) / 2;
        for (int i = 0; i < 16; ++i) {
          u[k0 + i] = src[i] & 0x0f;
          u[k0 + 16 + i] = static_cast<uint8_t>(src[i] >> 4);
        }
      }
    }
    uint8_t* out = data_out + row / kRows * block_bytes + row % kRows * 4;
    for (int64_t k = 0; k < K; k += 8)
      for (int kk = 0; kk < 4; ++kk) {
        if (bits == 8) {
          out[k * kRows + kk] = u[k + kk];            // vector of k..k+3
          out[(k + 4) * kRows + kk] = u[k + 4 + kk];  // vector of k+4..k+7
        } else {
          out[k / 2 * kRows + kk] = static_cast<uint8_t>(u[k + kk] | u[k + 4 + kk] << 4);
        }
      }
  }
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t g = 0; g < ng; ++g)
      for (int64_t r = 0; r < kRows; ++r) {
        const int64_t row = b * kRows + r;
        scales_out[(b * ng + g) * kRows + r] = row < rows ? scales[row * ng + g] : 0;
      }
}

// --- activations ----------------------------------------------------------------------------

// One token's activations in two int8 levels per block of `group`, with what the kernel needs
// per block: the scale s, and off·Σh, off·Σl (the unsigned weights' offset taken back).
struct ActivationRows {
  int8_t* h = nullptr;  // [T][K]
  int8_t* l = nullptr;  // [T][K]
  float* s = nullptr;   // [T][groups]
  int32_t* oh = nullptr;  // [T][groups]
  int32_t* ol = nullptr;  // [T][groups]
};

ActivationRows quantize_activations(const float* x, int64_t ldx, int64_t T, int64_t K, int64_t group, int off) {
  const int64_t ng = K / group;
  const int64_t ints = T * ng * 4;
  uint8_t* base = thread_scratch(ScratchSlot::Activations, 2 * T * K + 3 * ints + 64);
  ActivationRows a;
  a.h = reinterpret_cast<int8_t*>(base);
  a.l = a.h + T * K;
  // The per-block numbers start 4-byte aligned after the int8 rows.
  uint8_t* nums = base + ((2 * T * K + 3) / 4 * 4);
  a.s = reinterpret_cast<float*>(nums);
  a.oh = reinterpret_cast<int32_t*>(nums + ints);
  a.ol = reinterpret_cast<int32_t*>(nums + 2 * ints);
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * ldx;
    for (int64_t g = 0; g < ng; ++g) {
      const float* xg = xt + g * group;
      __m512 m = _mm512_setzero_ps();
      __mmask16 nan = 0;
      for (int64_t i = 0; i < group; i += 16) {
        const __m512 v = _mm512_loadu_ps(xg + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(m, _mm512_abs_ps(v));
      }
      const float amax = _mm512_reduce_max_ps(m);
      // A NaN or infinity anywhere in the group makes its scale NaN, so the outputs are NaN
      // (f32 arithmetic would give NaN or ±inf). A group below 127/FLT_MAX (~4e-37) counts as
      // zero: its step would overflow. Either way the levels are zero.
      const bool finite = !nan && amax <= 3.4e38f;
      if (!finite || !(amax > 127.0f / 3.4e38f)) {
        std::memset(a.h + t * K + g * group, 0, static_cast<size_t>(group));
        std::memset(a.l + t * K + g * group, 0, static_cast<size_t>(group));
        a.s[t * ng + g] = finite ? 0.0f : NAN;
        a.oh[t * ng + g] = a.ol[t * ng + g] = 0;
        continue;
      }
      const float s = amax / 127.0f;
      const __m512 inv = _mm512_set1_ps(127.0f / amax);
      __m512i sh = _mm512_setzero_si512(), sl = _mm512_setzero_si512();
      for (int64_t i = 0; i < group; i += 16) {
        const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(xg + i), inv);
        const __m512i hi = _mm512_cvtps_epi32(v);  // round to nearest even: |hi| <= 127
        const __m512 rest = _mm512_sub_ps(v, _mm512_cvtepi32_ps(hi));  // in [-0.5, 0.5]
        sh = _mm512_add_epi32(sh, hi);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(a.h + t * K + g * group + i), _mm512_cvtepi32_epi8(hi));
        __m512i lo = _mm512_cvtps_epi32(_mm512_mul_ps(rest, _mm512_set1_ps(254.0f)));
        lo = _mm512_max_epi32(_mm512_min_epi32(lo, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
        sl = _mm512_add_epi32(sl, lo);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(a.l + t * K + g * group + i), _mm512_cvtepi32_epi8(lo));
      }
      a.s[t * ng + g] = s * kLoStep;  // the unit of 254·h + l
      a.oh[t * ng + g] = off * _mm512_reduce_add_epi32(sh);
      a.ol[t * ng + g] = off * _mm512_reduce_add_epi32(sl);
    }
  }
  return a;
}

// --- the product ----------------------------------------------------------------------------

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The two weight vectors of columns k..k+3 and k+4..k+7 of one row block.
template <int BITS>
inline void load_w8(const uint8_t* blk, int64_t k, __m512i& w0, __m512i& w1) {
  if constexpr (BITS == 8) {
    w0 = _mm512_loadu_si512(blk + k * kRows);
    w1 = _mm512_loadu_si512(blk + (k + 4) * kRows);
  } else {
    const __m512i v = _mm512_loadu_si512(blk + k / 2 * kRows);
    const __m512i nib = _mm512_set1_epi8(0x0f);
    w0 = _mm512_and_si512(v, nib);
    w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
  }
}

// TT tokens x RB row blocks (16 rows each), all K. Per (token, block) one int32 chain per
// activation level, started at -off·Σ(level) of the group so that it ends at Σ q·level
// exactly; folded into the f32 sum once per group. Integer sums are exact, so how chains and
// tiles are split never changes a result.
template <int BITS, int TT, int RB>
inline void tile(const ActivationRows& a, int64_t t0, const uint8_t* data, const uint16_t* scales, int64_t K,
                 int64_t group, int64_t b0, float* y, int64_t ldy, int64_t r1) {
  const int64_t ng = K / group;
  const int64_t block_bytes = BITS == 8 ? kRows * K : kRows * K / 2;
  // |254·Σq·h + Σq·l| <= group · max|q| · 127 · 255 must fit in int32.
  const bool int_combine = group * (BITS == 8 ? 128 : 8) * 127 * 255 < (int64_t{1} << 31);
  __m512 acc[TT][RB];
  ILM_UNROLL for (int t = 0; t < TT; ++t)
    ILM_UNROLL for (int j = 0; j < RB; ++j) acc[t][j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    __m512i ih[TT][RB], il[TT][RB];
    ILM_UNROLL for (int t = 0; t < TT; ++t) {
      const int64_t i = (t0 + t) * ng + g;
      ILM_UNROLL for (int j = 0; j < RB; ++j) {
        ih[t][j] = _mm512_set1_epi32(-a.oh[i]);
        il[t][j] = _mm512_set1_epi32(-a.ol[i]);
      }
    }
    for (int64_t k = g * group; k < (g + 1) * group; k += 8) {
      __m512i w0[RB], w1[RB];
      ILM_UNROLL for (int j = 0; j < RB; ++j) load_w8<BITS>(data + (b0 + j) * block_bytes, k, w0[j], w1[j]);
      ILM_UNROLL for (int t = 0; t < TT; ++t) {
        const int8_t* ht = a.h + (t0 + t) * K + k;
        const __m512i xh0 = bcast4(ht), xh1 = bcast4(ht + 4);
        ILM_UNROLL for (int j = 0; j < RB; ++j)
          ih[t][j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(ih[t][j], w0[j], xh0), w1[j], xh1);
        const int8_t* lt = a.l + (t0 + t) * K + k;
        const __m512i xl0 = bcast4(lt), xl1 = bcast4(lt + 4);
        ILM_UNROLL for (int j = 0; j < RB; ++j)
          il[t][j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(il[t][j], w0[j], xl0), w1[j], xl1);
      }
    }
    ILM_UNROLL for (int j = 0; j < RB; ++j) {
      const __m512 d = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + ((b0 + j) * ng + g) * kRows)));
      ILM_UNROLL for (int t = 0; t < TT; ++t) {
        // Two levels: 254·Σq·h + Σq·l, combined in int32 (shifts and adds, off the multiply
        // ports) when it cannot overflow, else in f32; a.s already holds s/254.
        __m512 f;
        if (int_combine) {
          const __m512i h254 = _mm512_sub_epi32(_mm512_slli_epi32(ih[t][j], 8), _mm512_slli_epi32(ih[t][j], 1));
          f = _mm512_cvtepi32_ps(_mm512_add_epi32(h254, il[t][j]));
        } else {
          f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ih[t][j]), _mm512_set1_ps(254.0f), _mm512_cvtepi32_ps(il[t][j]));
        }
        acc[t][j] = _mm512_fmadd_ps(f, _mm512_mul_ps(d, _mm512_set1_ps(a.s[(t0 + t) * ng + g])), acc[t][j]);
      }
    }
  }
  ILM_UNROLL for (int j = 0; j < RB; ++j) {
    const int64_t r = (b0 + j) * kRows;
    const int64_t n = r1 - r < kRows ? r1 - r : kRows;
    const __mmask16 m = n >= kRows ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1);
    ILM_UNROLL for (int t = 0; t < TT; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * ldy + r, m, acc[t][j]);
  }
}

template <int BITS>
void matmul_quant_typed(const float* x, int64_t ldx, int64_t T, const uint8_t* data, const uint16_t* scales,
                        int64_t K, int64_t group, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t b_begin = r0 / kRows, b_end = (r1 + kRows - 1) / kRows;
  // Token blocks whose activation levels (2·K bytes a token) stay in L2 while the row
  // blocks' weights stream past; each weight byte is read from memory once per token block.
  int64_t tb = (512 * 1024) / (2 * K) / 4 * 4;
  if (tb < 4) tb = 4;
  for (int64_t tb0 = 0; tb0 < T; tb0 += tb) {
    const int64_t nt = T - tb0 < tb ? T - tb0 : tb;
    const ActivationRows a = quantize_activations(x + tb0 * ldx, ldx, nt, K, group, BITS == 8 ? 128 : 8);
    float* yb = y + tb0 * ldy;
    if (nt == 1) {
      // One token (decode): four row blocks per pass for independent chains.
      int64_t b = b_begin;
      for (; b + 4 <= b_end; b += 4) tile<BITS, 1, 4>(a, 0, data, scales, K, group, b, yb, ldy, r1);
      for (; b < b_end; ++b) tile<BITS, 1, 1>(a, 0, data, scales, K, group, b, yb, ldy, r1);
      continue;
    }
    int64_t b = b_begin;
    for (; b + 2 <= b_end; b += 2) {
      int64_t t = 0;
      for (; t + 3 <= nt; t += 3) tile<BITS, 3, 2>(a, t, data, scales, K, group, b, yb, ldy, r1);
      if (nt - t == 2) tile<BITS, 2, 2>(a, t, data, scales, K, group, b, yb, ldy, r1);
      if (nt - t == 1) tile<BITS, 1, 2>(a, t, data, scales, K, group, b, yb, ldy, r1);
    }
    if (b < b_end) {
      int64_t t = 0;
      for (; t + 4 <= nt; t += 4) tile<BITS, 4, 1>(a, t, data, scales, K, group, b, yb, ldy, r1);
      switch (nt - t) {
        case 3: tile<BITS, 3, 1>(a, t, data, scales, K, group, b, yb, ldy, r1); break;
        case 2: tile<BITS, 2, 1>(a, t, data, scales, K, group, b, yb, ldy, r1); break;
        case 1: tile<BITS, 1, 1>(a, t, data, scales, K, group, b, yb, ldy, r1); break;
        default: break;
      }
    }
  }
}

}  // namespace

void matmul_quant_avx512vnni(const float* x, int64_t ldx, int64_t T, const uint8_t* data, const uint16_t* scales,
                             int bits, int64_t K, int64_t group, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (bits == 8)
    matmul_quant_typed<8>(x, ldx, T, data, scales, K, group, r0, r1, y, ldy);
  else
    matmul_quant_typed<4>(x, ldx, T, data, scales, K, group, r0, r1, y, ldy);
}

void pack_quant_avx512vnni(const uint8_t* data, const uint16_t* scales, int bits, int64_t rows, int64_t K,
                           int64_t group, uint8_t* data_out, uint16_t* scales_out) {
  pack_quant_impl(data, scales, bits, rows, K, group, data_out, scales_out);
}

const Kernels kAvx512VnniKernels = {"avx512vnni", Precision::Exact,
                                    kAvx512Kernels.matmul,
                                    matmul_quant_avx512vnni,
                                    kAvx512Kernels.dot,
                                    kAvx512Kernels.read_sum,
                                    kAvx512Kernels.fma_loop,
                                    kAvx512Kernels.fma_loop_flops_per_iter,
                                    pack_quant_avx512vnni,
                                    kRows,
                                    gemm_avx512,
                                    exp_avx512,
                                    transpose_avx512,
                                    widen_avx512,
                                    widen_transpose_avx512,
                                    gemm_kv_rows_avx512,
                                    exp_row_avx512};

}  // namespace ilm::cpu
#endif
