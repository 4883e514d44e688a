// NEON (ASIMD) kernels for aarch64, where NEON and the f16 <-> f32 conversions are part of
// the base ISA, so this file needs no extra flags and no run-time check. bf16 weights are
// widened to f32 in registers (a shift), f16 with fcvtl, int8 / int4 groups are dequantized
// in registers: the math is f32 FMA on the exact weight values.
//
// Every (token, row) output is accumulated in the same order whatever the tile shape: one
// 4-lane accumulator (lane j sums columns j, j + 4, ... of a K slice in order, a zero-padded
// vector for the last < 4 columns), reduced with faddp, and the slices of K added into y in
// order. The K slicing depends only on K, so a result does not depend on T, on the other
// tokens of the batch, or on the row range (the thread split).
#if defined(__aarch64__)
#include <arm_neon.h>

#include <type_traits>
#include <utility>

#include "backend/cpu/kernel_policy.h"
#include "backend/cpu/kernels_impl.h"

namespace ilm::cpu {

namespace {

// K is cut into summation slices of policy::kSliceColumns (a multiple of 32, so quantized
// blocks are never split), as on x86. A function of K only: see above.
constexpr int64_t kSlice = policy::kSliceColumns;
inline int64_t slice_width(int64_t K) { return K <= kSlice ? K : kSlice; }
// Activations of a token block (tokens x slice floats) are kept under this many bytes, so
// they stay in L2 while the thread's weight rows stream through once per block.
constexpr int64_t kActBytes = policy::kActivationBlockBytes;

// Storage type of a dense weight dtype.
template <DType WT>
using Elem = std::conditional_t<WT == DType::F32, float, uint16_t>;

// 4 weights at p, widened to f32.
template <DType WT>
inline float32x4_t load4(const Elem<WT>* p) {
  if constexpr (WT == DType::BF16) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
  } else if constexpr (WT == DType::F16) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
  } else {
    return vld1q_f32(p);
  }
}

// The first n < 4 values at p, zero-padded to 4 (a zero bf16 / f16 widens to +0).
template <class E>
inline void copy_tail(const E* p, int64_t n, E (&b)[4]) {
  for (int64_t j = 0; j < 4; ++j) b[j] = j < n ? p[j] : E{0};
}

// Reduces the accumulators of a tile and stores them into y (first K slice) or adds them.
template <int TT, int RB>
inline void store_tile(const float32x4_t (&acc)[TT][RB], float* y, int64_t ldy, int64_t r, bool add) {
#pragma GCC unroll 16
  for (int t = 0; t < TT; ++t)
#pragma GCC unroll 16
    for (int i = 0; i < RB; ++i) {
      const float s = vaddvq_f32(acc[t][i]);
      float& out = y[t * ldy + r + i];
      out = add ? out + s : s;
    }
}

// Dense weights (F32 / F16 / BF16): TT tokens x RB rows over columns [k0, k0 + kn).
template <DType WT>
struct Dense {
  const float* x;
  int64_t ldx;
  const void* w;
  int64_t K;
  float* y;
  int64_t ldy;

