#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <fmt/format.h>

#include "backend/rope_table.h"
#include "common/error.h"
#include "io/mapped_file.h"

namespace ilm {

namespace {

class InPlaceWeight final : public Weight {
 public:
  const void* data = nullptr;
  QuantizedMatrix q;  // when quant.format != None
};

const InPlaceWeight& in_place(const Weight& w) { return static_cast<const InPlaceWeight&>(w); }

constexpr int64_t kRowBlock = 4;   // rows per work item: matches the kernels' register tile
constexpr int64_t kKeyTile = 64;   // keys per online-softmax step
constexpr int64_t kPrefetchKeys = 8;  // how far ahead attention prefetches K/V rows

}  // namespace

CpuBackend::CpuBackend(int threads, const std::string& requested) : pool_(threads) {
  std::string isa = requested;
  if (const char* env = std::getenv("INTERNLM_CPU_KERNELS"); isa.empty() && env && *env) isa = env;
  if (isa.empty()) {
    k_ = &cpu::best_kernels();
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
  const int64_t blocks = (w.rows + kRowBlock - 1) / kRowBlock;
  pool_.parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    const int64_t r0 = b0 * kRowBlock, r1 = std::min(w.rows, b1 * kRowBlock);
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
  const int64_t G = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // One work item = one query position x one KV head: its G query heads share every K/V
  // row read. Keys are visited in tiles with a running (max, sum) per head.
  pool_.parallel_for(T * n_kv_heads, [&](int64_t i0, int64_t i1) {
    std::vector<float> s(static_cast<size_t>(G * kKeyTile));
    // 16-bit caches: the tile's K and V rows of this KV head, widened once for its G heads.
    std::vector<float> k_tile(static_cast<size_t>(kKeyTile * head_dim)), v_tile(k_tile.size());
    std::vector<const float*> vj(static_cast<size_t>(kKeyTile));
    std::vector<float> m(static_cast<size_t>(G)), l(static_cast<size_t>(G));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / n_kv_heads, g = i % n_kv_heads;
      const int64_t n_keys = past + t + 1;
      const float* qg = q + (t * n_heads + g * G) * head_dim;
      float* og = out + (t * n_heads + g * G) * head_dim;
      std::fill(m.begin(), m.end(), -INFINITY);
      std::fill(l.begin(), l.end(), 0.0f);
      std::fill(og, og + G * head_dim, 0.0f);
      for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyTile) {
        const int64_t nj = std::min(kKeyTile, n_keys - j0);
        // Row addresses advance by a fixed step inside a block: the block lookup (a division)
        // is done once per block, not once per key.
        const std::byte* k_at = nullptr;
        const std::byte* v_at = nullptr;
        const int64_t row_bytes = kv.stride * kv.elem_bytes;
        for (int64_t j = 0; j < nj; ++j) {
          if (j == 0 || (j0 + j) % kv.block_size == 0) {
            k_at = static_cast<const std::byte*>(kv.k(j0 + j));
            v_at = static_cast<const std::byte*>(kv.v(j0 + j));
          } else {
            k_at += row_bytes;
            v_at += row_bytes;
          }
          // This KV head's slice of each row is a few hundred bytes in a row kilobytes long:
          // the hardware prefetcher does not follow it, so ask for rows a few keys ahead.
          if (j0 + j + kPrefetchKeys < n_keys) {
            const auto* kf = static_cast<const char*>(kv.k(j0 + j + kPrefetchKeys)) + g * head_dim * kv.elem_bytes;
            const auto* vf = static_cast<const char*>(kv.v(j0 + j + kPrefetchKeys)) + g * head_dim * kv.elem_bytes;
            for (int64_t c = 0; c < head_dim * kv.elem_bytes; c += 64) {
              __builtin_prefetch(kf + c);
              __builtin_prefetch(vf + c);
            }
          }
          const float* kj = kv_row_f32(k_at, kv.dtype, g * head_dim, head_dim, k_tile.data() + j * head_dim);
          for (int64_t h = 0; h < G; ++h) s[h * kKeyTile + j] = k_->dot(qg + h * head_dim, kj, head_dim) * scale;
          vj[j] = kv_row_f32(v_at, kv.dtype, g * head_dim, head_dim, v_tile.data() + j * head_dim);
        }
        for (int64_t h = 0; h < G; ++h) {
          float* sh = s.data() + h * kKeyTile;
          const float tile_max = *std::max_element(sh, sh + nj);
          const float new_m = std::max(m[h], tile_max);
          float correction = std::exp(m[h] - new_m);  // 0 on the first tile (m = -inf)
          l[h] *= correction;
          m[h] = new_m;
          float* oh = og + h * head_dim;
          for (int64_t j = 0; j < nj; ++j) {
            const float p = std::exp(sh[j] - new_m);
            l[h] += p;
            k_->scale_axpy(oh, correction, p, vj[j], head_dim);
            correction = 1.0f;
          }
        }
      }
      for (int64_t h = 0; h < G; ++h) {
        const float inv = 1.0f / l[h];
        for (int64_t d = 0; d < head_dim; ++d) og[h * head_dim + d] *= inv;
      }
    }
  });
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
      {"matmul", "register-tiled GEMM/GEMV, weights in place, " + isa + ", threaded over rows"},
      {"rmsnorm", "f32, SIMD sum of squares"},
      {"rope", "rotate-half RoPE, f32 angle table, dynamic NTK / linear via RopeSpec"},
      {"attention", "GQA-aware tiled online softmax over the KV cache, " + isa},
      {"silu_mul", "silu(gate) ⊙ up, threaded"},
      {"add", "residual add"},
  };
}

std::vector<std::string> CpuBackend::weight_formats() const { return {"f32", "f16", "bf16", "int8", "int4"}; }

}  // namespace ilm
