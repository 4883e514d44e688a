#pragma once
// "cpu": the fast CPU backend. Weights are used in place from the mapped checkpoint
// (bf16 / f16 / f32); matmuls run SIMD kernels chosen at run time (kernels.h) over a
// persistent thread pool; attention is GQA-aware (each KV head read once for its G query
// heads) with a tiled online softmax, so its memory stays flat as the context grows.
#include <string>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "common/thread_pool.h"

namespace ilm {

class CpuBackend final : public Backend {
 public:
  // isa: "" picks $INTERNLM_CPU_KERNELS if set, else the best kernels of `precision` this CPU
  // supports; "avx512bf16" / "avx512vnni" / "avx512" / "avx2" / "neon" / "generic" forces one
  // (ilm::Error if the CPU lacks it).
  explicit CpuBackend(int threads = 0, Precision precision = Precision::Fast, const std::string& isa = "");

  std::string_view name() const override { return "cpu"; }
  int threads() const override { return pool_.size(); }
  std::string_view isa() const { return k_->isa; }
  Precision precision() const override { return k_->precision; }
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
  QuantizedMatrix pack_quantized(const QuantizedMatrix& q);

  ThreadPool pool_;
  const cpu::Kernels* k_;
};

}  // namespace ilm
