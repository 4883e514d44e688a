// Reading and writing KV-cache rows of any cache element type (backend/backend.h).
#include <cstring>

#include "backend/backend.h"
#include "common/error.h"

namespace ilm {

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
    default:
      throw Error("KV cache: unsupported element type");
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
    default:
      throw Error("KV cache: unsupported element type");
  }
}

}  // namespace ilm
