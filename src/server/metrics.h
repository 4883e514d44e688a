#pragma once
// The server's /metrics in the Prometheus text exposition format (version 0.0.4), under vLLM's
// metric names and labels (model_name, engine="0"), so dashboards and alerts written for a vLLM
// deployment work unchanged, plus internlm_* metrics for what vLLM has no name for (requests by
// endpoint and status, KV block counts, engine thread time, structured-output masks).
// Thread-safe: handlers record from many threads.
//
// What is counted where: per HTTP generation request (not per choice) the request histograms and
// vllm:request_success_total; from the engine the scheduler gauges (sequences: with n > 1 each
// choice is one, as each is one request in vLLM v1), token and prefix-cache counters.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/engine.h"

namespace ilm::server {

// A cumulative histogram with fixed upper bounds.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines under a HELP/TYPE header; `labels` (may be empty) is
  // the label list every sample carries, e.g. `model_name="m",engine="0"`.
  void render(std::string& out, const std::string& name, const std::string& help,
              const std::string& labels = "") const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last: above every bound
  double sum_ = 0;
  uint64_t count_ = 0;
};

// vLLM's 1-2-5 buckets up to `max` (1, 2, 5, 10, 20, 50, ... <= max).
std::vector<double> buckets_1_2_5(int64_t max);

// What one finished generation request (all its prompts and choices) reports.
struct RequestOutcome {
  int64_t prompt_tokens = 0, completion_tokens = 0;  // usage
  double time_to_first_token = -1;    // seconds; -1: no token came
  double time_per_output_token = -1;  // mean over choices with two or more tokens; -1: none
  double e2e_seconds = 0;
  std::string finish_reason;  // the first choice's: stop, length, tool_calls; abort: client gone
};

class Metrics {
 public:
  explicit Metrics(std::string model_name = "", int64_t max_model_len = 4096);
  // endpoint: the route ("/v1/chat/completions"); anything unknown is counted as "other" so
  // that clients cannot grow the label set.
  void count_request(const std::string& endpoint, int status);
  void record(const RequestOutcome& r);
  // Sets the token-count histograms' buckets (1-2-5 up to the context), before any record().
  void set_max_model_len(int64_t max_model_len);

  // `prefix_cache`: the engine looks prompts up in its prefix cache (else no queries count).
  std::string render(const EngineStats& engine, bool prefix_cache = true) const;

 private:
  std::string labels_;  // model_name="...",engine="0"
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> finished_;  // by finish reason
  Histogram ttft_, tpot_, e2e_, prompt_len_, generation_len_;
};

// Escapes a label value (backslash, double quote, newline) for the exposition format.
std::string escape_label(const std::string& v);

}  // namespace ilm::server
