#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/attention.h"
#include "backend/rope_table.h"
#include "common/error.h"
#include "io/mapped_file.h"

namespace ilm {

namespace {

class InPlaceWeight final : public Weight {
 public:
  const void* data = nullptr;
  QuantizedMatrix q;  // when quant.format != None
  std::vector<std::span<const std::byte>> memory() const override {
    if (quant.format == QuantFormat::None) return {{static_cast<const std::byte*>(data), bytes}};
    return {std::as_bytes(q.data), std::as_bytes(q.scales)};
  }
};

const InPlaceWeight& in_place(const Weight& w) { return static_cast<const InPlaceWeight&>(w); }

constexpr int64_t kRowBlock = 4;   // rows per work item: matches the kernels' register tile

}  // namespace

CpuBackend::CpuBackend(int threads, Precision precision, const std::string& requested) : pool_(threads) {
  std::string isa = requested;
  if (const char* env = std::getenv("INTERNLM_CPU_KERNELS"); isa.empty() && env && *env) isa = env;
  if (isa.empty()) {
    k_ = &cpu::best_kernels(precision);
  } else {
    k_ = cpu::kernels_for(isa);
    if (!k_)
      throw Error(fmt::format("cpu backend: kernel set '{}' is unknown or not supported on this CPU "
                              "(available: {}{})",
                              isa, fmt::join(cpu::supported_isas(), ", "),
                              cpu::kernels_for("avx512bf16") ? ", avx512bf16" : ""));
  }
}

std::unique_ptr<Weight> CpuBackend::load_weight(const TensorRef& t, const QuantSpec& quant) {
  auto w = std::make_unique<InPlaceWeight>();
  const void* data = w->init_from(t, name());
  w->data = data;
  if (t.shape.size() == 2 && quantizable(quant, w->cols)) {
    auto qw = load_quantized(t.name, quantize(t, quant, pool_));
    release_mapped_pages(t.data, t.nbytes);  // keep only the quantized copy resident
    return qw;
  }
  return w;
}

std::unique_ptr<Weight> CpuBackend::load_quantized(const std::string& name, QuantizedMatrix q) {
  if (k_->pack_quant) q = pack_quantized(q);
  auto w = std::make_unique<InPlaceWeight>();
  w->name = name;
  w->rows = q.rows;
  w->cols = q.cols;
  w->source_dtype = DType::BF16;  // informational: the checkpoint's float type before quantization
  w->quant = q.spec;
  w->bytes = q.bytes();
  w->q = std::move(q);
  return w;
}

// The kernels' own layout of a quantized matrix (same numbers, reordered), made in parallel
// over row blocks; the source's mapped pages (a stored quantized checkpoint) are released.
QuantizedMatrix CpuBackend::pack_quantized(const QuantizedMatrix& q) {
  const int64_t R = k_->quant_rows, K = q.cols, ng = q.groups_per_row();
  const int bits = q.spec.format == QuantFormat::Int8 ? 8 : 4;
  const int64_t row_bytes = bits == 8 ? K : K / 2;
  const int64_t blocks = (q.rows + R - 1) / R;
  std::vector<uint8_t> data(static_cast<size_t>(blocks * R * row_bytes));
  std::vector<uint16_t> scales(static_cast<size_t>(blocks * R * ng));
  pool_.parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    const int64_t r0 = b0 * R, rows = std::min(q.rows, b1 * R) - r0;
    k_->pack_quant(q.data.data() + r0 * row_bytes, q.scales.data() + r0 * ng, bits, rows, K, q.spec.group,
                   data.data() + r0 * row_bytes, scales.data() + r0 * ng);
  });
  release_mapped_pages(q.data.data(), q.data.size());
  release_mapped_pages(q.scales.data(), q.scales.size_bytes());
  collapse_to_huge_pages(data.data(), data.size());  // decode streams these: 2 MiB TLB entries
  QuantizedMatrix packed;
  packed.spec = q.spec;
  packed.rows = q.rows;
  packed.cols = q.cols;
  packed.own(std::move(data), std::move(scales));
  return packed;
}

