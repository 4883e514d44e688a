// The server's text layer: stop strings with holdback (split across tokens and inside one
// multi-byte character), UTF-8 safety of everything sent, per-choice token accounting, and
// cancelling an engine request only when every choice is done.
#include <gtest/gtest.h>

#include "test_util.h"

#include <deque>
#include <random>
#include <string>
#include <vector>

#include "server/generation.h"
#include "server/openai_response.h"
#include "server/text_stream.h"

namespace ilm::server {
namespace {

TEST(serverStopScan, FindsTheEarliestMatchAndHoldsBackPossibleStarts) {
  const std::vector<std::string> stop = {"world", "lo w"};
  EXPECT_EQ(scan_stop("hello world", stop).match, 3u);  // "lo w" starts first
  const StopScan none = scan_stop("hello wor", {"world"});
  EXPECT_EQ(none.match, std::string_view::npos);
  EXPECT_EQ(none.safe, 6u);  // "wor" might become "world"
  EXPECT_EQ(scan_stop("hello", {"xyz"}).safe, 5u);
  EXPECT_EQ(scan_stop("abcab", {"abcabd"}).safe, 0u);  // the whole text is a prefix
  EXPECT_EQ(scan_stop("aab", {"ab"}).match, 1u);
  EXPECT_EQ(scan_stop("text", {}).safe, 4u);
}

class serverText : public test::TokenizerFixture {
 protected:
  TokenId byte_token(int b) const {
    auto id = tok().piece_to_id(fmt_byte(b));
    EXPECT_TRUE(id.has_value());
    return *id;
  }
  static std::string fmt_byte(int b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    return buf;
  }
  // Feeds ids one by one; returns every piece sent (and the final flush as the last piece).
  std::vector<std::string> run(TextStream& ts, const std::vector<TokenId>& ids) const {
    std::vector<std::string> pieces;
    for (TokenId id : ids) pieces.push_back(ts.push(id));
    pieces.push_back(ts.finish());
    return pieces;
  }
  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& p : v) s += p;
    return s;
  }
};

TEST_F(serverText, WithoutStopStringsTheTextIsTheWholeDecode) {
  const auto ids = tok().encode("Hello, 世界! 😀 ok", false);
  TextStream ts(tok(), {}, true);
  const auto pieces = run(ts, ids);
  EXPECT_EQ(join(pieces), tok().decode(ids, true));
  for (const auto& p : pieces) EXPECT_TRUE(is_valid_utf8(p));
  EXPECT_FALSE(ts.stopped());
}

TEST_F(serverText, StopStringSplitAcrossTokensIsNeverSent) {
  // "Hello world" tokens; stop "o wo" spans "Hello" and " world".
  const auto ids = tok().encode("Hello world and more", false);
  TextStream ts(tok(), {"o wo"}, true);
  std::string sent;
  for (TokenId id : ids) {
    sent += ts.push(id);
    EXPECT_EQ(sent.find("o w"), std::string::npos) << "a stop string's start was sent: " << sent;
    if (ts.stopped()) break;
  }
  sent += ts.finish();
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(sent, "Hell");
}

TEST_F(serverText, StopStringsApplyOnlyAfterMinTokens) {
  // "a b a b a": stop "a" would end the reply at once; with min_tokens = 2 the first two
  // tokens' text is sent as it is, and the next "a" ends it.
  const auto ids = tok().encode("a b a b a", false);
  ASSERT_GE(ids.size(), 4u);
  std::string first_two = tok().decode({ids[0], ids[1]}, true);
  TextStream ts(tok(), {"a"}, true, 2);
  std::string sent;
  for (TokenId id : ids) {
    sent += ts.push(id);
    if (ts.stopped()) break;
  }
  sent += ts.finish();
  EXPECT_TRUE(ts.stopped());
  ASSERT_EQ(sent.substr(0, first_two.size()), first_two);
  EXPECT_EQ(sent.find('a', first_two.size()), std::string::npos) << sent;
  TextStream plain(tok(), {"a"}, true);
  EXPECT_EQ(join(run(plain, ids)), "");
}

