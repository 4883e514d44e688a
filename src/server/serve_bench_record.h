#pragma once
// `internlm bench-serve`: what one streamed request measured, and the clock it was measured with.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace ilm::serve_bench {

// Seconds on a monotonic clock shared by every request of the run, so the timestamps of
// different requests can be compared (the scenarios look at windows across streams).
inline double now_s() {
  using clock = std::chrono::steady_clock;
  static const clock::time_point epoch = clock::now();
  return std::chrono::duration<double>(clock::now() - epoch).count();
}

struct RequestRecord {
  bool ok = false;
  bool cancelled = false;      // stopped by the benchmark itself (scenario streams), not an error
  std::string error;           // why it failed: "HTTP 400: <body>", a transport error, an error event
  int http_status = 0;         // 0 when no response arrived
  double start = 0;            // now_s() just before the request was sent
  double end = 0;              // now_s() when the stream ended
  double ttft = 0;             // seconds from `start` to the first content token
  bool has_ttft = false;       // false when no chunk with choices arrived
  std::vector<double> token_times;  // now_s() at the arrival of each chunk carrying content
  int64_t prompt_tokens = 0;   // from `usage`, else the length the client sent (0: unknown)
  int64_t output_tokens = 0;   // from `usage`, else the number of content chunks
  bool usage_reported = false; // false: the server sent no `usage`; output_tokens counts chunks
  int64_t max_tokens = 0;      // what was asked for
  std::string finish_reason;   // "length", "stop", ... as the server reported it
  std::string generated_text;  // the content of every chunk, concatenated

  double e2el() const { return end - start; }
  // Gaps between successive content chunks (seconds).
  std::vector<double> itl() const {
    std::vector<double> gaps;
    for (size_t i = 1; i < token_times.size(); ++i) gaps.push_back(token_times[i] - token_times[i - 1]);
    return gaps;
  }
  // (e2e - TTFT) / (output_tokens - 1); only defined for more than one output token.
  bool has_tpot() const { return ok && has_ttft && output_tokens > 1; }
  double tpot() const { return (e2el() - ttft) / static_cast<double>(output_tokens - 1); }
};

}  // namespace ilm::serve_bench
