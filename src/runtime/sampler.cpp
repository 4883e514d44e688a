#include "runtime/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>

#include "common/error.h"

namespace ilm {
namespace {

using Candidate = std::pair<float, TokenId>;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr double kNegInfD = -std::numeric_limits<double>::infinity();

// Up to this top_k the k-th largest score comes from a min-heap, beyond it from nth_element.
constexpr size_t kHeapTopK = 4096;
// Top-p's mass histogram: bins of 1/8 logit below the best score, 32 logits deep (e^-32 of
// the best token's probability); everything further down shares the last bin.
constexpr size_t kMassBins = 256;
constexpr double kBinsPerUnit = 8.0;

// Descending score, lower id first on ties. A total order on NaN-free candidates, so every
// partial sort below gives the same answer on every standard library.
bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// exp(score - max_score): the candidate's probability relative to the most likely one. When
// the best score is +inf (a huge logit over a tiny temperature), the +inf tokens share all
// the mass instead of everything turning into NaN.
double relative_weight(float score, double max_score) {
  if (std::isinf(max_score)) return static_cast<double>(score) == max_score ? 1.0 : 0.0;
  return std::exp(static_cast<double>(score) - max_score);
}

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
                        std::span<const TokenId> generated) {
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
  if (counts_.size() != vocab) counts_.assign(vocab, 0);

  // Repetition penalty (HF): once per distinct id of prompt + generated. counts_ marks the
  // ids already penalised and is cleared again afterwards, so the cost is O(sequence).
  const float rep = params_.repetition_penalty;
  if (rep != 1.0f) {
    auto penalise = [&](std::span<const TokenId> ids) {
      for (TokenId id : ids) {
        int32_t& seen = counts_[static_cast<size_t>(id)];
        if (seen != 0) continue;
        seen = 1;
        float& l = logits[static_cast<size_t>(id)];
        l = l > 0.0f ? l / rep : l * rep;
      }
    };
    penalise(prompt);
    penalise(generated);
    for (TokenId id : prompt) counts_[static_cast<size_t>(id)] = 0;
    for (TokenId id : generated) counts_[static_cast<size_t>(id)] = 0;
  }

  // Presence / frequency penalties (OpenAI, vLLM): generated tokens only.
  const float freq = params_.frequency_penalty;
  const float pres = params_.presence_penalty;
  if (freq != 0.0f || pres != 0.0f) {
    for (TokenId id : generated) ++counts_[static_cast<size_t>(id)];
    for (TokenId id : generated) {
      int32_t& count = counts_[static_cast<size_t>(id)];
      if (count == 0) continue;  // already applied for this id
      float& l = logits[static_cast<size_t>(id)];
      l -= freq * static_cast<float>(count);
      l -= pres;
      count = 0;
    }
  }

  const float temperature = params_.temperature;
  if (temperature == 0.0f) return argmax(logits);

  const double u = next_uniform();  // exactly one draw per call, whatever gets filtered

  // Temperature (in float, as HF does), dropping NaN and -inf: they can never be drawn.
  scratch_.clear();
  double max_score = kNegInfD;  // the best score always survives every filter below
  for (size_t i = 0; i < vocab; ++i) {
    float& l = logits[i];
    l /= temperature;
    if (std::isnan(l)) l = kNegInf;
    if (l != kNegInf) {
      scratch_.emplace_back(l, static_cast<TokenId>(i));
      max_score = std::max(max_score, static_cast<double>(l));
    }
  }
  if (scratch_.empty()) return 0;  // nothing has any probability; logits are all -inf now

  const size_t candidates = scratch_.size();
  size_t n = candidates;  // candidates still alive: scratch_[0, n)
  size_t sorted = 0;      // scratch_[0, sorted) is in ranks_before order
  // (scratch_ may swap buffers with spare_, so no iterator is kept across the filters)
  auto at = [this](size_t i) { return scratch_.begin() + static_cast<std::ptrdiff_t>(i); };

  // Top-k (HF): keep every token scoring >= the k-th largest score (ties at the boundary
  // all survive). For the usual small k a min-heap of the k best scores finds the k-th
  // largest in one predictable pass; larger k use nth_element.
  const size_t k = static_cast<size_t>(params_.top_k);
  if (k > 0 && k < n) {
    float kth = 0.0f;
    if (k <= kHeapTopK) {
      heap_.clear();
      for (size_t i = 0; i < n; ++i) {
        const float v = scratch_[i].first;
        if (heap_.size() < k) {
          heap_.push_back(v);
          std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
        } else if (v > heap_.front()) {
          std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
          heap_.back() = v;
          std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
        }
      }
      kth = heap_.front();
    } else {
      std::nth_element(at(0), at(k - 1), at(n), ranks_before);
      kth = scratch_[k - 1].first;
    }
    const auto end = std::partition(at(0), at(n), [kth](const Candidate& c) {
      return c.first >= kth;
    });
    n = static_cast<size_t>(end - at(0));
    std::sort(at(0), at(n), ranks_before);
    sorted = n;
  }

  // Top-p (HF): HF sorts ascending and drops tokens whose cumulative probability is
  // <= 1 - top_p. Equivalently, walking from the most likely token down, a token is kept
  // while the mass of the tokens before it is still < top_p; the first token always stays.
  // Only the neighbourhood of the cut gets sorted: a histogram of the mass by distance below
  // the best score finds the bin where the cumulative mass crosses top_p. Tokens two or more
  // bins above it are kept as they are (their predecessors' mass is below top_p), tokens two
  // or more bins below it are dropped, and only the bins in between are sorted and walked.
  // Should rounding carry the walk past them, it goes on through the rest in growing
  // nth_element chunks (also the path when the best score is +inf or top-k sorted already).
  const double top_p = params_.top_p;
  if (top_p < 1.0) {
    const bool binned = sorted < n && !std::isinf(max_score);
    auto bin_of = [max_score](float score) {
      const double d = (max_score - static_cast<double>(score)) * kBinsPerUnit;
      return d < static_cast<double>(kMassBins) ? static_cast<size_t>(d) : kMassBins;
    };
    std::array<double, kMassBins + 1> bin_mass{};
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const double w = relative_weight(scratch_[i].first, max_score);
      total += w;
      if (binned) bin_mass[bin_of(scratch_[i].first)] += w;
    }
    double mass = 0.0;
    size_t keep = 0;
    if (binned) {
      size_t crossing = 0;
      double cumulative = bin_mass[0];
      while (crossing < kMassBins && cumulative < top_p * total) {
        cumulative += bin_mass[++crossing];
      }
      const size_t first_walked = crossing > 0 ? crossing - 1 : 0;
      const size_t last_walked = crossing + 1;
      if (last_walked < kMassBins) {
        // Stable three-way split: [kept as is | walked, sorted | dropped].
        spare_.clear();
        for (size_t i = 0; i < n; ++i) {
          if (bin_of(scratch_[i].first) < first_walked) spare_.push_back(scratch_[i]);
        }
        keep = spare_.size();
        for (size_t i = 0; i < n; ++i) {
          const size_t b = bin_of(scratch_[i].first);
          if (b >= first_walked && b <= last_walked) spare_.push_back(scratch_[i]);
        }
        sorted = spare_.size();
        for (size_t i = 0; i < n; ++i) {
          if (bin_of(scratch_[i].first) > last_walked) spare_.push_back(scratch_[i]);
        }
        spare_.swap(scratch_);
        std::sort(at(keep), at(sorted), ranks_before);
        for (size_t i = 0; i < keep; ++i) {
          mass += relative_weight(scratch_[i].first, max_score) / total;
        }
      }
    }
    while (keep < n && mass < top_p) {
      if (keep == sorted) {
        const size_t end = std::min(n, sorted + std::max<size_t>(64, sorted));
        std::nth_element(at(sorted), at(end - 1), at(n), ranks_before);
        std::sort(at(sorted), at(end - 1), ranks_before);
        sorted = end;
      }
      mass += relative_weight(scratch_[keep].first, max_score) / total;
      ++keep;
    }
    n = keep;
  }

