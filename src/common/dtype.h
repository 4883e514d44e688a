#pragma once
// Element types found in checkpoints, and exact conversions between the 16-bit floats and f32.
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace ilm {

enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

// Bytes per element.
size_t dtype_size(DType t);
// The safetensors spelling ("F32", "BF16", ...).
std::string_view dtype_name(DType t);
// Parses a safetensors dtype string; nullopt for anything unknown.
std::optional<DType> parse_dtype(std::string_view s);
// True for the float types the model can compute with (F32, F16, BF16).
bool is_weight_dtype(DType t);

inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// Round to nearest even, NaN kept quiet (same as PyTorch's conversion).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Reads element i of a tensor stored as `t` (F32, F16 or BF16) as f32.
inline float load_as_f32(const void* data, DType t, size_t i) {
  switch (t) {
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(data) + 2 * i, 2);
      return bf16_to_f32(h);
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(data) + 2 * i, 2);
      return f16_to_f32(h);
    }
    default: {
      float f;
      std::memcpy(&f, static_cast<const char*>(data) + 4 * i, 4);
      return f;
    }
  }
}

}  // namespace ilm