TEST_F(serverText, StopStringInsideAMultiByteCharacter) {
  // "aé!b" as byte-fallback tokens: 'é' is C3 A9 in two tokens; the stop string "é!" must
  // not leak its first byte, and text before it must come out whole.
  const std::vector<TokenId> ids = {byte_token('a'), byte_token(0xC3), byte_token(0xA9), byte_token('!'),
                                    byte_token('b')};
  ASSERT_EQ(tok().decode(ids), "a\xC3\xA9!b");
  TextStream ts(tok(), {"\xC3\xA9!"}, true);
  const auto pieces = run(ts, ids);
  for (const auto& p : pieces) EXPECT_TRUE(is_valid_utf8(p)) << p;
  EXPECT_EQ(join(pieces), "a");
  EXPECT_TRUE(ts.stopped());

  // The same bytes with a stop string that never completes: everything comes out at the end.
  TextStream ts2(tok(), {"\xC3\xA9?"}, true);
  const auto pieces2 = run(ts2, ids);
  EXPECT_EQ(join(pieces2), "a\xC3\xA9!b");
  EXPECT_EQ(pieces2[2], "");          // 'é' is held back: it may start the stop string
  EXPECT_EQ(pieces2[3], "\xC3\xA9!");  // '!' shows it does not
  EXPECT_FALSE(ts2.stopped());
}

TEST_F(serverText, HeldBackTextIsReleasedAtTheEnd) {
  const auto ids = tok().encode("abc", false);
  TextStream ts(tok(), {"c!"}, true);
  const auto pieces = run(ts, ids);
  EXPECT_EQ(join(pieces), "abc");
  EXPECT_FALSE(ts.stopped());
}

TEST_F(serverText, IncompleteTailBecomesReplacementCharacter) {
  TextStream ts(tok(), {}, true);
  const auto pieces = run(ts, {byte_token('x'), byte_token(0xE4), byte_token(0xB8)});
  EXPECT_EQ(join(pieces), "x\xEF\xBF\xBD");
}

TEST_F(serverText, RandomTokensAlwaysGiveValidUtf8AndTheWholeDecode) {
  // Byte-fallback, special and ordinary tokens in any order: each piece is valid UTF-8 and the
  // pieces add up to the tokenizer's decode (skip_special as the server uses it).
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> any_id(0, static_cast<int>(tok().vocab_size()) - 1);
  std::uniform_int_distribution<int> any_byte(0x80, 0xFF);
  for (int round = 0; round < 50; ++round) {
    std::vector<TokenId> ids;
    for (int i = 0; i < 40; ++i) ids.push_back(i % 3 == 0 ? any_id(rng) : byte_token(any_byte(rng)));
    for (bool skip : {true, false}) {
      TextStream ts(tok(), {}, skip);
      const auto pieces = run(ts, ids);
      for (const auto& p : pieces) ASSERT_TRUE(is_valid_utf8(p));
      ASSERT_EQ(join(pieces), tok().decode(ids, skip));
    }
  }
}

TEST_F(serverText, SpecialTokensFollowSkipSpecial) {
  const TokenId im_start = *tok().piece_to_id("<|im_start|>");
  const std::vector<TokenId> ids = {byte_token('a'), im_start, byte_token('b')};
  TextStream skip(tok(), {}, true), keep(tok(), {}, false);
  EXPECT_EQ(join(run(skip, ids)), "ab");
  EXPECT_EQ(join(run(keep, ids)), "a<|im_start|>b");
}

// Scripted engine events for Generation.
class FakeSource : public EventSource {
 public:
  std::deque<EngineEvent> events;
  int cancels = 0;
  int64_t cached = 0;
  bool next(EngineEvent& ev, std::chrono::milliseconds) override {
    if (events.empty()) return false;
    ev = events.front();
    events.pop_front();
    return true;
  }
  void cancel() override { ++cancels; }
  int64_t cached_tokens() const override { return cached; }
};

EngineEvent token(int choice, TokenId id, float lp = -0.5f) {
  EngineEvent e;
  e.kind = EngineEvent::Kind::Token;
  e.choice = choice;
  e.token = id;
  e.logprob = lp;
  return e;
}
EngineEvent finish(int choice, const std::string& reason) {
  EngineEvent e;
  e.kind = EngineEvent::Kind::Finish;
  e.choice = choice;
  e.finish_reason = reason;
  return e;
}