void CpuBackend::embedding(const Weight& table, std::span<const TokenId> ids, float* out) {
  const auto& w = in_place(table);
  check_token_ids(ids, w.rows);
  for (size_t i = 0; i < ids.size(); ++i) {
    float* o = out + static_cast<int64_t>(i) * w.cols;
    for (int64_t c = 0; c < w.cols; ++c)
      o[c] = load_as_f32(w.data, w.source_dtype, static_cast<size_t>(ids[i] * w.cols + c));
  }
}

void CpuBackend::matmul(const float* x, int64_t T, const Weight& weight, const Weight* bias, float* y) {
  const auto& w = in_place(weight);
  // Packed quantized weights are split in the kernels' row blocks.
  const int64_t rb = w.quant.format != QuantFormat::None && k_->pack_quant ? k_->quant_rows : kRowBlock;
  const int64_t blocks = (w.rows + rb - 1) / rb;
  pool_.parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    const int64_t r0 = b0 * rb, r1 = std::min(w.rows, b1 * rb);  // packed kernels need r0 % rb == 0
    if (w.quant.format == QuantFormat::None)
      k_->matmul(x, w.cols, T, w.data, w.source_dtype, w.cols, r0, r1, y, w.rows);
    else
      k_->matmul_quant(x, w.cols, T, w.q.data.data(), w.q.scales.data(),
                       w.quant.format == QuantFormat::Int8 ? 8 : 4, w.cols, w.quant.group, r0, r1, y, w.rows);
    if (bias) {
      const auto& b = in_place(*bias);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t r = r0; r < r1; ++r)
          y[t * w.rows + r] += load_as_f32(b.data, b.source_dtype, static_cast<size_t>(r));
    }
  });
}

void CpuBackend::rmsnorm(const float* x, int64_t T, const Weight& weight, float eps, float* y) {
  const auto& w = in_place(weight);
  const int64_t n = w.cols;
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * n;
    const float inv = 1.0f / std::sqrt(k_->dot(xt, xt, n) / static_cast<float>(n) + eps);
    float* yt = y + t * n;
    for (int64_t i = 0; i < n; ++i)
      yt[i] = load_as_f32(w.data, w.source_dtype, static_cast<size_t>(i)) * (xt[i] * inv);
  }
}

void CpuBackend::rope(float* x, int64_t T, int64_t n_heads, int64_t head_dim, int64_t row_stride,
                      std::span<const int64_t> positions, const RopeSpec& spec) {
  const int64_t half = head_dim / 2;
  std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
  for (int64_t t = 0; t < T; ++t) {
    rope_cos_sin(positions[static_cast<size_t>(t)], spec, cos_t.data(), sin_t.data());
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + t * row_stride + h * head_dim;
      for (int64_t d = 0; d < half; ++d) {
        const float a = v[d], b = v[d + half];
        v[d] = a * cos_t[d] - b * sin_t[d];
        v[d + half] = b * cos_t[d] + a * sin_t[d];
      }
    }
  }
}

void CpuBackend::attention(const float* q, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                           int64_t head_dim, const KvView& kv, int64_t past, float* out) {
  cpu::attention(*k_, pool_, q, T, n_heads, n_kv_heads, head_dim, kv, past, out);
}

void CpuBackend::silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  pool_.parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  });
}

void CpuBackend::add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

std::vector<OperatorInfo> CpuBackend::operators() const {
  const std::string isa(k_->isa);
  return {
      {"embedding", "token id -> embedding row (bf16/f16/f32 widened)"},
      {"matmul", "register-tiled GEMM/GEMV, " + isa + ", threaded over rows; bf16/f16/f32 in place, int8/int4 repacked for vpdpbusd where VNNI runs"},
      {"rmsnorm", "f32, SIMD sum of squares"},
      {"rope", "rotate-half RoPE, f32 angle table, dynamic NTK / linear via RopeSpec"},
      {"attention", "GQA-aware, 32 positions x 64 keys GEMM tiles, online softmax over the paged KV cache (f32/bf16/f16/int8), " + isa},
      {"silu_mul", "silu(gate) ⊙ up, threaded"},
      {"add", "residual add"},
  };
}

std::vector<std::string> CpuBackend::weight_formats() const { return {"f32", "f16", "bf16", "int8", "int4"}; }

}  // namespace ilm
