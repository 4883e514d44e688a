// Reading and writing KV-cache rows of any cache element type (backend/backend.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "backend/backend.h"
#include "common/error.h"

namespace ilm {

namespace {

[[noreturn]] void unsupported(DType t) {
  throw Error(fmt::format("KV cache: unsupported element type {}", dtype_name(t)));
}

// An I8 row: stride int8 values, then one f32 scale per KV head (read and written with memcpy:
// a row of an odd width leaves the scales unaligned).
float head_scale(const KvView& kv, const void* row, int64_t head) {
  float s;
  std::memcpy(&s, static_cast<const std::byte*>(row) + kv.stride + head * 4, sizeof s);
  return s;
}

// Symmetric int8 of one KV head's slice: scale = max|v| / 127, q = round(v / scale).
float quantize_head(const float* v, int64_t n, int8_t* q) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::abs(v[i]));  // NaN is skipped
  const float s = amax / 127.0f;
  if (!(s > 0.0f) || !std::isfinite(s)) {  // all zero (or nothing finite to scale by)
    std::fill(q, q + n, int8_t{0});
    return 0.0f;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float r = std::nearbyint(v[i] / s);  // round half to even
    q[i] = std::isnan(r) ? int8_t{0} : static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
  }
  return s;
}

}  // namespace

int64_t kv_row_bytes(int64_t n_kv_heads, int64_t head_dim, DType t) {
  const int64_t values = n_kv_heads * head_dim;
  switch (t) {
    case DType::F32:
    case DType::BF16:
    case DType::F16:
      return values * static_cast<int64_t>(dtype_size(t));
    case DType::I8:
      return values + n_kv_heads * static_cast<int64_t>(sizeof(float));
    default:
      unsupported(t);
  }
}

const float* kv_row_f32(const KvView& kv, const void* row, int64_t head, float* scratch) {
  if (kv.dtype != DType::I8) return kv_row_f32(row, kv.dtype, head * kv.head_dim, kv.head_dim, scratch);
  const auto* q = static_cast<const int8_t*>(row) + head * kv.head_dim;
  const float s = head_scale(kv, row, head);
  for (int64_t i = 0; i < kv.head_dim; ++i) scratch[i] = static_cast<float>(q[i]) * s;
  return scratch;
}

float kv_row_scale(const KvView& kv, const void* row, int64_t head) {
  return kv.dtype == DType::I8 ? head_scale(kv, row, head) : 1.0f;
}

void kv_row_store(const KvView& kv, void* row, const float* src) {
  if (kv.dtype != DType::I8) return kv_row_store(row, kv.dtype, src, kv.stride);
  auto* q = static_cast<int8_t*>(row);
  for (int64_t h = 0; h * kv.head_dim < kv.stride; ++h) {
    const float s = quantize_head(src + h * kv.head_dim, kv.head_dim, q + h * kv.head_dim);
    std::memcpy(static_cast<std::byte*>(row) + kv.stride + h * 4, &s, sizeof s);
  }
}

const float* kv_row_f32(const void* row, DType t, int64_t first, int64_t n, float* scratch) {
  switch (t) {
    case DType::F32:
      return static_cast<const float*>(row) + first;
    case DType::BF16: {
      const auto* h = static_cast<const uint16_t*>(row) + first;
      for (int64_t i = 0; i < n; ++i) scratch[i] = bf16_to_f32(h[i]);
      return scratch;
    }
    case DType::F16: {
      const auto* h = static_cast<const uint16_t*>(row) + first;
      for (int64_t i = 0; i < n; ++i) scratch[i] = f16_to_f32(h[i]);
      return scratch;
    }
    default:  // I8 rows need the view (head_dim, where the scales are)
      unsupported(t);
  }
}

void kv_row_store(void* row, DType t, const float* src, int64_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(row, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::BF16: {
      auto* h = static_cast<uint16_t*>(row);
      for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      auto* h = static_cast<uint16_t*>(row);
      for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(src[i]);
      return;
    }
    default:  // I8 rows need the view (head_dim, where the scales are)
      unsupported(t);
  }
}

}  // namespace ilm