  template <int TT, int RB>
  void tile(int64_t t0, int64_t k0, int64_t kn, int64_t r, bool add) const {
    const float* xr[TT];
    const Elem<WT>* wr[RB];
    float32x4_t acc[TT][RB];
#pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) {
      xr[t] = x + (t0 + t) * ldx + k0;
#pragma GCC unroll 16
      for (int i = 0; i < RB; ++i) acc[t][i] = vdupq_n_f32(0.0f);
    }
#pragma GCC unroll 16
    for (int i = 0; i < RB; ++i) wr[i] = static_cast<const Elem<WT>*>(w) + (r + i) * K + k0;
    const int64_t kv = kn / 4 * 4;
    for (int64_t k = 0; k < kv; k += 4) {
      float32x4_t wv[RB];
#pragma GCC unroll 16
      for (int i = 0; i < RB; ++i) wv[i] = load4<WT>(wr[i] + k);
#pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        const float32x4_t xv = vld1q_f32(xr[t] + k);
#pragma GCC unroll 16
        for (int i = 0; i < RB; ++i) acc[t][i] = vfmaq_f32(acc[t][i], xv, wv[i]);
      }
    }
    if (kv < kn) {
      const int64_t n = kn - kv;
      float32x4_t wv[RB];
#pragma GCC unroll 16
      for (int i = 0; i < RB; ++i) {
        Elem<WT> b[4];
        copy_tail(wr[i] + kv, n, b);
        wv[i] = load4<WT>(b);
      }
#pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        float b[4];
        copy_tail(xr[t] + kv, n, b);
        const float32x4_t xv = vld1q_f32(b);
#pragma GCC unroll 16
        for (int i = 0; i < RB; ++i) acc[t][i] = vfmaq_f32(acc[t][i], xv, wv[i]);
      }
    }
    store_tile<TT, RB>(acc, y + t0 * ldy, ldy, r, add);
  }
};

// 8 quantized values (part c = 0..3: weights 8c .. 8c + 7) of the 32-weight block at p, as
// int8. int4: byte i of the block's 16 holds weight i (low nibble) and weight i + 16 (high), + 8.
template <int BITS>
inline int8x8_t load_q8(const uint8_t* p, int c) {
  if constexpr (BITS == 8) {
    return vld1_s8(reinterpret_cast<const int8_t*>(p + 8 * c));
  } else {
    // Branch-free in c (a shift by -4 is a right shift), so the loop over c stays a loop.
    const uint8x8_t b = vld1_u8(p + 8 * (c & 1));
    const uint8x8_t nib = vand_u8(vshl_u8(b, vdup_n_s8(static_cast<int8_t>(-4 * (c >> 1)))), vdup_n_u8(0x0f));
    return vsub_s8(vreinterpret_s8_u8(nib), vdup_n_s8(8));
  }
}

// 8 int8 values times the scale in lane I of d, as two f32 vectors (q · d is exact in f32).
template <int I>
inline void dequant8(int8x8_t q8, float32x4_t d, float32x4_t& w0, float32x4_t& w1) {
  const int16x8_t q = vmovl_s8(q8);
  w0 = vmulq_laneq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q))), d, I);
  w1 = vmulq_laneq_f32(vcvtq_f32_s32(vmovl_high_s16(q)), d, I);
}

// Group-quantized weights (backend/quant.h): dequantized in registers, 8 weights at a time.
// K slices are multiples of 32, so a tile always covers whole 32-weight blocks.
template <int BITS>
struct Quant {
  const float* x;
  int64_t ldx;
  const uint8_t* data;
  const uint16_t* scales;
  int64_t K;
  int64_t group;
  float* y;
  int64_t ldy;

  template <int TT, int RB>
  void tile(int64_t t0, int64_t k0, int64_t kn, int64_t r, bool add) const {
    static_assert(RB <= 4, "one scale lane per row");
    const float* xr[TT];
    const uint8_t* qr[RB];   // the row's data at column k0
    const uint16_t* sr[RB];  // the row's scales
    float32x4_t acc[TT][RB];
#pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) {
      xr[t] = x + (t0 + t) * ldx + k0;
#pragma GCC unroll 16
      for (int i = 0; i < RB; ++i) acc[t][i] = vdupq_n_f32(0.0f);
    }
#pragma GCC unroll 16
    for (int i = 0; i < RB; ++i) {
      qr[i] = data + ((r + i) * K + k0) * BITS / 8;
      sr[i] = scales + (r + i) * (K / group);
    }
    for (int64_t k = 0; k < kn; k += 32) {
      // The RB rows' scales of this block, one lane each.
      const int64_t g = (k0 + k) / group;
      uint16_t sh[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
      for (int i = 0; i < RB; ++i) sh[i] = sr[i][g];
      const float32x4_t d = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(sh)));
      // Not unrolled: 8 weights x RB rows at a time keep the tile within the 32 registers.
#pragma GCC unroll 1
      for (int c = 0; c < 4; ++c) {
        float32x4_t w0[RB], w1[RB];
        [&]<int... I>(std::integer_sequence<int, I...>) {
          (dequant8<I>(load_q8<BITS>(qr[I] + k * BITS / 8, c), d, w0[I], w1[I]), ...);
        }(std::make_integer_sequence<int, RB>{});
#pragma GCC unroll 16
        for (int t = 0; t < TT; ++t) {
          const float32x4_t x0 = vld1q_f32(xr[t] + k + 8 * c);
          const float32x4_t x1 = vld1q_f32(xr[t] + k + 8 * c + 4);
#pragma GCC unroll 16
          for (int i = 0; i < RB; ++i) acc[t][i] = vfmaq_f32(vfmaq_f32(acc[t][i], x0, w0[i]), x1, w1[i]);
        }
      }
    }
    store_tile<TT, RB>(acc, y + t0 * ldy, ldy, r, add);
  }
};