TEST_F(serverText, GenerationCountsTokensAndCancelsWhenEveryChoiceStopped) {
  GenerationRequest req;
  req.n = 2;
  req.stop = {"!"};
  req.prompts = {{1, 2, 3}};
  req.logprobs = 0;
  auto src = std::make_unique<FakeSource>();
  FakeSource* s = src.get();
  const TokenId a = byte_token('a'), bang = byte_token('!'), b = byte_token('b');
  // Choice 0 hits the stop string at its 2nd token; choice 1 runs on and ends by length; the
  // engine still reports a token of choice 0 and its Finish("cancelled"), both ignored.
  s->events = {token(0, a), token(1, b), token(0, bang), token(0, a), token(1, b),
               finish(1, "length"), finish(0, "cancelled")};
  s->cached = 2;
  std::vector<std::unique_ptr<EventSource>> sources;
  sources.push_back(std::move(src));
  Generation gen(tok(), req, std::move(sources));
  std::vector<ChoiceDelta> deltas;
  const auto r = gen.run([&](ChoiceDelta&& d) { deltas.push_back(std::move(d)); return true; }, {});
  ASSERT_EQ(r.choices.size(), 2u);
  EXPECT_EQ(r.choices[0].text, "a");
  EXPECT_EQ(r.choices[0].finish_reason, "stop");
  EXPECT_EQ(r.choices[0].completion_tokens, 2);  // up to and including the stop string's token
  EXPECT_EQ(r.choices[0].logprobs.size(), 2u);
  EXPECT_EQ(r.choices[1].text, "bb");
  EXPECT_EQ(r.choices[1].finish_reason, "length");
  EXPECT_EQ(r.choices[1].completion_tokens, 2);
  EXPECT_EQ(r.prompt_tokens, 3);
  EXPECT_EQ(r.completion_tokens, 4);
  EXPECT_EQ(r.cached_tokens, 2);
  EXPECT_EQ(s->cancels, 0);  // choice 1 ended by the engine: nothing to cancel
  int finishes = 0;
  for (const auto& d : deltas) finishes += d.finish_reason.empty() ? 0 : 1;
  EXPECT_EQ(finishes, 2);
}

TEST_F(serverText, GenerationCancelsOnceAllChoicesHitStopStrings) {
  GenerationRequest req;
  req.n = 1;
  req.stop = {"b"};
  req.prompts = {{1}};
  auto src = std::make_unique<FakeSource>();
  FakeSource* s = src.get();
  s->events = {token(0, byte_token('a')), token(0, byte_token('b')), token(0, byte_token('c'))};
  std::vector<std::unique_ptr<EventSource>> sources;
  sources.push_back(std::move(src));
  {
    Generation gen(tok(), req, std::move(sources));
    const auto r = gen.run({}, {});
    EXPECT_EQ(r.choices[0].text, "a");
    EXPECT_EQ(r.choices[0].completion_tokens, 2);
    EXPECT_EQ(s->cancels, 1);
    EXPECT_EQ(s->events.size(), 1u);  // it did not wait for the rest
  }
}

TEST_F(serverText, GenerationCountsTheStopIdAndReportsErrors) {
  GenerationRequest req;
  req.prompts = {{1, 2}};
  auto src = std::make_unique<FakeSource>();
  EngineEvent stop = finish(0, "stop");
  stop.stop_token = true;
  src->events = {token(0, byte_token('a')), stop};
  std::vector<std::unique_ptr<EventSource>> sources;
  sources.push_back(std::move(src));
  Generation gen(tok(), req, std::move(sources));
  const auto r = gen.run({}, {});
  EXPECT_EQ(r.choices[0].completion_tokens, 2);  // 'a' and the stop id
  EXPECT_EQ(r.choices[0].finish_reason, "stop");

  auto bad = std::make_unique<FakeSource>();
  FakeSource* b = bad.get();
  EngineEvent err;
  err.kind = EngineEvent::Kind::Error;
  err.error = "boom";
  bad->events = {token(0, byte_token('a')), err};
  std::vector<std::unique_ptr<EventSource>> sources2;
  sources2.push_back(std::move(bad));
  Generation gen2(tok(), req, std::move(sources2));
  const auto r2 = gen2.run({}, {});
  EXPECT_EQ(r2.error, "boom");
  EXPECT_GE(b->cancels, 1);
}

