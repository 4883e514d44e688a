#include "server/serve_bench_scenarios.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "common/error.h"
#include "server/serve_bench_dataset.h"
#include "server/serve_bench_report.h"
#include "server/serve_bench_run.h"
#include "server/serve_bench_stats.h"

namespace ilm::serve_bench {

std::string verdict_line(const ScenarioResult& r) {
  std::string s = fmt::format("{} {}: {} = {:.3f} (target {} {:g})", r.pass ? "PASS" : "FAIL", r.name, r.what,
                              r.ratio, r.op, r.target);
  if (!r.note.empty()) s += fmt::format(" [{}]", r.note);
  return s;
}

namespace {

bool meets(double ratio, const std::string& op, double target) {
  if (!std::isfinite(ratio)) return false;
  return op == ">=" ? ratio >= target : ratio <= target;
}

void judge(ScenarioResult& r) { r.pass = r.note.empty() && meets(r.ratio, r.op, r.target); }

double ms(double s) { return s * 1e3; }

// Seeds of the different prompt sets of one run, so no two sets share a prefix.
uint64_t sub_seed(uint64_t seed, uint64_t k) { return seed * 0x9E3779B97F4A7C15ULL + k * 0xBF58476D1CE4E5B9ULL + k; }

// The Prometheus lines of /metrics that mention the prefix cache, if the server has any.
std::string prefix_metrics(const ApiClient& api) {
  const std::optional<std::string> text = api.metrics();
  if (!text) return {};
  std::istringstream in(*text);
  std::string line, out;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != '#' && line.find("prefix") != std::string::npos) out += fmt::format("  {}\n", line);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// throughput

ScenarioResult run_throughput_scenario(const ApiClient& api, const std::string& model, const ScenarioOptions& o,
                                       Progress& progress, const Log& log) {
  ScenarioResult res;
  res.name = "throughput";
  res.what = "output tok/s at concurrency 16 / at concurrency 1";
  res.op = ">=";
  res.target = 6;
  std::vector<LevelMetrics> metrics;
  nlohmann::json levels = nlohmann::json::array();
  int failed = 0;
  for (int c : {1, 16}) {
    const int n = o.num_prompts > 0 ? o.num_prompts : std::max(4, 2 * c);
    const auto reqs = random_token_requests(n, o.input_len, o.output_len, sub_seed(o.seed, 100 + static_cast<uint64_t>(c)));
    LevelOptions lo;
    lo.concurrency = c;
    LevelResult lr = run_level(api, model, reqs, lo, progress, fmt::format("throughput concurrency {}", c));
    failed += lr.metrics.failed;
    for (const ErrorCount& e : lr.metrics.errors)
      log(fmt::format("throughput: concurrency {}: {} x {}", c, e.count, e.error));
    metrics.push_back(lr.metrics);
    levels.push_back(level_json(lr));
  }
  log(format_level_table(metrics));
  const double base = metrics[0].output_throughput;
  res.ratio = base > 0 ? metrics[1].output_throughput / base : std::numeric_limits<double>::quiet_NaN();
  if (failed > 0) res.note = fmt::format("{} requests failed", failed);
  else if (base <= 0) res.note = "no output tokens at concurrency 1";
  res.details = {{"input_len", o.input_len},
                 {"output_len", o.output_len},
                 {"output_throughput_c1", metrics[0].output_throughput},
                 {"output_throughput_c16", metrics[1].output_throughput},
                 {"levels", levels}};
  judge(res);
  return res;
}

// ---------------------------------------------------------------------------------------------
// prefix

std::string filler_text(size_t words, uint64_t seed) {
  static constexpr std::array<const char*, 96> kWords = {
      "time",    "people",  "water",   "river",  "mountain", "city",    "garden",  "window",  "music",   "history",
      "science", "market",  "letter",  "winter", "summer",   "bridge",  "forest",  "island",  "road",    "school",
      "family",  "story",   "morning", "evening", "light",   "stone",   "paper",   "friend",  "number",  "table",
      "animal",  "question", "answer", "problem", "idea",    "reason",  "country", "village", "language", "voice",
      "simple",  "green",   "quiet",   "bright", "ancient",  "modern",  "small",   "large",   "careful", "early",
      "walk",    "build",   "carry",   "follow", "remember", "explain", "travel",  "measure", "gather",  "listen",
      "and",     "but",     "because", "while",  "after",    "before",  "under",   "over",    "near",    "across",
      "the",     "a",       "of",      "to",     "in",       "on",      "with",    "from",    "for",     "about",
      "engine",  "signal",  "harbor",  "valley", "kitchen",  "teacher", "doctor",  "farmer",  "painter", "sailor",
      "copper",  "silver",  "cotton",  "marble", "thunder",  "shadow"};
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, kWords.size() - 1);
  std::string out = fmt::format("Reference notes {}:", seed % 1000000);
  for (size_t i = 0; i < words; ++i) {
    out += ' ';
    out += kWords[pick(rng)];
    if (i % 17 == 16) out += '.';
  }
  out += '.';
  return out;
}

namespace {

struct SystemPrompt {
  std::string text;
  int64_t tokens = 0;  // by /tokenize; 0 when the server has none
};

// Text of about `target` tokens (by the server's own tokenizer when it has /tokenize).
SystemPrompt make_system_prompt(const ApiClient& api, const std::string& model, int64_t target, uint64_t seed) {
  SystemPrompt sp;
  auto words = static_cast<size_t>(std::max<int64_t>(target, 1));
  for (int attempt = 0; attempt < 6; ++attempt) {
    sp.text = filler_text(words, seed);
    const std::optional<int64_t> n = api.count_tokens(model, sp.text);
    if (!n) {
      sp.tokens = 0;
      return sp;
    }
    sp.tokens = *n;
    if (std::llabs(sp.tokens - target) * 50 <= target || sp.tokens <= 0) return sp;  // within 2%
    words = std::max<size_t>(1, static_cast<size_t>(std::llround(static_cast<double>(words) *
                                                                 static_cast<double>(target) /
                                                                 static_cast<double>(sp.tokens))));
  }
  return sp;
}

nlohmann::json chat_body(const std::string& model, const std::string& system, const std::string& user,
                         int64_t max_tokens) {
  BenchRequest r;
  r.chat = true;
  r.input = nlohmann::json::array({{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", user}}});
  r.max_tokens = max_tokens;
  return request_body(r, model);
}

}  // namespace

ScenarioResult run_prefix_scenario(const ApiClient& api, const std::string& model, const ScenarioOptions& o,
                                   const Log& log) {
  ScenarioResult res;
  res.name = "prefix";
  res.what = "max(TTFT second, TTFT third) / TTFT first";
  res.op = "<=";
  res.target = 0.10;
  const std::string before = prefix_metrics(api);
  const SystemPrompt sp = make_system_prompt(api, model, o.prefix_len, sub_seed(o.seed, 7));
  log(sp.tokens > 0 ? fmt::format("prefix: system prompt of {} tokens (by /tokenize), target {}", sp.tokens, o.prefix_len)
                    : fmt::format("prefix: the server has no /tokenize; system prompt of {} words", o.prefix_len));
  const std::string user_a = "Write a long and detailed story about a lighthouse keeper and the ships she guides.";
  const std::string user_b = "Summarize the notes above in one sentence.";
  const std::string user_c = "List ten everyday uses of a paperclip, one per line.";
  const std::string path = "/v1/chat/completions";
  constexpr int64_t kShortMax = 8;

  // First: cold prefill of the system prompt; it keeps decoding while the third arrives.
  std::mutex mu;
  std::condition_variable cv;
  bool first_streaming = false;
  StreamHooks hooks;
  hooks.on_token = [&](double, size_t) {
    std::lock_guard<std::mutex> lock(mu);
    if (!first_streaming) {
      first_streaming = true;
      cv.notify_all();
    }
  };
  RequestRecord first, third;
  std::thread t1([&] {
    first = api.stream(path, chat_body(model, sp.text, user_a, o.prefix_decode_tokens), true, 0,
                       o.prefix_decode_tokens, hooks);
    std::lock_guard<std::mutex> lock(mu);
    first_streaming = true;  // also wakes the waiter when the first failed
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return first_streaming; });
  }
  std::thread t3([&] { third = api.stream(path, chat_body(model, sp.text, user_c, kShortMax), true, 0, kShortMax); });
  t3.join();
  t1.join();
  log(fmt::format("prefix: first request  TTFT {:.1f} ms, {} output tokens{}", ms(first.ttft), first.output_tokens,
                  first.ok ? "" : fmt::format(" FAILED: {}", first.error)));
  const bool concurrent = first.ok && third.ok && third.has_ttft && !first.token_times.empty() &&
                          third.start + third.ttft < first.end;
  log(fmt::format("prefix: third request  TTFT {:.1f} ms, sent while the first decodes{}{}", ms(third.ttft),
                  concurrent ? "" : " (but the first had finished before the third's first token)",
                  third.ok ? "" : fmt::format(" FAILED: {}", third.error)));
  // Second: same system prompt, another question, on an idle server.
  const RequestRecord second = api.stream(path, chat_body(model, sp.text, user_b, kShortMax), true, 0, kShortMax);
  log(fmt::format("prefix: second request TTFT {:.1f} ms (idle server){}", ms(second.ttft),
                  second.ok ? "" : fmt::format(" FAILED: {}", second.error)));

  const double r2 = first.ttft > 0 ? second.ttft / first.ttft : std::numeric_limits<double>::quiet_NaN();
  const double r3 = first.ttft > 0 ? third.ttft / first.ttft : std::numeric_limits<double>::quiet_NaN();
  res.ratio = std::max(r2, r3);
  log(fmt::format("prefix: TTFT second / first = {:.3f}, third / first = {:.3f}", r2, r3));
  if (!first.ok || !second.ok || !third.ok) res.note = "a request failed";
  else if (!concurrent) res.note = "the third request did not overlap the first's decode (first stopped early)";
  if (sp.tokens > 0 && first.ok && first.prompt_tokens > 0 && first.prompt_tokens < sp.tokens)
    res.note = fmt::format("the first prompt has {} tokens, fewer than the system prompt", first.prompt_tokens);
  const std::string after = prefix_metrics(api);
  if (!after.empty()) log(fmt::format("prefix: server prefix-cache metrics{}:\n{}", before.empty() ? "" : " (after)", after));
  res.details = {{"system_prompt_tokens", sp.tokens},
                 {"prefix_len", o.prefix_len},
                 {"first_prompt_tokens", first.prompt_tokens},
                 {"ttft_first_ms", ms(first.ttft)},
                 {"ttft_second_ms", ms(second.ttft)},
                 {"ttft_third_ms", ms(third.ttft)},
                 {"ratio_second", r2},
                 {"ratio_third", r3},
                 {"third_overlapped_first_decode", concurrent},
                 {"requests",
                  {{"first", record_json(first, first.start)},
                   {"second", record_json(second, first.start)},
                   {"third", record_json(third, first.start)}}}};
  if (!after.empty()) res.details["server_prefix_metrics"] = after;
  judge(res);
  return res;
}

// ---------------------------------------------------------------------------------------------
// chunked prefill

namespace {

// Four (or more) streams that record how many content chunks each has and when the last came.
class Streams {
 public:
  Streams(const ApiClient& api, const std::string& model, const std::vector<BenchRequest>& reqs)
      : records_(reqs.size()), counts_(reqs.size(), 0), last_(reqs.size(), -1), ended_(reqs.size(), false) {
    for (size_t i = 0; i < reqs.size(); ++i)
      threads_.emplace_back([this, &api, model, r = reqs[i], i] {
        StreamHooks hooks;
        hooks.cancel = &cancel_;
        hooks.on_token = [this, i](double t, size_t n) {
          std::lock_guard<std::mutex> lock(mu_);
          counts_[i] = n;
          last_[i] = t;
          cv_.notify_all();
        };
        RequestRecord rec = api.stream(endpoint_of(r), request_body(r, model), r.chat, r.prompt_len, r.max_tokens, hooks);
        std::lock_guard<std::mutex> lock(mu_);
        records_[i] = std::move(rec);
        ended_[i] = true;
        cv_.notify_all();
      });
  }
  ~Streams() { stop(); }
  Streams(const Streams&) = delete;
  Streams& operator=(const Streams&) = delete;

  // Waits until every stream has `n` chunks, or ended; false on timeout.
  bool wait_all_have(size_t n, double timeout_s) {
    return wait(timeout_s, [&](size_t i) { return counts_[i] >= n; });
  }
  // Waits until every stream has a chunk after time t, or ended; false on timeout.
  bool wait_all_after(double t, double timeout_s) {
    return wait(timeout_s, [&](size_t i) { return last_[i] > t; });
  }
  // Cancels what still streams and joins; the records are final afterwards.
  const std::vector<RequestRecord>& stop() {
    cancel_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    return records_;
  }

 private:
  template <class Pred>
  bool wait(double timeout_s, Pred pred) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] {
      for (size_t i = 0; i < records_.size(); ++i)
        if (!ended_[i] && !pred(i)) return false;
      return true;
    });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> cancel_{false};
  std::vector<RequestRecord> records_;
  std::vector<size_t> counts_;
  std::vector<double> last_;
  std::vector<bool> ended_;
  std::vector<std::thread> threads_;
};

}  // namespace

ScenarioResult run_chunked_prefill_scenario(const ApiClient& api, const std::string& model,
                                            const ScenarioOptions& o, const Log& log) {
  ScenarioResult res;
  res.name = "chunked-prefill";
  res.what = "ITL P99 / median of 4 streams over the long prefill and an equal stretch before";
  res.op = "<=";
  res.target = 4;
  constexpr size_t kStreams = 4;
  constexpr size_t kWarmTokens = 16;  // each stream has decoded this much before the long prompt goes out
  const auto stream_reqs =
      random_token_requests(static_cast<int>(kStreams), o.input_len, o.stream_tokens, sub_seed(o.seed, 31));
  BenchRequest long_req = random_token_requests(1, o.long_prompt_len, 2, sub_seed(o.seed, 37))[0];

  // The same length alone on the idle server first (other ids: no prefix reuse), so the streams
  // can decode for about as long as the prefill will take before the long prompt goes out.
  const BenchRequest probe = random_token_requests(1, o.long_prompt_len, 1, sub_seed(o.seed, 41))[0];
  const RequestRecord probe_rec =
      api.stream(endpoint_of(probe), request_body(probe, model), false, probe.prompt_len, probe.max_tokens);
  log(fmt::format("chunked-prefill: a {}-token prompt alone: TTFT {:.1f} ms{}", o.long_prompt_len, ms(probe_rec.ttft),
                  probe_rec.ok ? "" : fmt::format(" FAILED: {}", probe_rec.error)));
  const double lead_s = probe_rec.ok ? 1.5 * probe_rec.ttft : 0;

  Streams streams(api, model, stream_reqs);
  if (!streams.wait_all_have(kWarmTokens, o.timeout_s)) log("chunked-prefill: timed out waiting for the streams");
  std::this_thread::sleep_for(std::chrono::duration<double>(std::min(lead_s, o.timeout_s)));
  log(fmt::format("chunked-prefill: {} streams decoding; sending another {}-token prompt", kStreams,
                  o.long_prompt_len));
  const RequestRecord long_rec =
      api.stream(endpoint_of(long_req), request_body(long_req, model), false, long_req.prompt_len, long_req.max_tokens);
  const double t_send = long_rec.start;
  const double t_first = long_rec.start + long_rec.ttft;
  // Keep the streams until each has a token after the long prompt's first one, so a stall that
  // ends after the window is still measured.
  const bool after_ok = long_rec.ok && streams.wait_all_after(t_first, o.timeout_s);
  const std::vector<RequestRecord>& recs = streams.stop();
  size_t ended_early = 0;  // finished on their own before the long prompt's first token
  for (const RequestRecord& r : recs)
    if (!r.cancelled && r.end < t_first) ++ended_early;

  const double window = t_first - t_send;
  const double t0 = t_send - window;
  double streams_first = -std::numeric_limits<double>::infinity();  // the latest first chunk of a stream
  for (const RequestRecord& r : recs)
    if (!r.token_times.empty()) streams_first = std::max(streams_first, r.token_times.front());
  const Summary all = summarize(gaps_overlapping(recs, t0, t_first));
  const Summary during = summarize(gaps_overlapping(recs, t_send, t_first));
  const Summary before = summarize(gaps_overlapping(recs, t0, t_send));
  res.ratio = all.median > 0 ? all.p99 / all.median : std::numeric_limits<double>::quiet_NaN();
  const double before_s = std::min(window, t_send - streams_first);
  log(fmt::format("chunked-prefill: long prompt TTFT {:.1f} ms alongside the streams{}", ms(long_rec.ttft),
                  long_rec.ok ? "" : fmt::format(" FAILED: {}", long_rec.error)));
  log(fmt::format("chunked-prefill: stream ITL over {:.2f} s before + {:.2f} s of prefill: median {:.1f} ms, "
                  "P99 {:.1f} ms, max {:.1f} ms ({} gaps); during the prefill: median {:.1f} ms, max {:.1f} ms; "
                  "before: median {:.1f} ms",
                  before_s, window, ms(all.median), ms(all.p99), ms(all.max), all.count, ms(during.median),
                  ms(during.max), ms(before.median)));

  int failed_streams = 0;
  for (const RequestRecord& r : recs)
    if (!r.ok && !r.cancelled) ++failed_streams;
  if (!probe_rec.ok) res.note = fmt::format("the long prompt alone failed: {}", probe_rec.error);
  else if (!long_rec.ok) res.note = fmt::format("the long prompt failed: {}", long_rec.error);
  else if (failed_streams > 0) res.note = fmt::format("{} of the streams failed", failed_streams);
  else if (ended_early > 0 || !after_ok)
    res.note = "a stream ended before the long prompt's first token (raise --stream-tokens)";
  else if (during.count == 0) res.note = "no stream gap overlapped the prefill";
  if (before_s < window && res.note.empty())
    log(fmt::format("chunked-prefill: note: the streams began {:.2f} s before the long prompt, less than the "
                    "{:.2f} s prefill window",
                    before_s, window));
  nlohmann::json stream_json = nlohmann::json::array();
  for (const RequestRecord& r : recs) stream_json.push_back(record_json(r, t0));
  res.details = {{"long_prompt_len", o.long_prompt_len},
                 {"long_prompt_tokens", long_rec.prompt_tokens},
                 {"long_ttft_ms", ms(long_rec.ttft)},
                 {"long_ttft_idle_ms", ms(probe_rec.ttft)},
                 {"window_s", window},
                 {"before_s", before_s},
                 {"itl_window_ms", summary_json(scaled(all, 1e3))},
                 {"itl_during_prefill_ms", summary_json(scaled(during, 1e3))},
                 {"itl_before_ms", summary_json(scaled(before, 1e3))},
                 {"long_request", record_json(long_rec, t0)},
                 {"streams", stream_json}};
  judge(res);
  return res;
}

}  // namespace ilm::serve_bench
