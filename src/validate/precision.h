#pragma once
// Logits comparison: one backend's next-token scores against a reference's (the ref backend,
// or golden logits produced elsewhere).
#include <cstdint>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

namespace ilm::validate {

struct RowCompare {
  double max_abs = 0;  // max |test - ref|
  double rel = 0;      // max_abs / max |ref|
  double kl = 0;       // KL(softmax(ref) || softmax(test)), nats
  bool top1_agree = true;
  bool near_tie = false;  // argmax differs, but ref's own margin between the two ids is within
                          // 2 x tie_rel x max|ref|: a flip the stated tolerance allows
};
RowCompare compare_row(std::span<const float> test, std::span<const float> ref, double tie_rel);

struct LogitsSummary {
  int64_t positions = 0, top1_agree = 0, near_ties = 0;
  double max_abs = 0, max_rel = 0, mean_kl = 0, max_kl = 0;
  void add(const RowCompare& r);
  void finish();  // mean_kl from the running sum
  // (agreeing + near-tie positions) / positions
  double top1_rate() const;
  double top1_rate_raw() const;
  nlohmann::json to_json() const;

 private:
  double kl_sum_ = 0;
};

}  // namespace ilm::validate