TEST_F(serverText, GenerationStopsWhenTheClientIsGone) {
  GenerationRequest req;
  req.prompts = {{1}};
  auto src = std::make_unique<FakeSource>();
  FakeSource* s = src.get();
  s->events = {token(0, byte_token('a')), token(0, byte_token('b'))};
  std::vector<std::unique_ptr<EventSource>> sources;
  sources.push_back(std::move(src));
  Generation gen(tok(), req, std::move(sources));
  const auto r = gen.run([](ChoiceDelta&&) { return false; }, {});  // the first write fails
  EXPECT_TRUE(r.client_gone);
  EXPECT_GE(s->cancels, 1);

  auto idle = std::make_unique<FakeSource>();  // no events at all: noticed by polling
  FakeSource* i = idle.get();
  std::vector<std::unique_ptr<EventSource>> sources2;
  sources2.push_back(std::move(idle));
  Generation gen2(tok(), req, std::move(sources2));
  const auto r2 = gen2.run({}, [] { return true; });
  EXPECT_TRUE(r2.client_gone);
  EXPECT_GE(i->cancels, 1);
}

TEST_F(serverText, LogprobTokensAreValidUtf8WithRawBytes) {
  GenerationRequest req;
  req.prompts = {{1}};
  req.logprobs = 2;
  auto src = std::make_unique<FakeSource>();
  EngineEvent t = token(0, byte_token(0xE4), -std::numeric_limits<float>::infinity());
  t.top = {{byte_token(0xE4), -0.1f}, {byte_token('a'), -2.0f}};
  src->events = {t, finish(0, "length")};
  std::vector<std::unique_ptr<EventSource>> sources;
  sources.push_back(std::move(src));
  Generation gen(tok(), req, std::move(sources));
  const auto r = gen.run({}, {});
  ASSERT_EQ(r.choices[0].logprobs.size(), 1u);
  const auto& e = r.choices[0].logprobs[0];
  EXPECT_EQ(e.token, "\xEF\xBF\xBD");
  EXPECT_EQ(e.bytes, "\xE4");
  EXPECT_EQ(e.logprob, -9999.0f);  // JSON has no -inf
  ASSERT_EQ(e.top.size(), 2u);
  EXPECT_EQ(e.top[1].token, "a");
  EXPECT_EQ(r.choices[0].text, "\xEF\xBF\xBD");

  ResponseMeta meta{"chatcmpl-x", 1, "tiny", Endpoint::Chat, true};
  const auto j = response_json(meta, r);
  const auto& lp = j["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(lp["bytes"], nlohmann::json::array({0xE4}));
  EXPECT_EQ(lp["top_logprobs"].size(), 2u);
  meta.endpoint = Endpoint::Completions;
  const auto c = response_json(meta, r);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["logprobs"]["tokens"][0], "\xEF\xBF\xBD");
  EXPECT_EQ(c["choices"][0]["logprobs"]["text_offset"][0], 0);
  EXPECT_EQ(c["usage"]["total_tokens"], 2);
}

TEST(serverResponse, ChunksAndErrorsFollowTheOpenAiSchema) {
  ResponseMeta meta{"chatcmpl-1", 7, "tiny", Endpoint::Chat, false};
  const auto role = role_chunk(meta, 0, true);
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(role["usage"].is_null());
  ChoiceDelta d;
  d.index = 1;
  d.text = "hi";
  const auto chunk = delta_chunk(meta, d, false);
  EXPECT_EQ(chunk["choices"][0]["delta"]["content"], "hi");
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(chunk.contains("usage"));
  d.text.clear();
  d.finish_reason = "length";
  EXPECT_TRUE(delta_chunk(meta, d, false)["choices"][0]["delta"].empty());
  EXPECT_EQ(sse_event(nlohmann::json{{"a", 1}}), "data: {\"a\":1}\n\n");
  // Invalid UTF-8 never reaches the wire, even if some bug let it through.
  EXPECT_TRUE(is_valid_utf8(dump_json(nlohmann::json{{"a", std::string("\xFF")}})));
  const auto e = error_json(ApiError(404, "no such model", "model", "model_not_found"));
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["code"], "model_not_found");
  EXPECT_EQ(e["error"]["param"], "model");
  EXPECT_TRUE(error_json(ApiError(500, "x"))["error"]["param"].is_null());
  EXPECT_EQ(make_response_id(Endpoint::Completions).rfind("cmpl-", 0), 0u);
}

}  // namespace
}  // namespace ilm::server
