#include "runtime/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "common/error.h"

namespace ilm {
namespace {

using sampling::Candidate;
using sampling::ranks_before;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr double kNegInfD = -std::numeric_limits<double>::infinity();

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// log-softmax over a row of raw logits, in double. NaN counts as probability zero.
class LogSoftmax {
 public:
  explicit LogSoftmax(std::span<const float> logits) {
    for (float v : logits) {
      if (std::isnan(v)) continue;
      max_ = std::max(max_, static_cast<double>(v));
    }
    if (std::isinf(max_)) {
      if (max_ > 0) {
        size_t n_inf = 0;
        for (float v : logits) n_inf += std::isinf(v) && v > 0 ? 1 : 0;
        log_sum_ = std::log(static_cast<double>(n_inf));
      }
      return;
    }
    double sum = 0.0;
    for (float v : logits) {
      if (!std::isnan(v)) sum += std::exp(static_cast<double>(v) - max_);
    }
    log_sum_ = std::log(sum);  // sum >= 1: the maximum contributes exp(0)
  }

  double logprob(float v) const {
    if (std::isnan(v) || (std::isinf(max_) && max_ < 0)) return kNegInfD;
    if (std::isinf(max_)) return std::isinf(v) && v > 0 ? -log_sum_ : kNegInfD;
    return (static_cast<double>(v) - max_) - log_sum_;
  }

 private:
  double max_ = kNegInfD;
  double log_sum_ = 0.0;
};

}  // namespace

void SamplingParams::validate() const {
  auto fail = [](const char* field, double value, const char* allowed) {
    throw Error(fmt::format("invalid sampling parameter {} = {}: must be {}", field, value,
                            allowed));
  };
  if (!(temperature >= 0.0f) || std::isinf(temperature)) {
    fail("temperature", temperature, "a finite number >= 0 (0 = greedy)");
  }
  if (top_k < 0) fail("top_k", top_k, "an integer >= 0 (0 = off)");
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail("top_p", top_p, "in (0, 1] (1 = off)");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) fail("min_p", min_p, "in [0, 1] (0 = off)");
  if (!(repetition_penalty > 0.0f) || std::isinf(repetition_penalty)) {
    fail("repetition_penalty", repetition_penalty, "a finite number > 0 (1 = off)");
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    fail("presence_penalty", presence_penalty, "in [-2, 2] (0 = off)");
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    fail("frequency_penalty", frequency_penalty, "in [-2, 2] (0 = off)");
  }
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0) fail("logit_bias token id", id, "a token id >= 0");
    if (!(bias >= -100.0f && bias <= 100.0f)) fail("logit_bias", bias, "in [-100, 100]");
  }
  if (min_tokens < 0) fail("min_tokens", min_tokens, "an integer >= 0");
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_state_{} {
  params_.validate();
  uint64_t x = params_.seed;
  for (uint64_t& s : rng_state_) s = splitmix64(x);
}

// xoshiro256** (Blackman & Vigna); the top 53 bits make a double in [0, 1).
double Sampler::next_uniform() {
  uint64_t* s = rng_state_;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return static_cast<double>(result >> 11) * 0x1.0p-53;
}

TokenId Sampler::sample(std::span<float> logits, std::span<const TokenId> prompt,
                        std::span<const TokenId> generated, const sampling::TokenMask* mask) {
  using namespace sampling;
  const size_t vocab = logits.size();
  if (vocab == 0) throw Error("sampler: empty logits");
  if (vocab > static_cast<size_t>(std::numeric_limits<TokenId>::max())) {
    throw Error(fmt::format("sampler: vocabulary of {} entries is too large", vocab));
  }
  auto check_ids = [vocab](std::span<const TokenId> ids, const char* what) {
    for (TokenId id : ids) {
      if (id < 0 || static_cast<size_t>(id) >= vocab) {
        throw Error(fmt::format("sampler: {} token id {} is outside the vocabulary [0, {})",
                                what, id, vocab));
      }
    }
  };
  check_ids(prompt, "prompt");
  check_ids(generated, "generated");
  for (const auto& [id, bias] : params_.logit_bias) check_ids(std::span<const TokenId>(&id, 1), "logit_bias");
  check_ids(params_.end_ids, "end");
  check_ids(params_.banned, "banned");
  if (counts_.size() != vocab) counts_.assign(vocab, 0);

  apply_repetition_penalty(logits, prompt, generated, params_.repetition_penalty, counts_);
  apply_presence_frequency(logits, generated, params_.presence_penalty, params_.frequency_penalty, counts_);
  apply_logit_bias(logits, params_.logit_bias);
  // min_tokens holds the end back, except when a grammar allows nothing else.
  if (static_cast<int64_t>(generated.size()) < params_.min_tokens && !(mask && mask->only_end))
    ban(logits, params_.end_ids);
  ban(logits, params_.banned);
  if (mask) {
    check_ids(mask->end_ids, "end");
    apply_mask(logits, *mask);
  }

  if (params_.temperature == 0.0f) return argmax(logits);
  const double u = next_uniform();  // exactly one draw per call, whatever gets filtered
  if (!scale_by_temperature(logits, params_.temperature, candidates_)) return 0;  // all -inf now
  keep_top_k(candidates_, static_cast<size_t>(params_.top_k));
  keep_top_p(candidates_, params_.top_p);
  keep_min_p(candidates_, params_.min_p);
  write_back(candidates_, logits);
  return draw(candidates_, u);
}

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int n) {
  if (n <= 0 || logits.empty()) return {};
  const size_t m = std::min(static_cast<size_t>(n), logits.size());
  std::vector<Candidate> ranked;
  ranked.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    ranked.emplace_back(std::isnan(v) ? kNegInf : v, static_cast<TokenId>(i));
  }
  const auto mid = ranked.begin() + static_cast<std::ptrdiff_t>(m);
  if (m < ranked.size()) std::nth_element(ranked.begin(), mid - 1, ranked.end(), ranks_before);
  std::sort(ranked.begin(), mid, ranks_before);

  const LogSoftmax lsm(logits);
  std::vector<TokenLogprob> out;
  out.reserve(m);
  for (size_t i = 0; i < m; ++i) {
    const TokenId id = ranked[i].second;
    out.push_back({id, static_cast<float>(lsm.logprob(logits[static_cast<size_t>(id)]))});
  }
  return out;
}

float token_logprob(std::span<const float> logits, TokenId id) {
  if (id < 0 || static_cast<size_t>(id) >= logits.size()) {
    throw Error(fmt::format("token_logprob: token id {} is outside the vocabulary [0, {})", id,
                            logits.size()));
  }
  return static_cast<float>(LogSoftmax(logits).logprob(logits[static_cast<size_t>(id)]));
}

TokenId argmax(std::span<const float> logits) {
  if (logits.empty()) throw Error("argmax: empty logits");
  size_t best = 0;
  bool found = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    if (std::isnan(v)) continue;
    if (!found || v > logits[best]) {
      best = i;
      found = true;
    }
  }
  return static_cast<TokenId>(best);  // all NaN: 0
}

void require_finite_logits(std::span<const float> logits) {
  for (size_t i = 0; i < logits.size(); ++i)
    if (!std::isfinite(logits[i]))
      throw Error(fmt::format("the model produced a non-finite logit ({}) for token {}: the checkpoint or its config "
                              "is broken",
                              logits[i], i));
}

}  // namespace ilm
