#include "perf/quant_quality.h"

#include <algorithm>
#include <cmath>

#include "runtime/loaded_model.h"
#include "runtime/sampler.h"

namespace ilm {

namespace {

std::vector<std::vector<float>> all_logits(const std::filesystem::path& dir, const std::string& backend,
                                           const QuantSpec& q, int threads, int64_t& vocab) {
  LoadedModel m = LoadedModel::load(dir, {backend, threads, q});
  vocab = m.config.vocab_size;
  std::vector<std::vector<float>> out;
  for (const auto& p : quality_prompts()) {
    const auto ids = m.tokenizer->encode(p);
    KvCache cache = m.lm->new_cache(static_cast<int64_t>(ids.size()));
    out.emplace_back(ids.size() * static_cast<size_t>(m.config.vocab_size));
    m.lm->forward(ids, cache, out.back(), true);
  }
  return out;
}

// KL(p ‖ q) of the softmaxes of two logit rows, in double.
double kl(const float* a, const float* b, int64_t n) {
  const double ma = *std::max_element(a, a + n), mb = *std::max_element(b, b + n);
  double za = 0, zb = 0;
  for (int64_t i = 0; i < n; ++i) {
    za += std::exp(a[i] - ma);
    zb += std::exp(b[i] - mb);
  }
  const double la = std::log(za) + ma, lb = std::log(zb) + mb;
  double k = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double lpa = a[i] - la, lpb = b[i] - lb;
    k += std::exp(lpa) * (lpa - lpb);
  }
  return std::max(0.0, k);
}

}  // namespace

const std::vector<std::string>& quality_prompts() {
  static const std::vector<std::string> prompts = {
      "<|im_start|>user\n你好,请介绍一下你自己<|im_end|>\n<|im_start|>assistant\n",
      "The quick brown fox jumps over the lazy dog. In 1905, Einstein published four papers that",
      "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
      "上海是中国的经济中心之一, with a population of about 24 million people 🌆. 问题: 2 + 3 × 4 = ?",
  };
  return prompts;
}

std::vector<QuantQuality> measure_quant_quality(const std::filesystem::path& dir, const std::string& backend,
                                                const std::vector<QuantSpec>& formats, int threads) {
  int64_t V = 0;
  const auto base = all_logits(dir, backend, {}, threads, V);
  std::vector<QuantQuality> out;
  for (const auto& f : formats) {
    const auto ql = all_logits(dir, backend, f, threads, V);
    QuantQuality r;
    r.format = quant_name(f);
    int64_t agree = 0;
    double sum = 0;
    for (size_t p = 0; p < base.size(); ++p) {
      const int64_t rows = static_cast<int64_t>(base[p].size()) / V;
      for (int64_t t = 0; t < rows; ++t) {
        const float* a = base[p].data() + t * V;
        const float* b = ql[p].data() + t * V;
        const double k = kl(a, b, V);
        sum += k;
        r.max_kl = std::max(r.max_kl, k);
        agree += argmax({a, static_cast<size_t>(V)}) == argmax({b, static_cast<size_t>(V)});
        ++r.positions;
      }
    }
    r.mean_kl = sum / static_cast<double>(std::max<int64_t>(1, r.positions));
    r.top1_agreement = static_cast<double>(agree) / static_cast<double>(std::max<int64_t>(1, r.positions));
    out.push_back(r);
  }
  return out;
}

}  // namespace ilm
