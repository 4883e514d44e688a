#pragma once
// Internal: the per-ISA kernel tables, defined in kernels_<isa>.cpp (each compiled with its
// own target flags) and picked by kernels.cpp.
#include "backend/cpu/kernels.h"

// Put before the loops over a register tile's rows / tokens / vectors (compile-time bounds).
// Unrolled early, the tile's accumulator array becomes registers; left to the later unroller,
// GCC keeps the array in memory as well and stores every accumulator on every step, which
// halves the kernels' speed.
#if defined(__clang__)
#define ILM_UNROLL _Pragma("unroll")
#else
#define ILM_UNROLL _Pragma("GCC unroll 16")
#endif

namespace ilm::cpu {

// Per-thread scratch that grows as needed and lives until the thread exits, for the kernels'
// temporary buffers. Defined in kernels.cpp, compiled for every CPU: kernel files must not
// instantiate library templates (std::vector...), whose one linked copy could then carry
// their instruction set into callers on any CPU.
enum class ScratchSlot { Activations, PackRow, Partials, kCount };
uint8_t* thread_scratch(ScratchSlot slot, int64_t bytes);

extern const Kernels kGenericKernels;
// Portable small GEMM (kernels_generic.cpp), for tables without one of their own.
void gemm_generic(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                  int64_t ldb, float* C, int64_t ldc, bool accumulate);
void exp_generic(float* x, int64_t n);
void transpose_generic(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd);
void widen_generic(const void* src, DType t, float scale, int64_t n, float* dst);
#if defined(__x86_64__) || defined(_M_X64)
void exp_avx512(float* x, int64_t n);
void transpose_avx512(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd);
void widen_avx512(const void* src, DType t, float scale, int64_t n, float* dst);
float exp_row_avx512(float* row, int64_t visible, int64_t n, float* m);
void widen_transpose_avx512(const KvRows& rows, int64_t n, int64_t hd, float* kt, int64_t ldk);
void gemm_kv_rows_avx512(int64_t M, int64_t hd, int64_t n, const float* A, int64_t sam, int64_t sak,
                         const KvRows& rows, float* C, int64_t ldc);
void gemm_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate);
#endif
#if defined(__x86_64__) || defined(_M_X64)
extern const Kernels kAvx2Kernels;
extern const Kernels kAvx512Kernels;
extern const Kernels kAvx512Bf16Kernels;
extern const Kernels kAvx512VnniKernels;
// The VNNI quantized-weight kernels, named so that other tables can take them without
// copying from kAvx512VnniKernels (dynamically initialised: no order across files).
void matmul_quant_avx512vnni(const float* x, int64_t ldx, int64_t T, const uint8_t* data, const uint16_t* scales,
                             int bits, int64_t K, int64_t group, int64_t r0, int64_t r1, float* y, int64_t ldy);
void pack_quant_avx512vnni(const uint8_t* data, const uint16_t* scales, int bits, int64_t rows, int64_t K,
                           int64_t group, uint8_t* data_out, uint16_t* scales_out);
constexpr int64_t kAvx512VnniQuantRows = 16;
extern const DotPeakProbe kBf16DotProbe;
extern const DotPeakProbe kInt8DotProbe;
#endif
#if defined(__aarch64__)
extern const Kernels kNeonKernels;
#endif

}  // namespace ilm::cpu