// Tokens [t0, t0 + nt) of one block of RB rows, TTMAX tokens at a time.
template <int RB, int TTMAX, class P>
inline void tokens(const P& p, int64_t t0, int64_t nt, int64_t k0, int64_t kn, int64_t r, bool add) {
  const int64_t end = t0 + nt;
  int64_t t = t0;
  for (; t + TTMAX <= end; t += TTMAX) p.template tile<TTMAX, RB>(t, k0, kn, r, add);
  switch (end - t) {
    case 3:
      if constexpr (TTMAX > 3) p.template tile<3, RB>(t, k0, kn, r, add);
      break;
    case 2:
      if constexpr (TTMAX > 2) p.template tile<2, RB>(t, k0, kn, r, add);
      break;
    case 1:
      if constexpr (TTMAX > 1) p.template tile<1, RB>(t, k0, kn, r, add);
      break;
    default: break;
  }
}

// Rows [r, r1) for tokens [t0, t0 + nt) and one K slice: blocks of 8 rows (when `wide`,
// for one or two tokens: 8 independent FMA chains per token), then 4, then single rows.
template <bool kWide, class P>
inline void rows(const P& p, int64_t t0, int64_t nt, int64_t k0, int64_t kn, int64_t r, int64_t r1) {
  const bool add = k0 > 0;
  if constexpr (kWide) {
    for (; r + 8 <= r1; r += 8) tokens<8, 2>(p, t0, nt, k0, kn, r, add);
  }
  for (; r + 4 <= r1; r += 4) tokens<4, 4>(p, t0, nt, k0, kn, r, add);
  for (; r < r1; ++r) tokens<1, 4>(p, t0, nt, k0, kn, r, add);
}

// Blocking. Few tokens (decode, small batches) fit in L2 whole: each block of rows is one
// sequential stream per row, its K slices done back to back. Otherwise tokens go in blocks
// whose slice of activations stays in L2 while this thread's weight rows stream through once
// per block. Either way each output sees the same slices in the same order. `kWide` (8-row
// blocks) is used for one or two tokens only.
template <bool kWide, class P>
void run(const P& p, int64_t T, int64_t K, int64_t r0, int64_t r1) {
  const int64_t kc = slice_width(K);
  if (T * K * static_cast<int64_t>(sizeof(float)) <= kActBytes) {
    auto by_rows = [&](int64_t r, int64_t re) {
      for (int64_t k0 = 0; k0 < K; k0 += kc) {
        const int64_t kn = K - k0 < kc ? K - k0 : kc;
        if constexpr (kWide) {
          if (T <= 2) {
            rows<true>(p, 0, T, k0, kn, r, re);
            continue;
          }
        }
        rows<false>(p, 0, T, k0, kn, r, re);
      }
    };
    // 8 rows at a time through all slices, then the leftover rows.
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) by_rows(r, r + 8);
    if (r < r1) by_rows(r, r1);
    return;
  }
  int64_t tb = kActBytes / (kc * static_cast<int64_t>(sizeof(float))) / 4 * 4;
  if (tb < 4) tb = 4;
  for (int64_t t0 = 0; t0 < T; t0 += tb) {
    const int64_t nt = T - t0 < tb ? T - t0 : tb;
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const int64_t kn = K - k0 < kc ? K - k0 : kc;
      rows<false>(p, t0, nt, k0, kn, r0, r1);
    }
  }
}

