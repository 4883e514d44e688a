// bench-serve stream parsing: SSE framing split anywhere, what counts as a token (content, not
// role or usage chunks), usage over chunk counts, error events, [DONE]; URLs; datasets; bodies.
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "server/serve_bench_client.h"
#include "server/serve_bench_dataset.h"
#include "server/serve_bench_sse.h"
#include "test_util.h"

namespace ilm::serve_bench {
namespace {

std::vector<std::string> events_of(const std::string& stream, size_t piece) {
  std::vector<std::string> out;
  SseParser p;
  const auto h = [&](std::string_view d) { out.emplace_back(d); };
  for (size_t i = 0; i < stream.size(); i += piece) p.feed(std::string_view(stream).substr(i, piece), h);
  p.finish(h);
  return out;
}

TEST(ServeBenchSse, FramingIsIndependentOfHowBytesArrive) {
  const std::string s =
      ": comment\n\ndata: {\"a\":1}\n\ndata:{\"b\":2}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\nid: 3\n\ndata: [DONE]";
  const std::vector<std::string> want = {"{\"a\":1}", "{\"b\":2}", "line1\nline2", "[DONE]"};
  for (size_t piece : {1, 2, 3, 7, 1000}) EXPECT_EQ(events_of(s, piece), want) << "piece " << piece;
}

struct Fed {
  RequestRecord rec;
  void feed(bool chat, const std::vector<std::pair<std::string, double>>& events, double end) {
    rec.start = 1.0;
    StreamRecorder r(rec, chat);
    for (const auto& [data, t] : events) r.on_data(data, t);
    r.finish(end);
  }
};

TEST(ServeBenchSse, CompletionStreamUsesUsageForOutputTokens) {
  Fed f;
  f.feed(false,
         {{R"({"choices":[{"index":0,"text":"ab","finish_reason":null}]})", 1.25},
          {R"({"choices":[{"index":0,"text":"","finish_reason":null}]})", 1.30},  // no content: not a token
          {R"({"choices":[{"index":0,"text":"cd","finish_reason":null}]})", 1.35},
          {R"({"choices":[{"index":0,"text":"e","finish_reason":"length"}]})", 1.45},
          {R"({"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":6,"total_tokens":13}})", 1.46},
          {"[DONE]", 1.46}},
         1.5);
  const RequestRecord& r = f.rec;
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_NEAR(r.ttft, 0.25, 1e-12);
  ASSERT_EQ(r.token_times.size(), 3u);
  EXPECT_EQ(r.output_tokens, 6);
  EXPECT_TRUE(r.usage_reported);
  EXPECT_EQ(r.prompt_tokens, 7);
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_NEAR(r.e2el(), 0.5, 1e-12);
  EXPECT_NEAR(r.tpot(), 0.25 / 5, 1e-12);
}

TEST(ServeBenchSse, ChatRoleChunkIsNotTheFirstToken) {
  Fed f;
  f.feed(true,
         {{R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})", 1.01},
          {R"({"choices":[{"index":0,"delta":{"content":"Hi"}}]})", 1.4},
          {R"({"choices":[{"index":0,"delta":{"content":" there"},"finish_reason":"stop"}]})", 1.5},
          {"[DONE]", 1.5}},
         1.5);
  EXPECT_TRUE(f.rec.ok);
  EXPECT_NEAR(f.rec.ttft, 0.4, 1e-12);
  EXPECT_FALSE(f.rec.usage_reported);  // no usage: fall back to counting content chunks
  EXPECT_EQ(f.rec.output_tokens, 2);
  EXPECT_EQ(f.rec.finish_reason, "stop");
}

TEST(ServeBenchSse, OnlyEmptyChunksStillGiveATtft) {
  Fed f;
  f.feed(false,
         {{R"({"choices":[{"index":0,"text":"","finish_reason":"stop"}]})", 1.2},
          {R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}})", 1.2},
          {"[DONE]", 1.2}},
         1.2);
  EXPECT_TRUE(f.rec.ok);
  EXPECT_TRUE(f.rec.has_ttft);
  EXPECT_NEAR(f.rec.ttft, 0.2, 1e-12);
  EXPECT_EQ(f.rec.output_tokens, 1);
  EXPECT_FALSE(f.rec.has_tpot());
}

