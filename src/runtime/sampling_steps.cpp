#include "runtime/sampling_steps.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>

namespace ilm::sampling {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr double kNegInfD = -std::numeric_limits<double>::infinity();

// Up to this top_k the k-th largest score comes from a min-heap, beyond it from nth_element.
constexpr size_t kHeapTopK = 4096;
// Top-p's mass histogram: bins of 1/8 logit below the best score, 32 logits deep (e^-32 of
// the best token's probability); everything further down shares the last bin.
constexpr size_t kMassBins = 256;
constexpr double kBinsPerUnit = 8.0;

auto at(Candidates& c, size_t i) { return c.items.begin() + static_cast<std::ptrdiff_t>(i); }

// The k-th largest score among the n alive candidates (k < n).
float kth_largest(Candidates& c, size_t k) {
  if (k > kHeapTopK) {
    std::nth_element(at(c, 0), at(c, k - 1), at(c, c.n), ranks_before);
    return c.items[k - 1].first;
  }
  // For the usual small k a min-heap of the k best scores finds it in one predictable pass.
  auto& heap = c.heap;
  heap.clear();
  for (size_t i = 0; i < c.n; ++i) {
    const float v = c.items[i].first;
    if (heap.size() < k) {
      heap.push_back(v);
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    } else if (v > heap.front()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      heap.back() = v;
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  }
  return heap.front();
}

}  // namespace

bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

double relative_weight(float score, double max_score) {
  if (std::isinf(max_score)) return static_cast<double>(score) == max_score ? 1.0 : 0.0;
  return std::exp(static_cast<double>(score) - max_score);
}

void apply_repetition_penalty(std::span<float> logits, std::span<const TokenId> prompt,
                              std::span<const TokenId> generated, float penalty, std::vector<int32_t>& marks) {
  if (penalty == 1.0f) return;
  // marks[id] says the id was penalised already; cleared again below, so the cost is
  // O(sequence), not O(vocab).
  auto penalise = [&](std::span<const TokenId> ids) {
    for (TokenId id : ids) {
      int32_t& seen = marks[static_cast<size_t>(id)];
      if (seen != 0) continue;
      seen = 1;
      float& l = logits[static_cast<size_t>(id)];
      l = l > 0.0f ? l / penalty : l * penalty;
    }
  };
  penalise(prompt);
  penalise(generated);
  for (TokenId id : prompt) marks[static_cast<size_t>(id)] = 0;
  for (TokenId id : generated) marks[static_cast<size_t>(id)] = 0;
}

void apply_presence_frequency(std::span<float> logits, std::span<const TokenId> generated, float presence,
                              float frequency, std::vector<int32_t>& counts) {
  if (presence == 0.0f && frequency == 0.0f) return;
  for (TokenId id : generated) ++counts[static_cast<size_t>(id)];
  for (TokenId id : generated) {
    int32_t& count = counts[static_cast<size_t>(id)];
    if (count == 0) continue;  // already applied for this id
    float& l = logits[static_cast<size_t>(id)];
    l -= frequency * static_cast<float>(count);
    l -= presence;
    count = 0;
  }
}

void apply_logit_bias(std::span<float> logits, std::span<const std::pair<TokenId, float>> bias) {
  for (const auto& [id, b] : bias) logits[static_cast<size_t>(id)] += b;
}

void ban(std::span<float> logits, std::span<const TokenId> ids) {
  for (TokenId id : ids) logits[static_cast<size_t>(id)] = kNegInf;
}

void apply_mask(std::span<float> logits, const TokenMask& mask) {
  const auto& bits = *mask.allowed;
  std::vector<float> saved(mask.end_ids.size());
  const size_t n_end = saved.size();
  for (size_t i = 0; i < n_end; ++i) saved[i] = logits[static_cast<size_t>(mask.end_ids[i])];
  for (size_t w = 0; w < bits.size(); ++w) {
    const uint64_t word = bits[w];
    if (word == ~uint64_t{0}) continue;
    const size_t end = std::min(logits.size(), (w + 1) * 64);
    for (size_t id = w * 64; id < end; ++id)
      if (!((word >> (id & 63)) & 1u)) logits[id] = kNegInf;
  }
  for (size_t id = bits.size() * 64; id < logits.size(); ++id) logits[id] = kNegInf;  // a padded vocabulary
  for (size_t i = 0; i < n_end; ++i)
    logits[static_cast<size_t>(mask.end_ids[i])] = mask.end_allowed ? saved[i] : kNegInf;
}

bool scale_by_temperature(std::span<float> logits, float temperature, Candidates& c) {
  c.items.clear();
  c.max_score = kNegInfD;
  for (size_t i = 0; i < logits.size(); ++i) {
    float& l = logits[i];
    l /= temperature;
    if (std::isnan(l)) l = kNegInf;
    if (l != kNegInf) {
      c.items.emplace_back(l, static_cast<TokenId>(i));
      c.max_score = std::max(c.max_score, static_cast<double>(l));
    }
  }
  c.n = c.initial = c.items.size();
  c.sorted = 0;
  return c.n > 0;
}

void keep_top_k(Candidates& c, size_t k) {
  if (k == 0 || k >= c.n) return;
  const float kth = kth_largest(c, k);
  const auto end = std::partition(at(c, 0), at(c, c.n), [kth](const Candidate& x) { return x.first >= kth; });
  c.n = static_cast<size_t>(end - at(c, 0));
  std::sort(at(c, 0), at(c, c.n), ranks_before);
  c.sorted = c.n;
}

// HF sorts ascending and drops tokens whose cumulative probability is <= 1 - top_p.
// Equivalently, walking from the most likely token down, a token is kept while the mass of the
// tokens before it is still < top_p; the first token always stays. Only the neighbourhood of
// the cut gets sorted: a histogram of the mass by distance below the best score finds the bin
// where the cumulative mass crosses top_p. Tokens two or more bins above it are kept as they
// are (their predecessors' mass is below top_p), tokens two or more bins below it are dropped,
// and only the bins in between are sorted and walked. Should rounding carry the walk past
// them, it goes on through the rest in growing nth_element chunks (also the path when the best
// score is +inf or top-k sorted already).
void keep_top_p(Candidates& c, double top_p) {
  if (top_p >= 1.0) return;
  const double max_score = c.max_score;
  const bool binned = c.sorted < c.n && !std::isinf(max_score);
  auto bin_of = [max_score](float score) {
    const double d = (max_score - static_cast<double>(score)) * kBinsPerUnit;
    return d < static_cast<double>(kMassBins) ? static_cast<size_t>(d) : kMassBins;
  };
  std::array<double, kMassBins + 1> bin_mass{};
  double total = 0.0;
  for (size_t i = 0; i < c.n; ++i) {
    const double w = relative_weight(c.items[i].first, max_score);
    total += w;
    if (binned) bin_mass[bin_of(c.items[i].first)] += w;
  }
  double mass = 0.0;
  size_t keep = 0;
  if (binned) {
    size_t crossing = 0;
    double cumulative = bin_mass[0];
    while (crossing < kMassBins && cumulative < top_p * total) cumulative += bin_mass[++crossing];
    const size_t first_walked = crossing > 0 ? crossing - 1 : 0;
    const size_t last_walked = crossing + 1;
    if (last_walked < kMassBins) {
      // Stable three-way split: [kept as is | walked, sorted | dropped].
      auto& spare = c.spare;
      spare.clear();
      for (size_t i = 0; i < c.n; ++i)
        if (bin_of(c.items[i].first) < first_walked) spare.push_back(c.items[i]);
      keep = spare.size();
      for (size_t i = 0; i < c.n; ++i) {
        const size_t b = bin_of(c.items[i].first);
        if (b >= first_walked && b <= last_walked) spare.push_back(c.items[i]);
      }
      c.sorted = spare.size();
      for (size_t i = 0; i < c.n; ++i)
        if (bin_of(c.items[i].first) > last_walked) spare.push_back(c.items[i]);
      spare.swap(c.items);
      std::sort(at(c, keep), at(c, c.sorted), ranks_before);
      for (size_t i = 0; i < keep; ++i) mass += relative_weight(c.items[i].first, max_score) / total;
    }
  }
  while (keep < c.n && mass < top_p) {
    if (keep == c.sorted) {
      const size_t end = std::min(c.n, c.sorted + std::max<size_t>(64, c.sorted));
      std::nth_element(at(c, c.sorted), at(c, end - 1), at(c, c.n), ranks_before);
      std::sort(at(c, c.sorted), at(c, end - 1), ranks_before);
      c.sorted = end;
    }
    mass += relative_weight(c.items[keep].first, max_score) / total;
    ++keep;
  }
  c.n = keep;
}

void keep_min_p(Candidates& c, double min_p) {
  if (min_p <= 0.0) return;
  const double max_score = c.max_score;
  const auto end = std::remove_if(at(c, 0), at(c, c.n), [&](const Candidate& x) {
    return relative_weight(x.first, max_score) < min_p;
  });
  c.n = static_cast<size_t>(end - at(c, 0));
  c.sorted = std::min(c.sorted, c.n);
}

void write_back(const Candidates& c, std::span<float> logits) {
  if (c.n == c.initial) return;
  std::fill(logits.begin(), logits.end(), kNegInf);
  for (size_t i = 0; i < c.n; ++i) logits[static_cast<size_t>(c.items[i].second)] = c.items[i].first;
}

TokenId draw(Candidates& c, double u) {
  auto& w = c.weights;
  w.resize(c.n);
  double total = 0.0;
  for (size_t i = 0; i < c.n; ++i) {
    w[i] = relative_weight(c.items[i].first, c.max_score);
    total += w[i];
  }
  const double target = u * total;
  double cumulative = 0.0;
  size_t last_positive = 0;
  for (size_t i = 0; i < c.n; ++i) {
    if (w[i] <= 0.0) continue;
    cumulative += w[i];
    last_positive = i;
    if (cumulative > target) return c.items[i].second;
  }
  return c.items[last_positive].second;  // u * total rounded up to total
}

}  // namespace ilm::sampling
