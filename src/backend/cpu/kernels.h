#pragma once
// SIMD kernels of the cpu backend, one implementation per instruction set, chosen at run
// time from what the CPU reports (never from the build machine's flags): AVX-512 with VNNI
// (quantized weights through vpdpbusd), AVX-512, AVX2+FMA, NEON on aarch64, or portable C++
// (any CPU, auto-vectorised by the compiler).
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/precision.h"

namespace ilm::cpu {

// y[t * ldy + r] = Σ_k x[t * ldx + k] · W[r, k] for rows r in [r0, r1) and tokens t < T.
// W is row-major [rows, K] of dtype wt (F32, F16 or BF16), used in place.
using MatmulFn = void (*)(const float* x, int64_t ldx, int64_t T, const void* w, DType wt,
                          int64_t K, int64_t r0, int64_t r1, float* y, int64_t ldy);
// Same for a group-quantized W (layout in backend/quant.h): `data` holds int8 values
// (bits 8) or packed int4 pairs (bits 4), `scales` one f16 per group of `group` weights.
// K must be a multiple of 32 and of group.
using MatmulQuantFn = void (*)(const float* x, int64_t ldx, int64_t T, const uint8_t* data,
                               const uint16_t* scales, int bits, int64_t K, int64_t group,
                               int64_t r0, int64_t r1, float* y, int64_t ldy);
// Writes a kernel's private layout of a [rows, K] group-quantized matrix given in the standard
// layout: data_out gets packed_rows * K bytes (int8) or half that (int4), scales_out
// packed_rows * K / group f16 scales, where packed_rows is rows rounded up to quant_rows
// (padding rows: zero scales; data_out comes zero-filled). Same numbers, another order.
using PackQuantFn = void (*)(const uint8_t* data, const uint16_t* scales, int bits, int64_t rows, int64_t K,
                             int64_t group, uint8_t* data_out, uint16_t* scales_out);
// C[m·ldc + n] = (accumulate ? C[m·ldc + n] : 0) + Σ_k A[m·sam + k·sak] · B[k·ldb + n] for
// m < M, n < N: the small f32 GEMM of attention tiles. A is read element by element, so it
// may be stored either way round. Every C element sums its k in ascending order in a lane of
// its own, so its value does not depend on M, N or the tiling.
using GemmFn = void (*)(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                        int64_t ldb, float* C, int64_t ldc, bool accumulate);
// dst[i] = n values of src (F32, BF16, F16, or I8 times `scale`) as f32: exactly the values
// kv_row_f32 gives (widening is exact; q·scale is one rounded product either way).
using WidenFn = void (*)(const void* src, DType t, float scale, int64_t n, float* dst);
// dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols.
using TransposeFn = void (*)(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd);
// One KV head's slice of n cache rows, in the cache's element type: row j's values start at
// at[j] (F32, BF16, F16, or I8 times scales[j]; scales may be null for the float types).
// ahead[0..n_ahead): the rows the caller reads next (ahead_bytes each, from each pointer),
// which a kernel asks the memory for while it computes on these (spread over its work:
// one burst of prefetches stalls as long as the reads themselves).
struct KvRows {
  const void* const* at;
  const float* scales;
  DType type;
  const void* const* ahead = nullptr;
  int64_t n_ahead = 0;
  int64_t ahead_bytes = 0;
};
// kt[d·ldk + j] = widen(rows[j][d]) for j < n, d < hd: WidenFn then TransposeFn in one pass,
// straight from the cache (no f32 copy of the rows). hd a multiple of 16.
using WidenTransposeFn = void (*)(const KvRows& rows, int64_t n, int64_t hd, float* kt, int64_t ldk);
// C[m·ldc + d] += Σ_j A[m·sam + j·sak] · widen(rows[j][d]) for m < M, d < hd: GemmFn with
// accumulate on the widened rows (the same chain: C, then j ascending), read from the cache.
// hd a multiple of 16.
using GemmKvRowsFn = void (*)(int64_t M, int64_t hd, int64_t n, const float* A, int64_t sam, int64_t sak,
                              const KvRows& rows, float* C, int64_t ldc);
// The softmax step of one row of attention scores: *m = max(*m, row[0..visible)); then, unless
// *m is -inf (the row becomes zeros), row[j] = ExpFn(row[j] - *m) for j < visible and 0 for
// visible <= j < n. Returns the row's sum in one fixed order: partial sums p[j mod 16] in
// ascending j, then p[i] += p[i + w] for w = 8, 4, 2, 1 (the order attention's portable
// softmax uses, so a set with and a set without this kernel differ only in their exp).
using ExpRowFn = float (*)(float* row, int64_t visible, int64_t n, float* m);
// x[i] = e^x[i] to within ~2 ulp, the same value for the same input wherever it sits in x (no
// scalar tail with another formula); e^x = 0 below -87.3 (so e^-inf = 0), NaN for NaN.
using ExpFn = void (*)(float* x, int64_t n);
// Σ a[i] · b[i]
using DotFn = float (*)(const float* a, const float* b, int64_t n);

// Machine probes used by `internlm bench` to measure this machine's limits in the same run.
// Sum of n floats, with loads as wide as the ISA allows (a read-bandwidth probe).
using ReadSumFn = float (*)(const float* p, int64_t n);
// `iters` iterations of independent FMA chains; returns a value that depends on all of them.
using FmaLoopFn = float (*)(int64_t iters);

struct Kernels {
  std::string_view isa;  // "avx512bf16", "avx512vnni", "avx512", "avx2", "neon", "generic"
  // Which precision the set implements: Exact sets multiply f32 activations (int8 / int4 in two
  // int8 levels, ~2e-5); the Fast set rounds activations to bf16 / one int8 level.
  Precision precision;
  MatmulFn matmul;
  MatmulQuantFn matmul_quant;
  DotFn dot;
  ReadSumFn read_sum;
  FmaLoopFn fma_loop;
  int64_t fma_loop_flops_per_iter;  // floating-point operations per fma_loop iteration
  // Quantized weights: with pack_quant set, matmul_quant takes the packed layout, and work is
  // split in blocks of quant_rows rows (r0 a multiple of it); else the standard layout.
  PackQuantFn pack_quant;
  int64_t quant_rows;
  GemmFn gemm;
  ExpFn exp;
  TransposeFn transpose;
  WidenFn widen;
  // Decode attention's fused reads of the cache; null where the set has none (attention then
  // widens into a buffer and uses gemm / transpose: the same numbers).
  WidenTransposeFn widen_transpose;
  GemmKvRowsFn gemm_kv_rows;
  ExpRowFn exp_row;
};

// Dot-product peak probes, when the CPU has the instruction: bf16 (AVX512_BF16 vdpbf16ps,
// flops) and int8 (AVX512_VNNI vpdpbusd, integer ops).
struct DotPeakProbe {
  FmaLoopFn loop;
  int64_t ops_per_iter;
};
const DotPeakProbe* bf16_dot_probe();
const DotPeakProbe* int8_dot_probe();

// The best kernels of a precision this CPU supports (detected once): for Fast, "avx512bf16"
// where the CPU has AVX512_BF16 and VNNI, else the best exact set (no rounded-activation
// kernels pay off without a bf16 / int8 dot-product instruction).
const Kernels& best_kernels(Precision p = Precision::Fast);
// Kernels for a given ISA if this CPU supports it (and the build includes it), else nullptr.
const Kernels* kernels_for(std::string_view isa);
// Every exact kernel set that can run here, best first (the first is best_kernels(Exact)):
// f32 arithmetic, except that avx512vnni carries activations for quantized weights in two int8
// levels (~2e-5 relative kernel error). Not listed: the Fast set "avx512bf16", which rounds
// activations to bf16 (bf16 weights) or to one int8 level (quantized weights).
std::vector<std::string_view> supported_isas();
// Every kernel set compiled into this binary, fast set first, whether or not this CPU can run
// it (x86-64: avx512bf16, avx512vnni, avx512, avx2, generic; aarch64: neon, generic).
std::vector<std::string_view> compiled_isas();
// CPU features relevant to kernel choice, e.g. {"avx2", "fma", "avx512f", "avx512_bf16"}.
std::vector<std::string> cpu_features();

}  // namespace ilm::cpu
