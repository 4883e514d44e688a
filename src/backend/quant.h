#pragma once
// Weight-only quantization, group-wise along each row (the input dimension), shared by every
// backend so that they all see the same quantized numbers:
//   int8: q = round(w / d), d = max|w| / 127 over the group          (like llama.cpp Q8_0)
//   int4: q = clamp(round(w / d), -8, 7), d = w_maxabs_signed / -8     (like llama.cpp Q4_0)
// w ≈ q · d, with d stored as f16 (one per group). Groups are 32 or a multiple of 32 weights;
// int4 packs each 32-weight block into 16 bytes: byte i = (q[i] + 8) | (q[i + 16] + 8) << 4.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/thread_pool.h"
#include "io/tensor_store.h"

namespace ilm {

enum class QuantFormat { None, Int8, Int4 };

struct QuantSpec {
  QuantFormat format = QuantFormat::None;
  int64_t group = 32;
};

// "none" / "int8" / "int4" (with an optional ":GROUP", e.g. "int4:128"); throws ilm::Error.
QuantSpec parse_quant(std::string_view s);
std::string quant_name(const QuantSpec& q);  // "int4:32"
// Bytes per weight (data + scales) of a format.
double quant_bytes_per_weight(const QuantSpec& q);

// The bytes are either owned (quantized at load time) or a view into a checkpoint's mapping
// (stored quantized): used in place like any other weight. Move-only, since the views may
// point into the owned buffers.
struct QuantizedMatrix {
  QuantSpec spec;
  int64_t rows = 0, cols = 0;
  std::span<const uint8_t> data;     // int8: rows*cols int8 values; int4: rows*cols/2 packed bytes
  std::span<const uint16_t> scales;  // f16, rows * cols / group

  QuantizedMatrix() = default;
  QuantizedMatrix(QuantizedMatrix&&) noexcept = default;
  QuantizedMatrix& operator=(QuantizedMatrix&&) noexcept = default;
  QuantizedMatrix(const QuantizedMatrix&) = delete;
  QuantizedMatrix& operator=(const QuantizedMatrix&) = delete;

  // Takes ownership of freshly quantized bytes and points the views at them.
  void own(std::vector<uint8_t> d, std::vector<uint16_t> s);
  uint64_t bytes() const { return data.size() + scales.size_bytes(); }
  int64_t groups_per_row() const { return cols / spec.group; }
  // Dequantized row r, as every backend must interpret it.
  void dequantize_row(int64_t r, float* out) const;

 private:
  std::vector<uint8_t> owned_data_;
  std::vector<uint16_t> owned_scales_;
};

// True if a [rows, cols] weight can be stored in `spec` (cols divisible by the group, group a
// multiple of 32).
bool quantizable(const QuantSpec& spec, int64_t cols);

// Quantizes a 2-D F32/F16/BF16 tensor (rows split over the pool's threads).
QuantizedMatrix quantize(const TensorRef& t, const QuantSpec& spec, ThreadPool& pool);

// How a quantized matrix `name` is stored in a checkpoint written by `internlm quantize`:
// "<name>.qdata" (I8 [rows, cols] for int8, U8 [rows, cols / 2] for int4) and "<name>.qscale"
// (F16 [rows, cols / group]).
std::string qdata_name(const std::string& name);
std::string qscale_name(const std::string& name);
// A stored quantized matrix, checked against [rows, cols] and `spec` (dtypes, shapes; errors
// name the tensor and file), viewed in place in the mapping (copied only if misaligned).
QuantizedMatrix read_quantized(const TensorStore& store, const std::string& name, int64_t rows, int64_t cols,
                               const QuantSpec& spec);

}  // namespace ilm
