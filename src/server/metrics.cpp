#include "server/metrics.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

namespace ilm::server {

namespace {

constexpr std::array<const char*, 7> kEndpoints = {"/v1/chat/completions", "/v1/completions", "/v1/models",
                                                   "/tokenize", "/detokenize", "/health", "/metrics"};
// vllm:request_success_total's finished_reason values (vLLM's stop / length / abort, and the
// OpenAI tool_calls), present from the start so that rates over them are defined.
constexpr std::array<const char*, 4> kFinishReasons = {"stop", "length", "abort", "tool_calls"};

void header(std::string& out, const std::string& name, const std::string& help, const char* type) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// One sample; `labels` may be empty.
template <typename T>
void single(std::string& out, const std::string& name, const std::string& help, const char* type,
            const std::string& labels, T v) {
  header(out, name, help, type);
  if (labels.empty())
    out += fmt::format("{} {}\n", name, v);
  else
    out += fmt::format("{}{{{}}} {}\n", name, labels, v);
}

std::string with_le(const std::string& labels, const std::string& le) {
  return labels.empty() ? fmt::format("le=\"{}\"", le) : fmt::format("{},le=\"{}\"", labels, le);
}

std::string braced(const std::string& labels) { return labels.empty() ? "" : "{" + labels + "}"; }

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

std::vector<double> buckets_1_2_5(int64_t max) {
  std::vector<double> b;
  for (int64_t scale = 1; scale <= max && scale <= (int64_t{1} << 50); scale *= 10)
    for (int64_t m : {1, 2, 5})
      if (m * scale <= max) b.push_back(static_cast<double>(m * scale));
  if (b.empty()) b.push_back(1);
  return b;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);  // first bound >= v: le semantics
  ++counts_[static_cast<size_t>(it - bounds_.begin())];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help,
                       const std::string& labels) const {
  header(out, name, help, "histogram");
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{{}}} {}\n", name, with_le(labels, fmt::format("{}", bounds_[i])), cum);
  }
  out += fmt::format("{}_bucket{{{}}} {}\n", name, with_le(labels, "+Inf"), count_);
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braced(labels), sum_, name, braced(labels), count_);
}

// Buckets as vLLM (v1/metrics/loggers.py) defines them.
Metrics::Metrics(std::string model_name, int64_t max_model_len)
    : labels_(fmt::format("model_name=\"{}\",engine=\"0\"", escape_label(model_name))),
      ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0, 160.0, 640.0, 2560.0}),
      tpot_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0}),
      e2e_({0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
            960.0, 1920.0, 7680.0}),
      prompt_len_(buckets_1_2_5(max_model_len)),
      generation_len_(buckets_1_2_5(max_model_len)) {
  for (const char* r : kFinishReasons) finished_[r] = 0;
}

void Metrics::set_max_model_len(int64_t max_model_len) {
  std::lock_guard lock(mu_);
  prompt_len_ = Histogram(buckets_1_2_5(max_model_len));
  generation_len_ = Histogram(buckets_1_2_5(max_model_len));
}

void Metrics::count_request(const std::string& endpoint, int status) {
  const bool known = std::find(kEndpoints.begin(), kEndpoints.end(), endpoint) != kEndpoints.end();
  std::lock_guard lock(mu_);
  ++requests_[{known ? endpoint : std::string("other"), status}];
}

void Metrics::record(const RequestOutcome& r) {
  const bool known =
      std::find(kFinishReasons.begin(), kFinishReasons.end(), r.finish_reason) != kFinishReasons.end();
  std::lock_guard lock(mu_);
  ++finished_[known ? r.finish_reason : std::string("stop")];
  if (r.finish_reason == "abort") return;  // vLLM observes the histograms of finished requests only
  prompt_len_.observe(static_cast<double>(std::max<int64_t>(r.prompt_tokens, 0)));
  generation_len_.observe(static_cast<double>(std::max<int64_t>(r.completion_tokens, 0)));
  if (r.time_to_first_token >= 0) ttft_.observe(r.time_to_first_token);
  if (r.time_per_output_token >= 0) tpot_.observe(r.time_per_output_token);
  e2e_.observe(r.e2e_seconds);
}

std::string Metrics::render(const EngineStats& e, bool prefix_cache) const {
  const std::string& l = labels_;
  std::string out;
  // vLLM's names first.
  single(out, "vllm:num_requests_running", "Number of requests in model execution batches.", "gauge", l, e.running);
  single(out, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", "gauge", l, e.waiting);
  const double usage = e.kv_blocks_total > 0 ? static_cast<double>(e.kv_blocks_used) / static_cast<double>(e.kv_blocks_total) : 0.0;
  single(out, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "gauge", l, usage);
  single(out, "vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.",
         "counter", l, prefix_cache ? e.prompt_tokens : 0);
  single(out, "vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", "counter",
         l, e.cached_prompt_tokens);
  single(out, "vllm:num_preemptions_total", "Cumulative number of preemption from the engine.", "counter", l,
         e.preemptions);
  single(out, "vllm:prompt_tokens_total", "Number of prefill tokens processed.", "counter", l, e.prompt_tokens);
  single(out, "vllm:generation_tokens_total", "Number of generation tokens processed.", "counter", l,
         e.generated_tokens);
  {
    std::lock_guard lock(mu_);
    header(out, "vllm:request_success_total", "Count of successfully processed requests.", "counter");
    for (const auto& [reason, n] : finished_)
      out += fmt::format("vllm:request_success_total{{{},finished_reason=\"{}\"}} {}\n", l, reason, n);
    prompt_len_.render(out, "vllm:request_prompt_tokens", "Number of prefill tokens processed.", l);
    generation_len_.render(out, "vllm:request_generation_tokens", "Number of generation tokens processed.", l);
    ttft_.render(out, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", l);
    tpot_.render(out, "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", l);
    e2e_.render(out, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", l);
    // What vLLM has no name for.
    header(out, "internlm_http_requests_total", "HTTP requests by endpoint and status code.", "counter");
    for (const auto& [key, n] : requests_)
      out += fmt::format("internlm_http_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n",
                         escape_label(key.first), key.second, n);
  }
  single(out, "internlm_kv_cache_blocks_total", "KV cache blocks in the pool.", "gauge", "", e.kv_blocks_total);
  single(out, "internlm_kv_cache_blocks_cached", "Free KV cache blocks that still hold a reusable prefix.", "gauge",
         "", e.kv_blocks_cached);
  single(out, "internlm_engine_steps_total", "Scheduler steps (batched forwards).", "counter", "", e.steps);
  single(out, "internlm_engine_forward_seconds_total", "Engine thread time in batched forward passes.", "counter",
         "", e.forward_seconds);
  single(out, "internlm_engine_grammar_seconds_total",
         "Engine thread time in structured output: token masks, masked sampling, matcher steps.", "counter", "",
         e.grammar_seconds);
  single(out, "internlm_grammar_mask_cache_hits_total", "Token masks found in a grammar's cache.", "counter", "",
         e.grammar_mask_hits);
  single(out, "internlm_grammar_mask_cache_misses_total", "Token masks computed (trie walks).", "counter", "",
         e.grammar_mask_misses);
  return out;
}

}  // namespace ilm::server
