// bench-serve as vLLM users run it: ShareGPT sampling (vLLM's length filters) and the
// `vllm bench serve` result file (keys, per-request lists, default name).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "server/serve_bench_dataset.h"
#include "server/serve_bench_vllm.h"
#include "common/error.h"

namespace ilm::serve_bench {
namespace {

TEST(ServeBenchVllm, ShareGptTakesFirstTwoTurnsAndVllmLengthFilters) {
  const auto path = std::filesystem::temp_directory_path() / "ilm_sharegpt_test.json";
  std::ofstream(path) << R"([
    {"conversations": [{"from": "human", "value": "aaaa"}, {"from": "gpt", "value": "bbbbbb"}, {"from": "human", "value": "x"}]},
    {"conversations": [{"from": "human", "value": "only one turn"}]},
    {"conversations": [{"from": "human", "value": "aa"}, {"from": "gpt", "value": "bbbbbb"}]},
    {"conversations": [{"from": "human", "value": "cccccc"}, {"from": "gpt", "value": "bb"}]},
    {"id": "no conversations"}
  ])";
  const std::vector<BenchRequest> pool = load_sharegpt(path, 0);
  ASSERT_EQ(pool.size(), 3u);
  EXPECT_EQ(pool[0].input, "aaaa");
  EXPECT_EQ(pool[0].reference_reply, "bbbbbb");
  EXPECT_FALSE(pool[0].chat);
  const TokenCounter chars = [](const std::string& s) { return std::optional<int64_t>(static_cast<int64_t>(s.size())); };
  // Token count = characters here: "aa" (prompt < 4) and the reply "bb" (< 4) are dropped.
  auto kept = resolve_sharegpt(pool, 10, 1, chars, 128);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].prompt_len, 4);
  EXPECT_EQ(kept[0].max_tokens, 6);
  // A fixed output length skips the reply checks; `needed` caps the count.
  kept = resolve_sharegpt(load_sharegpt(path, 9), 10, 1, chars, 128);
  EXPECT_EQ(kept.size(), 2u);
  for (const auto& r : kept) EXPECT_EQ(r.max_tokens, 9);
  EXPECT_EQ(resolve_sharegpt(load_sharegpt(path, 9), 1, 1, chars, 128).size(), 1u);
  // A server without /tokenize: no filtering, the fallback length.
  const TokenCounter none = [](const std::string&) { return std::optional<int64_t>(); };
  kept = resolve_sharegpt(pool, 10, 1, none, 128);
  EXPECT_EQ(kept.size(), 3u);
  for (const auto& r : kept) EXPECT_EQ(r.max_tokens, 128);
  std::ofstream(path) << R"({"conversations": []})";
  EXPECT_THROW(load_sharegpt(path, 0), Error);
  std::filesystem::remove(path);
}

TEST(ServeBenchVllm, ResultJsonHasVllmKeysAndPerRequestLists) {
  LevelResult level;
  RequestRecord ok;
  ok.ok = true;
  ok.has_ttft = true;
  ok.ttft = 0.25;
  ok.prompt_tokens = 16;
  ok.output_tokens = 3;
  ok.token_times = {1.0, 1.5, 1.75};
  ok.generated_text = "abc";
  RequestRecord bad;
  bad.error = "HTTP 500: boom";
  bad.prompt_tokens = 16;
  level.records = {ok, bad};
  level.metrics.concurrency = 4;
  level.metrics.request_rate = std::numeric_limits<double>::infinity();
  level.metrics.completed = 1;
  level.metrics.failed = 1;
  level.metrics.ttft_ms.mean = 250;
  const auto j = vllm_result_json({"openai", "org/model-7b", "20250101-120000", 2}, level);
  for (const char* k : {"date", "backend", "model_id", "num_prompts", "request_rate", "max_concurrency", "duration",
                        "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
                        "output_throughput", "total_token_throughput", "mean_ttft_ms", "median_ttft_ms",
                        "std_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_itl_ms", "mean_e2el_ms", "input_lens",
                        "output_lens", "ttfts", "itls", "generated_texts", "errors"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_EQ(j["max_concurrency"], 4);
  EXPECT_EQ(j["mean_ttft_ms"], 250.0);
  EXPECT_EQ(j["output_lens"], nlohmann::json({3, 0}));
  EXPECT_EQ(j["ttfts"], nlohmann::json({0.25, 0.0}));
  EXPECT_EQ(j["itls"][0], nlohmann::json({0.5, 0.25}));
  EXPECT_TRUE(j["itls"][1].empty());
  EXPECT_EQ(j["generated_texts"], nlohmann::json({"abc", ""}));
  EXPECT_EQ(j["errors"], nlohmann::json({"", "HTTP 500: boom"}));
  const VllmRunInfo info{"openai", "org/model-7b", "20250101-120000", 2};
  EXPECT_EQ(vllm_result_filename(info, std::numeric_limits<double>::infinity(), 4),
            "openai-infqps-concurrency4-model-7b-20250101-120000.json");
  EXPECT_EQ(vllm_result_filename(info, 5, 1), "openai-5.0qps-concurrency1-model-7b-20250101-120000.json");
  EXPECT_EQ(vllm_result_filename(info, 0.5, 1), "openai-0.5qps-concurrency1-model-7b-20250101-120000.json");
}

}  // namespace
}  // namespace ilm::serve_bench
