#include "validate/fault_inject.h"

#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm::validate {

namespace {

const char* const kOps[] = {"embedding", "matmul", "rmsnorm", "rope", "attention", "silu_mul", "add"};

class FaultyBackend final : public Backend {
 public:
  FaultyBackend(std::unique_ptr<Backend> inner, FaultSpec f) : inner_(std::move(inner)), f_(std::move(f)) {}
  std::string_view name() const override { return inner_->name(); }
  int threads() const override { return inner_->threads(); }
  std::unique_ptr<Weight> load_weight(const TensorRef& t, const QuantSpec& quant) override {
    return inner_->load_weight(t, quant);
  }
  std::unique_ptr<Weight> load_quantized(const std::string& n, QuantizedMatrix q) override {
    return inner_->load_quantized(n, std::move(q));
  }
  void embedding(const Weight& table, std::span<const TokenId> ids, float* out) override {
    inner_->embedding(table, ids, out);
    perturb("embedding", out, static_cast<int64_t>(ids.size()) * table.cols);
  }
  void matmul(const float* x, int64_t T, const Weight& w, const Weight* bias, float* y) override {
    inner_->matmul(x, T, w, bias, y);
    perturb("matmul", y, T * w.rows);
  }
  void rmsnorm(const float* x, int64_t T, const Weight& w, float eps, float* y) override {
    inner_->rmsnorm(x, T, w, eps, y);
    perturb("rmsnorm", y, T * w.cols);
  }
  void rope(float* x, int64_t T, int64_t n_heads, int64_t head_dim, int64_t row_stride,
            std::span<const int64_t> positions, const RopeSpec& spec) override {
    inner_->rope(x, T, n_heads, head_dim, row_stride, positions, spec);
    if (f_.op == "rope")
      for (int64_t t = 0; t < T; ++t) perturb("rope", x + t * row_stride, n_heads * head_dim);
  }
  void attention(const float* q, int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                 const KvView& kv, int64_t past, float* out) override {
    inner_->attention(q, T, n_heads, n_kv_heads, head_dim, kv, past, out);
    perturb("attention", out, T * n_heads * head_dim);
  }
  void silu_mul(const float* gate, const float* up, int64_t n, float* out) override {
    inner_->silu_mul(gate, up, n, out);
    perturb("silu_mul", out, n);
  }
  void add(float* x, const float* y, int64_t n) override {
    inner_->add(x, y, n);
    perturb("add", x, n);
  }
  std::vector<OperatorInfo> operators() const override {
    auto ops = inner_->operators();
    for (auto& op : ops)
      if (op.name == f_.op) op.description += fmt::format(" [fault injected: {}]", f_.str());
    return ops;
  }
  std::vector<std::string> weight_formats() const override { return inner_->weight_formats(); }

 private:
  std::unique_ptr<Backend> inner_;
  FaultSpec f_;

  // y[i] += ±rel · max|y|, the sign from a hash of i: an error of exactly `rel` relative to the
  // output's peak, spread over every element.
  void perturb(std::string_view op, float* y, int64_t n) const {
    if (op != f_.op || n <= 0) return;
    float peak = 0;
    for (int64_t i = 0; i < n; ++i) peak = std::max(peak, std::fabs(y[i]));
    const float d = static_cast<float>(f_.rel) * peak;
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t h = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
      y[i] += (h >> 63) ? d : -d;
    }
  }
};

}  // namespace

std::string FaultSpec::str() const { return fmt::format("{}:{}", op, rel); }

FaultSpec parse_fault(std::string_view s) {
  const auto colon = s.find(':');
  if (colon == std::string_view::npos)
    throw Error(fmt::format("INTERNLM_FAULT_INJECT '{}': expected OP:REL, e.g. matmul:1e-2", s));
  FaultSpec f;
  f.op = std::string(s.substr(0, colon));
  bool known = false;
  for (const char* op : kOps) known = known || f.op == op;
  if (!known)
    throw Error(fmt::format("INTERNLM_FAULT_INJECT '{}': unknown operator '{}' (one of {})", s, f.op,
                            fmt::join(std::begin(kOps), std::end(kOps), ", ")));
  const std::string num(s.substr(colon + 1));
  char* end = nullptr;
  f.rel = std::strtod(num.c_str(), &end);
  if (num.empty() || end != num.c_str() + num.size() || !(f.rel > 0) || !std::isfinite(f.rel))
    throw Error(fmt::format("INTERNLM_FAULT_INJECT '{}': '{}' is not a positive number", s, num));
  return f;
}

std::optional<FaultSpec> fault_from_env() {
  const char* e = std::getenv("INTERNLM_FAULT_INJECT");
  if (!e || !*e) return std::nullopt;
  return parse_fault(e);
}

std::unique_ptr<Backend> make_faulty_backend(std::unique_ptr<Backend> inner, const FaultSpec& fault) {
  return std::make_unique<FaultyBackend>(std::move(inner), fault);
}

}  // namespace ilm::validate
