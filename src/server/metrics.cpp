#include "server/metrics.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

namespace ilm::server {

namespace {

constexpr std::array<const char*, 7> kEndpoints = {"/v1/chat/completions", "/v1/completions", "/v1/models",
                                                   "/tokenize", "/detokenize", "/health", "/metrics"};

void header(std::string& out, const std::string& name, const std::string& help, const char* type) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

template <typename T>
void single(std::string& out, const std::string& name, const std::string& help, const char* type, T v) {
  header(out, name, help, type);
  out += fmt::format("{} {}\n", name, v);
}

}  // namespace

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);  // first bound >= v: le semantics
  ++counts_[static_cast<size_t>(it - bounds_.begin())];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  header(out, name, help, "histogram");
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, count_);
  out += fmt::format("{}_sum {}\n{}_count {}\n", name, sum_, name, count_);
}

Metrics::Metrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5}),
      e2e_({0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480}) {}

void Metrics::count_request(const std::string& endpoint, int status) {
  const bool known = std::find(kEndpoints.begin(), kEndpoints.end(), endpoint) != kEndpoints.end();
  std::lock_guard lock(mu_);
  ++requests_[{known ? endpoint : std::string("other"), status}];
}

void Metrics::count_tokens(int64_t prompt, int64_t generated) {
  std::lock_guard lock(mu_);
  prompt_tokens_ += static_cast<uint64_t>(std::max<int64_t>(prompt, 0));
  generated_tokens_ += static_cast<uint64_t>(std::max<int64_t>(generated, 0));
}

void Metrics::observe_time_to_first_token(double s) {
  std::lock_guard lock(mu_);
  ttft_.observe(s);
}

void Metrics::observe_time_per_output_token(double s) {
  std::lock_guard lock(mu_);
  tpot_.observe(s);
}

void Metrics::observe_e2e_latency(double s) {
  std::lock_guard lock(mu_);
  e2e_.observe(s);
}

std::string Metrics::render(const EngineStats& e) const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    header(out, "internlm_http_requests_total", "HTTP requests by endpoint and status code.", "counter");
    for (const auto& [key, n] : requests_)
      out += fmt::format("internlm_http_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n",
                         escape_label(key.first), key.second, n);
    single(out, "internlm_prompt_tokens_total", "Prompt tokens of completed requests (usage.prompt_tokens).",
           "counter", prompt_tokens_);
    single(out, "internlm_generation_tokens_total",
           "Generated tokens of completed requests (usage.completion_tokens).", "counter", generated_tokens_);
    ttft_.render(out, "internlm_time_to_first_token_seconds", "Time from request arrival to its first token.");
    tpot_.render(out, "internlm_time_per_output_token_seconds",
                 "Mean time between tokens of one choice, after the first.");
    e2e_.render(out, "internlm_e2e_request_latency_seconds", "Time from request arrival to its last byte.");
  }
  single(out, "internlm_sequences_running", "Sequences in the running batch.", "gauge", e.running);
  single(out, "internlm_sequences_waiting", "Sequences waiting to be scheduled.", "gauge", e.waiting);
  const double usage = e.kv_blocks_total > 0 ? static_cast<double>(e.kv_blocks_used) / static_cast<double>(e.kv_blocks_total) : 0.0;
  single(out, "internlm_kv_cache_usage_ratio", "Fraction of KV cache blocks held by sequences (0..1).", "gauge", usage);
  single(out, "internlm_kv_cache_blocks_total", "KV cache blocks in the pool.", "gauge", e.kv_blocks_total);
  single(out, "internlm_kv_cache_blocks_cached", "Free KV cache blocks that still hold a reusable prefix.", "gauge",
         e.kv_blocks_cached);
  single(out, "internlm_prefix_cache_hit_tokens_total", "Prompt tokens whose KV came from the prefix cache.",
         "counter", e.cached_prompt_tokens);
  single(out, "internlm_engine_prompt_tokens_total", "Prompt tokens the engine admitted.", "counter", e.prompt_tokens);
  single(out, "internlm_engine_generated_tokens_total", "Tokens the engine sampled.", "counter", e.generated_tokens);
  single(out, "internlm_engine_steps_total", "Scheduler steps (batched forwards).", "counter", e.steps);
  single(out, "internlm_engine_preemptions_total", "Sequences preempted for lack of KV blocks.", "counter",
         e.preemptions);
  single(out, "internlm_engine_forward_seconds_total", "Engine thread time in batched forward passes.", "counter",
         e.forward_seconds);
  single(out, "internlm_engine_grammar_seconds_total",
         "Engine thread time in structured output: token masks, masked sampling, matcher steps.", "counter",
         e.grammar_seconds);
  single(out, "internlm_grammar_mask_cache_hits_total", "Token masks found in a grammar's cache.", "counter",
         e.grammar_mask_hits);
  single(out, "internlm_grammar_mask_cache_misses_total", "Token masks computed (trie walks).", "counter",
         e.grammar_mask_misses);
  return out;
}

}  // namespace ilm::server