TEST(ServeBenchSse, FailuresAreReported) {
  Fed err;
  err.feed(false,
           {{R"({"choices":[{"index":0,"text":"a"}]})", 1.1},
            {R"({"error":{"message":"engine died","type":"server_error"}})", 1.2}},
           1.2);
  EXPECT_FALSE(err.rec.ok);
  EXPECT_NE(err.rec.error.find("engine died"), std::string::npos);

  Fed no_done;
  no_done.feed(false, {{R"({"choices":[{"index":0,"text":"a"}]})", 1.1}}, 1.2);
  EXPECT_FALSE(no_done.rec.ok);
  EXPECT_NE(no_done.rec.error.find("[DONE]"), std::string::npos);

  Fed empty;
  empty.feed(false, {{"[DONE]", 1.1}}, 1.2);
  EXPECT_FALSE(empty.rec.ok);

  Fed garbage;
  garbage.feed(false, {{"{not json", 1.1}, {"[DONE]", 1.1}}, 1.2);
  EXPECT_FALSE(garbage.rec.ok);
  EXPECT_NE(garbage.rec.error.find("invalid JSON"), std::string::npos);
}

TEST(ServeBenchUrl, OriginAndPrefix) {
  auto u = parse_server_url("http://127.0.0.1:8080");
  EXPECT_EQ(u.origin, "http://127.0.0.1:8080");
  EXPECT_EQ(u.prefix, "");
  u = parse_server_url("localhost:9000/v1/");
  EXPECT_EQ(u.origin, "http://localhost:9000");
  EXPECT_EQ(u.prefix, "");
  u = parse_server_url("https://example.com/api/v1");
  EXPECT_EQ(u.origin, "https://example.com");
  EXPECT_EQ(u.prefix, "/api");
  EXPECT_THROW(parse_server_url("ftp://x"), Error);
  EXPECT_THROW(parse_server_url("http:///v1"), Error);
}

TEST(ServeBenchDataset, RandomTokenPromptsAreSeededAndInRange) {
  const auto a = random_token_requests(3, 50, 7, 11);
  ASSERT_EQ(a.size(), 3u);
  for (const auto& r : a) {
    EXPECT_FALSE(r.chat);
    EXPECT_EQ(r.prompt_len, 50);
    EXPECT_EQ(r.max_tokens, 7);
    ASSERT_EQ(r.input.size(), 50u);
    for (const auto& id : r.input) {
      EXPECT_GE(id.get<int64_t>(), 1000);
      EXPECT_LE(id.get<int64_t>(), 60000);
    }
  }
  EXPECT_NE(a[0].input, a[1].input);
  EXPECT_EQ(random_token_requests(3, 50, 7, 11)[2].input, a[2].input);
  EXPECT_NE(random_token_requests(3, 50, 7, 12)[0].input, a[0].input);

  const nlohmann::json body = request_body(a[0], "m");
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["prompt"], a[0].input);
  EXPECT_EQ(body["max_tokens"], 7);
  EXPECT_EQ(body["temperature"], 0);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_STREQ(endpoint_of(a[0]), "/v1/completions");
}

TEST(ServeBenchDataset, JsonlPromptsAndMessages) {
  test::TempDir dir("serve-bench-dataset");
  const auto path = dir.path() / "d.jsonl";
  {
    std::ofstream out(path);
    out << R"({"prompt": "hello"})" << "\n\n"
        << R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})" << "\n"
        << R"({"prompt": [1, 2, 3]})" << "\n";
  }
  const auto reqs = load_dataset(path, 9);
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_FALSE(reqs[0].chat);
  EXPECT_EQ(reqs[0].max_tokens, 9);
  EXPECT_TRUE(reqs[1].chat);
  EXPECT_EQ(reqs[1].max_tokens, 5);
  EXPECT_STREQ(endpoint_of(reqs[1]), "/v1/chat/completions");
  EXPECT_EQ(request_body(reqs[1], "m")["messages"][0]["content"], "hi");
  EXPECT_EQ(reqs[2].prompt_len, 3);
  const auto cyc = take_cycled(reqs, 5, 2);
  ASSERT_EQ(cyc.size(), 5u);
  EXPECT_EQ(cyc[0].prompt_len, 3);
  EXPECT_TRUE(cyc[2].chat);

  const auto bad = dir.path() / "bad.jsonl";
  {
    std::ofstream out(bad);
    out << R"({"prompt": "ok"})" << "\n" << R"({"text": "no"})" << "\n";
  }
  try {
    load_dataset(bad, 9);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_dataset(dir.path() / "missing.jsonl", 9), Error);
}

}  // namespace
}  // namespace ilm::serve_bench
