#include "backend/ref/ref_backend.h"

#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "backend/rope_table.h"
#include "common/error.h"

namespace ilm {

namespace {

// The ref backend uses checkpoint bytes in place (no copy) and converts on the fly.
class MappedWeight final : public Weight {
 public:
  const void* data = nullptr;
  std::vector<float> owned;  // quantized weights, dequantized (the same values every backend uses)
  float at(int64_t r, int64_t c) const { return load_as_f32(data, source_dtype, r * cols + c); }
  void row_to_f32(int64_t r, float* out) const {
    for (int64_t c = 0; c < cols; ++c) out[c] = at(r, c);
  }
};

const MappedWeight& as_mapped(const Weight& w) { return static_cast<const MappedWeight&>(w); }

}  // namespace

RefBackend::RefBackend(int threads) : pool_(threads) {}

std::unique_ptr<Weight> RefBackend::load_weight(const TensorRef& t, const QuantSpec& quant) {
  auto w = std::make_unique<MappedWeight>();
  const void* data = w->init_from(t, name());
  w->data = data;
  if (t.shape.size() == 2 && quantizable(quant, w->cols)) return load_quantized(t.name, quantize(t, quant, pool_));
  return w;
}

std::unique_ptr<Weight> RefBackend::load_quantized(const std::string& name, QuantizedMatrix q) {
  auto w = std::make_unique<MappedWeight>();
  w->name = name;
  w->rows = q.rows;
  w->cols = q.cols;
  w->quant = q.spec;
  w->owned.resize(static_cast<size_t>(q.rows * q.cols));
  for (int64_t r = 0; r < q.rows; ++r) q.dequantize_row(r, w->owned.data() + r * q.cols);
  w->data = w->owned.data();
  w->source_dtype = DType::F32;
  w->bytes = w->owned.size() * sizeof(float);
  return w;
}

void RefBackend::embedding(const Weight& table, std::span<const TokenId> ids, float* out) {
  const auto& w = as_mapped(table);
  check_token_ids(ids, w.rows);
  for (size_t i = 0; i < ids.size(); ++i) {
    w.row_to_f32(ids[i], out + static_cast<int64_t>(i) * w.cols);
  }
}

void RefBackend::matmul(const float* x, int64_t T, const Weight& weight, const Weight* bias,
                        float* y) {
  const auto& w = as_mapped(weight);
  const MappedWeight* b = bias ? &as_mapped(*bias) : nullptr;
  // Each output feature (a row of W) is owned by one thread: results do not depend on the
  // thread count.
  pool_.parallel_for(w.rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      w.row_to_f32(r, row.data());
      for (int64_t t = 0; t < T; ++t) {
        const float* xt = x + t * w.cols;
        double acc = 0.0;
        for (int64_t c = 0; c < w.cols; ++c) acc += static_cast<double>(xt[c]) * row[c];
        if (b) acc += b->at(0, r);
        y[t * w.rows + r] = static_cast<float>(acc);
      }
    }
  });
}

void RefBackend::rmsnorm(const float* x, int64_t T, const Weight& weight, float eps, float* y) {
  const auto& w = as_mapped(weight);
  const int64_t n = w.cols;
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * n;
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xt[i]) * xt[i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
    float* yt = y + t * n;
    for (int64_t i = 0; i < n; ++i) yt[i] = static_cast<float>(w.at(0, i) * (xt[i] * inv));
  }
}

void RefBackend::rope(float* x, int64_t T, int64_t n_heads, int64_t head_dim, int64_t row_stride,
                      std::span<const int64_t> positions, const RopeSpec& spec) {
  const int64_t half = head_dim / 2;
  std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
  for (int64_t t = 0; t < T; ++t) {
    rope_cos_sin(positions[static_cast<size_t>(t)], spec, cos_t.data(), sin_t.data());
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + t * row_stride + h * head_dim;
      for (int64_t d = 0; d < half; ++d) {
        const double a = v[d], b = v[d + half];
        v[d] = static_cast<float>(a * cos_t[d] - b * sin_t[d]);
        v[d + half] = static_cast<float>(b * cos_t[d] + a * sin_t[d]);
      }
    }
  }
}

void RefBackend::attention(const float* q, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                           int64_t head_dim, const KvView& kv, int64_t past, float* out) {
  const int64_t group = n_heads / n_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  pool_.parallel_for(n_heads * T, [&](int64_t i0, int64_t i1) {
    std::vector<double> scores;
    std::vector<double> acc(static_cast<size_t>(head_dim));
    std::vector<float> row(static_cast<size_t>(head_dim));  // a 16-bit / int8 KV row as f32
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t h = i % n_heads, t = i / n_heads;
      const int64_t kvh = h / group;
      const int64_t n_keys = past + t + 1;  // causal: keys 0 .. past+t
      const float* qv = q + (t * n_heads + h) * head_dim;
      scores.assign(static_cast<size_t>(n_keys), 0.0);
      double max_s = -INFINITY;
      for (int64_t j = 0; j < n_keys; ++j) {
        const float* kj = kv_row_f32(kv, kv.k(j), kvh, row.data());
        double s = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) s += static_cast<double>(qv[d]) * kj[d];
        s *= scale;
        scores[j] = s;
        max_s = std::max(max_s, s);
      }
      double denom = 0.0;
      for (auto& s : scores) denom += (s = std::exp(s - max_s));
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < n_keys; ++j) {
        const float* vj = kv_row_f32(kv, kv.v(j), kvh, row.data());
        const double p = scores[j] / denom;
        for (int64_t d = 0; d < head_dim; ++d) acc[d] += p * vj[d];
      }
      float* o = out + t * n_heads * head_dim + h * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) o[d] = static_cast<float>(acc[d]);
    }
  });
}

void RefBackend::silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void RefBackend::add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

std::vector<OperatorInfo> RefBackend::operators() const {
  return {
      {"embedding", "token id -> embedding row"},
      {"matmul", "y = x·Wᵀ (+ b), f64 accumulation"},
      {"rmsnorm", "w ⊙ x / sqrt(mean(x²) + eps)"},
      {"rope", "rotate-half RoPE, f32 angle table, dynamic NTK / linear via RopeSpec"},
      {"attention", "causal GQA softmax attention over the KV cache, f64"},
      {"silu_mul", "silu(gate) ⊙ up"},
      {"add", "residual add"},
  };
}

std::vector<std::string> RefBackend::weight_formats() const { return {"f32", "f16", "bf16", "int8", "int4"}; }

}  // namespace ilm