  // Min-p: keep tokens with p >= min_p * p_max, i.e. exp(score - max_score) >= min_p. The
  // most likely token always stays. remove_if keeps the order (the draw depends on it).
  const double min_p = params_.min_p;
  if (min_p > 0.0) {
    const auto end = std::remove_if(at(0), at(n), [&](const Candidate& c) {
      return relative_weight(c.first, max_score) < min_p;
    });
    n = static_cast<size_t>(end - at(0));
  }

  // Filtered tokens read -inf in the caller's logits, like HF's processed scores.
  if (n < candidates) {
    std::fill(logits.begin(), logits.end(), kNegInf);
    for (size_t i = 0; i < n; ++i) {
      logits[static_cast<size_t>(scratch_[i].second)] = scratch_[i].first;
    }
  }

  // Draw: inverse CDF over the survivors in their current (deterministic) order.
  weights_.resize(n);
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) {
    weights_[i] = relative_weight(scratch_[i].first, max_score);
    total += weights_[i];
  }
  const double target = u * total;
  double cumulative = 0.0;
  size_t last_positive = 0;
  for (size_t i = 0; i < n; ++i) {
    if (weights_[i] <= 0.0) continue;
    cumulative += weights_[i];
    last_positive = i;
    if (cumulative > target) return scratch_[i].second;
  }
  return scratch_[last_positive].second;  // u * total rounded up to total
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
