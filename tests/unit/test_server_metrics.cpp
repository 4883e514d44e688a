// /metrics: the Prometheus text exposition format (HELP/TYPE headers, cumulative histogram
// buckets ending in +Inf, _sum/_count, escaped labels) and the engine gauges.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

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

TEST(serverMetrics, RendersCountersAndEngineGauges) {
  Metrics m;
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/chat/completions", 400);
  m.count_request("/nope\"x", 404);  // unknown paths collapse into one label value
  m.count_tokens(10, 5);
  m.observe_time_to_first_token(0.2);
  EngineStats s;
  s.running = 3;
  s.waiting = 1;
  s.kv_blocks_total = 100;
  s.kv_blocks_used = 25;
  s.cached_prompt_tokens = 64;
  const std::string out = m.render(s);
  EXPECT_TRUE(has_line(out, "# TYPE internlm_http_requests_total counter"));
  EXPECT_TRUE(has_line(out, "internlm_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 2"));
  EXPECT_TRUE(has_line(out, "internlm_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"} 1"));
  EXPECT_TRUE(has_line(out, "internlm_http_requests_total{endpoint=\"other\",status=\"404\"} 1"));
  EXPECT_TRUE(has_line(out, "internlm_prompt_tokens_total 10"));
  EXPECT_TRUE(has_line(out, "internlm_generation_tokens_total 5"));
  EXPECT_TRUE(has_line(out, "internlm_time_to_first_token_seconds_count 1"));
  EXPECT_TRUE(has_line(out, "internlm_time_per_output_token_seconds_count 0"));
  EXPECT_TRUE(has_line(out, "internlm_e2e_request_latency_seconds_bucket{le=\"+Inf\"} 0"));
  EXPECT_TRUE(has_line(out, "internlm_sequences_running 3"));
  EXPECT_TRUE(has_line(out, "internlm_sequences_waiting 1"));
  EXPECT_TRUE(has_line(out, "internlm_kv_cache_usage_ratio 0.25"));
  EXPECT_TRUE(has_line(out, "internlm_prefix_cache_hit_tokens_total 64"));
  // Every sample line belongs to a metric declared by a TYPE line before it.
  std::istringstream in(out);
  std::string declared;
  for (std::string l; std::getline(in, l);) {
    ASSERT_FALSE(l.empty());
    if (l.rfind("# TYPE ", 0) == 0) {
      declared = l.substr(7, l.find(' ', 7) - 7);
    } else if (l[0] != '#') {
      EXPECT_EQ(l.rfind(declared, 0), 0u) << l;
    }
  }
  EXPECT_EQ(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

}  // namespace
}  // namespace ilm::server
