// Portable kernels: plain C++ the compiler can vectorise for the build target (SSE2 on any
// x86-64, NEON on aarch64). Several independent accumulators keep the FP adds pipelined.
#include <cmath>
#include <vector>

#include "backend/cpu/kernel_policy.h"
#include "backend/cpu/kernels_impl.h"

namespace ilm::cpu {

namespace {

template <typename Load>
void matmul_rows(const float* x, int64_t ldx, int64_t T, int64_t K, int64_t r0, int64_t r1,
                 float* y, int64_t ldy, Load load_row_elem) {
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t t = 0; t < T; ++t) {
      const float* xt = x + t * ldx;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t k = 0;
      for (; k + 8 <= K; k += 8)
        for (int j = 0; j < 8; ++j) acc[j] += xt[k + j] * load_row_elem(r, k + j);
      for (; k < K; ++k) acc[0] += xt[k] * load_row_elem(r, k);
      y[t * ldy + r] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
  }
}

void matmul_generic(const float* x, int64_t ldx, int64_t T, const void* w, DType wt, int64_t K,
                    int64_t r0, int64_t r1, float* y, int64_t ldy) {
  switch (wt) {
    case DType::BF16: {
      const auto* p = static_cast<const uint16_t*>(w);
      matmul_rows(x, ldx, T, K, r0, r1, y, ldy, [&](int64_t r, int64_t k) { return bf16_to_f32(p[r * K + k]); });
      break;
    }
    case DType::F16: {
      const auto* p = static_cast<const uint16_t*>(w);
      matmul_rows(x, ldx, T, K, r0, r1, y, ldy, [&](int64_t r, int64_t k) { return f16_to_f32(p[r * K + k]); });
      break;
    }
    default: {
      const auto* p = static_cast<const float*>(w);
      matmul_rows(x, ldx, T, K, r0, r1, y, ldy, [&](int64_t r, int64_t k) { return p[r * K + k]; });
      break;
    }
  }
}

void matmul_quant_generic(const float* x, int64_t ldx, int64_t T, const uint8_t* data,
                          const uint16_t* scales, int bits, int64_t K, int64_t group, int64_t r0,
                          int64_t r1, float* y, int64_t ldy) {
  std::vector<float> row(static_cast<size_t>(K));
  const int64_t ng = K / group;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t k = 0; k < K; ++k) {
      int q;
      if (bits == 8) {
        q = static_cast<int8_t>(data[r * K + k]);
      } else {
        const uint8_t b = data[(r * K + k / 32 * 32) / 2 + k % 16];
        q = (k % 32 < 16 ? (b & 0x0f) : (b >> 4)) - 8;
      }
      row[static_cast<size_t>(k)] = static_cast<float>(q) * f16_to_f32(scales[r * ng + k / group]);
    }
    matmul_rows(x, ldx, T, K, 0, 1, y + r, ldy, [&](int64_t, int64_t k) { return row[static_cast<size_t>(k)]; });
  }
}

float dot_generic(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

float read_sum_generic(const float* p, int64_t n) {
  return [&] {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
    for (; i < n; ++i) acc[0] += p[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  }();
}

constexpr int kChains = 8;

float fma_loop_generic(int64_t iters) {
  float acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = static_cast<float>(c) * 1e-3f;
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * 0.999999f + 1e-7f;
  float s = 0;
  for (float a : acc) s += a;
  return s;
}

}  // namespace

void gemm_generic(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                  int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t m = 0; m < M; ++m) {
    float* c = C + m * ldc;
    if (!accumulate)
      for (int64_t n = 0; n < N; ++n) c[n] = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      const float a = A[m * sam + k * sak];
      const float* b = B + k * ldb;
      for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
    }
  }
}

void exp_generic(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] < policy::kExpZeroBelow ? 0.0f : std::exp(x[i]);
}

void transpose_generic(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
}

void widen_generic(const void* src, DType t, float scale, int64_t n, float* dst) {
  switch (t) {
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      break;
    case DType::I8:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(static_cast<const int8_t*>(src)[i]) * scale;
      break;
    default:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<const float*>(src)[i];
      break;
  }
}

const Kernels kGenericKernels = {"generic", Precision::Exact, matmul_generic, matmul_quant_generic, dot_generic,
                                 read_sum_generic, fma_loop_generic, 2 * kChains, nullptr, 0, gemm_generic, exp_generic, transpose_generic, widen_generic, nullptr, nullptr, nullptr};

}  // namespace ilm::cpu