void matmul_neon(const float* x, int64_t ldx, int64_t T, const void* w, DType wt, int64_t K, int64_t r0,
                 int64_t r1, float* y, int64_t ldy) {
  switch (wt) {
    case DType::BF16: run<true>(Dense<DType::BF16>{x, ldx, w, K, y, ldy}, T, K, r0, r1); break;
    case DType::F16: run<true>(Dense<DType::F16>{x, ldx, w, K, y, ldy}, T, K, r0, r1); break;
    default: run<true>(Dense<DType::F32>{x, ldx, w, K, y, ldy}, T, K, r0, r1); break;
  }
}

void matmul_quant_neon(const float* x, int64_t ldx, int64_t T, const uint8_t* data, const uint16_t* scales,
                       int bits, int64_t K, int64_t group, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  // 4-row blocks only: 8 rows of dequantized weights would not fit the registers.
  if (bits == 8)
    run<false>(Quant<8>{x, ldx, data, scales, K, group, y, ldy}, T, K, r0, r1);
  else
    run<false>(Quant<4>{x, ldx, data, scales, K, group, y, ldy}, T, K, r0, r1);
}

float dot_neon(const float* a, const float* b, int64_t n) {
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    acc2 = vfmaq_f32(acc2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
    acc3 = vfmaq_f32(acc3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
  }
  for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float read_sum_neon(const float* p, int64_t n) {
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = vaddq_f32(a0, vld1q_f32(p + i));
    a1 = vaddq_f32(a1, vld1q_f32(p + i + 4));
    a2 = vaddq_f32(a2, vld1q_f32(p + i + 8));
    a3 = vaddq_f32(a3, vld1q_f32(p + i + 12));
  }
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; ++i) s += p[i];
  return s;
}

constexpr int kLanes = 4;
constexpr int kFmaChains = 16;  // 32 registers: covers 4 FMA pipes x 4 cycles of latency

float fma_loop_neon(int64_t iters) {
  float32x4_t acc[kFmaChains];
  for (int c = 0; c < kFmaChains; ++c) acc[c] = vdupq_n_f32(static_cast<float>(c) * 1e-3f);
  const float32x4_t a = vdupq_n_f32(0.999999f), b = vdupq_n_f32(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int c = 0; c < kFmaChains; ++c) acc[c] = vfmaq_f32(b, acc[c], a);
  float32x4_t s = acc[0];
  for (int c = 1; c < kFmaChains; ++c) s = vaddq_f32(s, acc[c]);
  return vaddvq_f32(s);
}

}  // namespace

// Designated initializers: members added to Kernels later stay value-initialized (GCC 12
// still warns about the omitted ones under -Wextra, hence the local pragma).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
const Kernels kNeonKernels = {
    .isa = "neon",
    .precision = Precision::Exact,
    .matmul = matmul_neon,
    .matmul_quant = matmul_quant_neon,
    .dot = dot_neon,
    .read_sum = read_sum_neon,
    .fma_loop = fma_loop_neon,
    .fma_loop_flops_per_iter = 2 * kLanes * kFmaChains,
    .pack_quant = nullptr,
    .quant_rows = 0,
    .gemm = gemm_generic,
    .exp = exp_generic,
    .transpose = transpose_generic,
    .widen = widen_generic,
    .widen_transpose = nullptr,
    .gemm_kv_rows = nullptr,
    .exp_row = nullptr,
};
#pragma GCC diagnostic pop

}  // namespace ilm::cpu
#endif
