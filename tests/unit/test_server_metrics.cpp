// /metrics: the Prometheus text exposition format (HELP/TYPE headers, cumulative histogram
// buckets ending in +Inf, _sum/_count, escaped labels) under vLLM's names and labels.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "server/metrics.h"

namespace ilm::server {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

TEST(serverMetrics, HistogramIsCumulativeWithInf) {
  Histogram h({0.1, 1});
  h.observe(0.05);
  h.observe(0.1);  // le="0.1" includes the bound
  h.observe(0.5);
  h.observe(3);
  std::string out;
  h.render(out, "x_seconds", "help text");
  EXPECT_TRUE(has_line(out, "# HELP x_seconds help text"));
  EXPECT_TRUE(has_line(out, "# TYPE x_seconds histogram"));
  EXPECT_TRUE(has_line(out, "x_seconds_bucket{le=\"0.1\"} 2"));
  EXPECT_TRUE(has_line(out, "x_seconds_bucket{le=\"1\"} 3"));
  EXPECT_TRUE(has_line(out, "x_seconds_bucket{le=\"+Inf\"} 4"));
  EXPECT_TRUE(has_line(out, "x_seconds_sum 3.65"));
  EXPECT_TRUE(has_line(out, "x_seconds_count 4"));
}

TEST(serverMetrics, RendersVllmNamesWithModelLabel) {
  Metrics m("my \"model\"", 4096);
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/chat/completions", 400);
  m.count_request("/nope\"x", 404);  // unknown paths collapse into one label value
  RequestOutcome r;
  r.prompt_tokens = 10;
  r.completion_tokens = 5;
  r.time_to_first_token = 0.2;
  r.time_per_output_token = 0.03;
  r.e2e_seconds = 0.4;
  r.finish_reason = "length";
  m.record(r);
  r.finish_reason = "abort";  // counted, but not observed in the histograms
  m.record(r);
  EngineStats s;
  s.running = 3;
  s.waiting = 1;
  s.kv_blocks_total = 100;
  s.kv_blocks_used = 25;
  s.prompt_tokens = 200;
  s.cached_prompt_tokens = 64;
  s.generated_tokens = 7;
  const std::string out = m.render(s);
  const std::string l = "model_name=\"my \\\"model\\\"\",engine=\"0\"";
  EXPECT_TRUE(has_line(out, "# TYPE vllm:num_requests_running gauge"));
  EXPECT_TRUE(has_line(out, "vllm:num_requests_running{" + l + "} 3"));
  EXPECT_TRUE(has_line(out, "vllm:num_requests_waiting{" + l + "} 1"));
  EXPECT_TRUE(has_line(out, "vllm:kv_cache_usage_perc{" + l + "} 0.25"));
  EXPECT_TRUE(has_line(out, "# TYPE vllm:prompt_tokens_total counter"));
  EXPECT_TRUE(has_line(out, "vllm:prompt_tokens_total{" + l + "} 200"));
  EXPECT_TRUE(has_line(out, "vllm:generation_tokens_total{" + l + "} 7"));
  EXPECT_TRUE(has_line(out, "vllm:prefix_cache_queries_total{" + l + "} 200"));
  EXPECT_TRUE(has_line(out, "vllm:prefix_cache_hits_total{" + l + "} 64"));
  EXPECT_TRUE(has_line(out, "vllm:request_success_total{" + l + ",finished_reason=\"length\"} 1"));
  EXPECT_TRUE(has_line(out, "vllm:request_success_total{" + l + ",finished_reason=\"abort\"} 1"));
  EXPECT_TRUE(has_line(out, "vllm:request_success_total{" + l + ",finished_reason=\"stop\"} 0"));
  EXPECT_TRUE(has_line(out, "vllm:request_success_total{" + l + ",finished_reason=\"tool_calls\"} 0"));
  EXPECT_TRUE(has_line(out, "vllm:time_to_first_token_seconds_bucket{" + l + ",le=\"0.25\"} 1"));
  EXPECT_TRUE(has_line(out, "vllm:time_to_first_token_seconds_bucket{" + l + ",le=\"2560\"} 1"));
  EXPECT_TRUE(has_line(out, "vllm:time_to_first_token_seconds_count{" + l + "} 1"));
  EXPECT_TRUE(has_line(out, "vllm:time_per_output_token_seconds_bucket{" + l + ",le=\"0.05\"} 1"));
  EXPECT_TRUE(has_line(out, "vllm:e2e_request_latency_seconds_bucket{" + l + ",le=\"0.3\"} 0"));
  EXPECT_TRUE(has_line(out, "vllm:e2e_request_latency_seconds_bucket{" + l + ",le=\"+Inf\"} 1"));
  EXPECT_TRUE(has_line(out, "vllm:request_prompt_tokens_bucket{" + l + ",le=\"10\"} 1"));
  EXPECT_TRUE(has_line(out, "vllm:request_prompt_tokens_bucket{" + l + ",le=\"2000\"} 1"));
  EXPECT_TRUE(has_line(out, "vllm:request_generation_tokens_sum{" + l + "} 5"));
  EXPECT_TRUE(has_line(out, "internlm_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 2"));
  EXPECT_TRUE(has_line(out, "internlm_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"} 1"));
  EXPECT_TRUE(has_line(out, "internlm_http_requests_total{endpoint=\"other\",status=\"404\"} 1"));
  // vLLM's names replace the internlm_* ones that said the same.
  EXPECT_EQ(out.find("internlm_sequences_running"), std::string::npos);
  EXPECT_EQ(out.find("internlm_time_to_first_token_seconds"), std::string::npos);
  // Every sample line belongs to a metric declared by a TYPE line before it.
  std::istringstream in(out);
  std::string declared;
  for (std::string l2; std::getline(in, l2);) {
    ASSERT_FALSE(l2.empty());
    if (l2.rfind("# TYPE ", 0) == 0) {
      declared = l2.substr(7, l2.find(' ', 7) - 7);
    } else if (l2[0] != '#') {
      EXPECT_EQ(l2.rfind(declared, 0), 0u) << l2;
    }
  }
  EXPECT_EQ(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(serverMetrics, PrefixCacheOffCountsNoQueries) {
  Metrics m("m");
  EngineStats s;
  s.prompt_tokens = 50;
  EXPECT_TRUE(has_line(m.render(s, false), "vllm:prefix_cache_queries_total{model_name=\"m\",engine=\"0\"} 0"));
}

TEST(serverMetrics, Buckets125UpToTheContext) {
  EXPECT_EQ(buckets_1_2_5(4096), (std::vector<double>{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000}));
  EXPECT_EQ(buckets_1_2_5(5), (std::vector<double>{1, 2, 5}));
}

}  // namespace
}  // namespace ilm::server
