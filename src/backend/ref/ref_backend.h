#pragma once
// "ref": the f32 oracle. Every operator is the textbook formula with float64 accumulation;
// it favours being obviously correct over being fast. Fast backends are tested against it.
#include <memory>

#include "backend/backend.h"
#include "common/thread_pool.h"

namespace ilm {

class RefBackend final : public Backend {
 public:
  explicit RefBackend(int threads = 0);

  std::string_view name() const override { return "ref"; }
  int threads() const override { return pool_.size(); }
  std::unique_ptr<Weight> load_weight(const TensorRef& t, const QuantSpec& quant = {}) override;
  std::unique_ptr<Weight> load_quantized(const std::string& name, QuantizedMatrix q) override;
  void embedding(const Weight& table, std::span<const TokenId> ids, float* out) override;
  void matmul(const float* x, int64_t T, const Weight& w, const Weight* bias, float* y) override;
  void rmsnorm(const float* x, int64_t T, const Weight& w, float eps, float* y) override;
  void rope(float* x, int64_t T, int64_t n_heads, int64_t head_dim, int64_t row_stride,
            std::span<const int64_t> positions, const RopeSpec& spec) override;
  void attention(const float* q, int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                 const KvView& kv, int64_t past, float* out) override;
  void silu_mul(const float* gate, const float* up, int64_t n, float* out) override;
  void add(float* x, const float* y, int64_t n) override;
  std::vector<OperatorInfo> operators() const override;
  std::vector<std::string> weight_formats() const override;

 private:
  ThreadPool pool_;
};

}  // namespace ilm
