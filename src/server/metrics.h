#pragma once
// The server's /metrics: request counters, token counters and latency histograms kept by the
// HTTP layer, plus the engine's scheduler gauges, in the Prometheus text exposition format
// (version 0.0.4). Thread-safe: handlers record from many threads.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/engine.h"

namespace ilm::server {

// A cumulative histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines under a HELP/TYPE header.
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last: above every bound
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  // endpoint: the route ("/v1/chat/completions"); anything unknown is counted as "other" so
  // that clients cannot grow the label set.
  void count_request(const std::string& endpoint, int status);
  void count_tokens(int64_t prompt, int64_t generated);
  void observe_time_to_first_token(double s);
  void observe_time_per_output_token(double s);
  void observe_e2e_latency(double s);

  std::string render(const EngineStats& engine) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  Histogram ttft_, tpot_, e2e_;
};

// Escapes a label value (backslash, double quote, newline) for the exposition format.
std::string escape_label(const std::string& v);

}  // namespace ilm::server
