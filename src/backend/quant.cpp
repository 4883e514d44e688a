#include "backend/quant.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "common/dtype.h"
#include "common/error.h"
#include "io/mapped_file.h"
#include <cstring>

namespace ilm {

QuantSpec parse_quant(std::string_view s) {
  QuantSpec q;
  std::string_view name = s, group;
  if (auto colon = s.find(':'); colon != std::string_view::npos) {
    name = s.substr(0, colon);
    group = s.substr(colon + 1);
  }
  if (name == "none" || name.empty()) {
    q.format = QuantFormat::None;
  } else if (name == "int8") {
    q.format = QuantFormat::Int8;
  } else if (name == "int4") {
    q.format = QuantFormat::Int4;
  } else {
    throw Error(fmt::format("unknown quantization '{}' (expected none, int8, int4, optionally :GROUP)", s));
  }
  if (!group.empty()) {
    auto [end, ec] = std::from_chars(group.data(), group.data() + group.size(), q.group);
    if (ec != std::errc() || end != group.data() + group.size() || q.group < 32 || q.group % 32 != 0)
      throw Error(fmt::format("quantization group '{}' must be a multiple of 32", group));
  }
  return q;
}

std::string quant_name(const QuantSpec& q) {
  switch (q.format) {
    case QuantFormat::Int8: return fmt::format("int8:{}", q.group);
    case QuantFormat::Int4: return fmt::format("int4:{}", q.group);
    default: return "none";
  }
}

double quant_bytes_per_weight(const QuantSpec& q) {
  const double scale = 2.0 / static_cast<double>(q.group);
  switch (q.format) {
    case QuantFormat::Int8: return 1.0 + scale;
    case QuantFormat::Int4: return 0.5 + scale;
    default: return 2.0;
  }
}

bool quantizable(const QuantSpec& spec, int64_t cols) {
  return spec.format != QuantFormat::None && spec.group % 32 == 0 && cols % spec.group == 0;
}

void QuantizedMatrix::dequantize_row(int64_t r, float* out) const {
  const int64_t G = spec.group, ng = groups_per_row();
  for (int64_t g = 0; g < ng; ++g) {
    const float d = f16_to_f32(scales[static_cast<size_t>(r * ng + g)]);
    for (int64_t k = g * G; k < (g + 1) * G; ++k) {
      int q;
      if (spec.format == QuantFormat::Int8) {
        q = static_cast<int8_t>(data[static_cast<size_t>(r * cols + k)]);
      } else {
        const int64_t block = k / 32, i = k % 32;
        const uint8_t byte = data[static_cast<size_t>((r * cols + block * 32) / 2 + i % 16)];
        q = (i < 16 ? (byte & 0x0f) : (byte >> 4)) - 8;
      }
      out[k] = static_cast<float>(q) * d;
    }
  }
}

std::string qdata_name(const std::string& name) { return name + ".qdata"; }
std::string qscale_name(const std::string& name) { return name + ".qscale"; }

QuantizedMatrix read_quantized(const TensorStore& store, const std::string& name, int64_t rows, int64_t cols,
                               const QuantSpec& spec) {
  if (!quantizable(spec, cols))
    throw Error(fmt::format("{}: tensor '{}' of width {} cannot be stored as {}", store.dir().string(), name, cols,
                            quant_name(spec)));
  const bool int8 = spec.format == QuantFormat::Int8;
  const TensorRef d = store.get(qdata_name(name), {rows, int8 ? cols : cols / 2});
  const TensorRef s = store.get(qscale_name(name), {rows, cols / spec.group});
  if (d.dtype != (int8 ? DType::I8 : DType::U8))
    throw Error(fmt::format("{}: tensor '{}' has dtype {}, expected {}", d.file, d.name, dtype_name(d.dtype),
                            int8 ? "I8" : "U8"));
  if (s.dtype != DType::F16)
    throw Error(fmt::format("{}: tensor '{}' has dtype {}, expected F16", s.file, s.name, dtype_name(s.dtype)));
  QuantizedMatrix m;
  m.spec = spec;
  m.rows = rows;
  m.cols = cols;
  m.data = {reinterpret_cast<const uint8_t*>(d.data), static_cast<size_t>(d.nbytes)};
  if (reinterpret_cast<uintptr_t>(s.data) % alignof(uint16_t) == 0) {
    m.scales = {reinterpret_cast<const uint16_t*>(s.data), static_cast<size_t>(s.nbytes / 2)};
  } else {  // a writer that did not align: copy the (small) scales
    std::vector<uint16_t> sc(static_cast<size_t>(s.nbytes / 2));
    std::memcpy(sc.data(), s.data, s.nbytes);
    m.own(std::vector<uint8_t>(m.data.begin(), m.data.end()), std::move(sc));
  }
  return m;
}

void QuantizedMatrix::own(std::vector<uint8_t> d, std::vector<uint16_t> s) {
  owned_data_ = std::move(d);
  owned_scales_ = std::move(s);
  data = owned_data_;
  scales = owned_scales_;
}

QuantizedMatrix quantize(const TensorRef& t, const QuantSpec& spec, ThreadPool& pool) {
  if (t.shape.size() != 2 || !quantizable(spec, t.shape[1]))
    throw Error(fmt::format("{}: tensor '{}' {} cannot be quantized as {}", t.file, t.name, t.shape_str(),
                            quant_name(spec)));
  QuantizedMatrix m;
  m.spec = spec;
  m.rows = t.shape[0];
  m.cols = t.shape[1];
  const int64_t G = spec.group, ng = m.cols / G;
  std::vector<uint16_t> scales(static_cast<size_t>(m.rows * ng));
  std::vector<uint8_t> data(static_cast<size_t>(spec.format == QuantFormat::Int8 ? m.rows * m.cols : m.rows * m.cols / 2));
  pool.parallel_for(m.rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> w(static_cast<size_t>(G));
    std::vector<int> q(static_cast<size_t>(G));
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t g = 0; g < ng; ++g) {
        for (int64_t k = 0; k < G; ++k)
          w[static_cast<size_t>(k)] = load_as_f32(t.data, t.dtype, static_cast<size_t>(r * m.cols + g * G + k));
        float amax = 0, signed_max = 0;
        for (float v : w)
          if (std::abs(v) > amax) {
            amax = std::abs(v);
            signed_max = v;
          }
        // The stored (f16) scale is the one used to round, so q·d is what every backend sees.
        const float want = spec.format == QuantFormat::Int8 ? amax / 127.0f : signed_max / -8.0f;
        if (!std::isfinite(want) || std::abs(want) > 65504.0f)
          throw Error(fmt::format("{}: tensor '{}' row {}: weight magnitude {} cannot be quantized with an f16 "
                                  "group scale",
                                  t.file, t.name, r, amax));
        const uint16_t dh = f32_to_f16(want);
        const float d = f16_to_f32(dh);
        const float inv = d != 0.0f ? 1.0f / d : 0.0f;
        scales[static_cast<size_t>(r * ng + g)] = dh;
        const int lo = spec.format == QuantFormat::Int8 ? -127 : -8;
        const int hi = spec.format == QuantFormat::Int8 ? 127 : 7;
        for (int64_t k = 0; k < G; ++k)
          q[static_cast<size_t>(k)] = std::clamp(static_cast<int>(std::lrint(w[static_cast<size_t>(k)] * inv)), lo, hi);
        if (spec.format == QuantFormat::Int8) {
          for (int64_t k = 0; k < G; ++k)
            data[static_cast<size_t>(r * m.cols + g * G + k)] = static_cast<uint8_t>(static_cast<int8_t>(q[static_cast<size_t>(k)]));
        } else {
          for (int64_t b = 0; b < G / 32; ++b)
            for (int64_t i = 0; i < 16; ++i) {
              const int lo4 = q[static_cast<size_t>(b * 32 + i)] + 8, hi4 = q[static_cast<size_t>(b * 32 + 16 + i)] + 8;
              data[static_cast<size_t>((r * m.cols + g * G + b * 32) / 2 + i)] = static_cast<uint8_t>(lo4 | (hi4 << 4));
            }
        }
      }
    }
  });
  m.own(std::move(data), std::move(scales));
  return m;
}

}  // namespace ilm
