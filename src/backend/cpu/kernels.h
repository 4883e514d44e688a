#pragma once
// SIMD kernels of the cpu backend, one implementation per instruction set, chosen at run
// time from what the CPU reports (never from the build machine's flags): AVX-512, AVX2+FMA,
// or portable C++ (any CPU, ARM included, auto-vectorised by the compiler).
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/dtype.h"

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
// Σ a[i] · b[i]
using DotFn = float (*)(const float* a, const float* b, int64_t n);
// y[i] = y[i] · scale + a · x[i]
using ScaleAxpyFn = void (*)(float* y, float scale, float a, const float* x, int64_t n);

// Machine probes used by `internlm bench` to measure this machine's limits in the same run.
// Sum of n floats, with loads as wide as the ISA allows (a read-bandwidth probe).
using ReadSumFn = float (*)(const float* p, int64_t n);
// `iters` iterations of independent FMA chains; returns a value that depends on all of them.
using FmaLoopFn = float (*)(int64_t iters);

struct Kernels {
  std::string_view isa;  // "avx512bf16", "avx512", "avx2", "generic"
  MatmulFn matmul;
  MatmulQuantFn matmul_quant;
  DotFn dot;
  ScaleAxpyFn scale_axpy;
  ReadSumFn read_sum;
  FmaLoopFn fma_loop;
  int64_t fma_loop_flops_per_iter;  // floating-point operations per fma_loop iteration
};

// Dot-product peak probes, when the CPU has the instruction: bf16 (AVX512_BF16 vdpbf16ps,
// flops) and int8 (AVX512_VNNI vpdpbusd, integer ops).
struct DotPeakProbe {
  FmaLoopFn loop;
  int64_t ops_per_iter;
};
const DotPeakProbe* bf16_dot_probe();
const DotPeakProbe* int8_dot_probe();

// The best kernels this CPU supports (detected once).
const Kernels& best_kernels();
// Kernels for a given ISA if this CPU supports it (and the build includes it), else nullptr.
const Kernels* kernels_for(std::string_view isa);
// Every exact (f32-arithmetic) kernel set that can run here, best first. Not listed:
// "avx512bf16", which rounds activations to bf16 for multi-token matmuls on bf16 weights
// (vdpbf16ps, 2x the FMA throughput) at ~4e-3 relative logit error, above the 1e-3 the
// default must hold; it is opt-in via kernels_for("avx512bf16") / INTERNLM_CPU_KERNELS.
std::vector<std::string_view> supported_isas();
// CPU features relevant to kernel choice, e.g. {"avx2", "fma", "avx512f", "avx512_bf16"}.
std::vector<std::string> cpu_features();

}  // namespace ilm::cpu
