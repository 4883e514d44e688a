#include "model/tp_shard.h"

#include <cstring>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm {

int64_t TpShard::vocab_rows(int r) const { return vocab * (r + 1) / size - vocab * r / size; }

TpShard TpShard::of(const ModelConfig& cfg, int rank, int size, const QuantSpec& quant) {
  TpShard s;
  s.rank = rank;
  s.size = size;
  if (size < 1 || rank < 0 || rank >= size) throw Error(fmt::format("tensor parallel rank {} of {}", rank, size));
  if (cfg.num_kv_heads % size != 0)
    throw Error(fmt::format("--tp {} must divide the number of KV heads ({}, config.json num_key_value_heads)", size,
                            cfg.num_kv_heads));
  if (cfg.intermediate_size % size != 0)
    throw Error(fmt::format("--tp {} must divide intermediate_size ({})", size, cfg.intermediate_size));
  const int64_t nkv = cfg.num_kv_heads / size, ffn = cfg.intermediate_size / size;
  s.kv_begin = rank * nkv;
  s.kv_end = s.kv_begin + nkv;
  s.ffn_begin = rank * ffn;
  s.ffn_end = s.ffn_begin + ffn;
  s.vocab = cfg.vocab_size;
  s.vocab_begin = cfg.vocab_size * rank / size;
  s.vocab_end = cfg.vocab_size * (rank + 1) / size;
  // wo's and w2's column slices must hold whole quantization groups.
  const QuantSpec& q = cfg.stored_quant.format != QuantFormat::None ? cfg.stored_quant : quant;
  if (size > 1 && q.format != QuantFormat::None) {
    const int64_t wo_cols = nkv * (cfg.num_heads / cfg.num_kv_heads) * cfg.head_dim;
    if (wo_cols % q.group != 0 || ffn % q.group != 0)
      throw Error(fmt::format("--tp {} with {}: a rank's slice of wo ({} columns) or w2 ({} columns) is not a whole "
                              "number of quantization groups",
                              size, quant_name(q), wo_cols, ffn));
  }
  return s;
}

TensorRef slice_rows(const TensorRef& t, int64_t r0, int64_t r1) {
  const int64_t rows = t.shape.empty() ? 0 : t.shape[0];
  if (r0 < 0 || r1 < r0 || r1 > rows)
    throw Error(fmt::format("{}: tensor '{}' {}: rows [{}, {}) out of range", t.file, t.name, t.shape_str(), r0, r1));
  const uint64_t row_bytes = rows == 0 ? 0 : t.nbytes / static_cast<uint64_t>(rows);
  TensorRef s = t;
  s.shape[0] = r1 - r0;
  s.data = t.data + static_cast<uint64_t>(r0) * row_bytes;
  s.nbytes = static_cast<uint64_t>(r1 - r0) * row_bytes;
  return s;
}

std::unique_ptr<OwnedTensor> slice_columns(const TensorRef& t, int64_t c0, int64_t c1) {
  if (t.shape.size() != 2 || c0 < 0 || c1 < c0 || c1 > t.shape[1])
    throw Error(fmt::format("{}: tensor '{}' {}: columns [{}, {}) out of range", t.file, t.name, t.shape_str(), c0,
                            c1));
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const uint64_t elem = t.nbytes / static_cast<uint64_t>(rows * cols);
  auto out = std::make_unique<OwnedTensor>();
  const uint64_t width = static_cast<uint64_t>(c1 - c0) * elem;
  out->bytes.resize(static_cast<size_t>(width * static_cast<uint64_t>(rows)));
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out->bytes.data() + static_cast<uint64_t>(r) * width,
                t.data + (static_cast<uint64_t>(r * cols + c0)) * elem, width);
  out->ref = t;
  out->ref.shape = {rows, c1 - c0};
  out->ref.data = out->bytes.data();
  out->ref.nbytes = out->bytes.size();
  return out;
}

QuantizedMatrix slice_quantized(const QuantizedMatrix& q, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const int64_t G = q.spec.group;
  if (r0 < 0 || r1 < r0 || r1 > q.rows || c0 < 0 || c1 < c0 || c1 > q.cols || c0 % G != 0 || c1 % G != 0)
    throw Error(fmt::format("quantized matrix [{}, {}]: slice rows [{}, {}) columns [{}, {}) is out of range or "
                            "splits a group of {}",
                            q.rows, q.cols, r0, r1, c0, c1, G));
  const bool int8 = q.spec.format == QuantFormat::Int8;
  const int64_t row_bytes = int8 ? q.cols : q.cols / 2, ng = q.groups_per_row();
  const int64_t b0 = int8 ? c0 : c0 / 2, width = int8 ? c1 - c0 : (c1 - c0) / 2;
  const int64_t g0 = c0 / G, gw = (c1 - c0) / G;
  std::vector<uint8_t> data(static_cast<size_t>((r1 - r0) * width));
  std::vector<uint16_t> scales(static_cast<size_t>((r1 - r0) * gw));
  for (int64_t r = r0; r < r1; ++r) {
    std::memcpy(data.data() + (r - r0) * width, q.data.data() + r * row_bytes + b0, static_cast<size_t>(width));
    std::memcpy(scales.data() + (r - r0) * gw, q.scales.data() + r * ng + g0, static_cast<size_t>(gw) * 2);
  }
  QuantizedMatrix s;
  s.spec = q.spec;
  s.rows = r1 - r0;
  s.cols = c1 - c0;
  s.own(std::move(data), std::move(scales));
  return s;
}

}  // namespace ilm
