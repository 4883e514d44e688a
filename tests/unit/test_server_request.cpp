// OpenAI request parsing and validation: every client mistake is an ApiError with the right
// status and field, before anything reaches the engine. (The server's test suites are named
// server* in lower case so that `ctest -R server` selects them.)
#include <gtest/gtest.h>

#include "test_util.h"

#include <string>

#include "server/openai_request.h"
#include "tokenizer/chat_template.h"

namespace ilm::server {
namespace {

using nlohmann::json;

class serverRequest : public test::TokenizerFixture {
 protected:
  ParseContext ctx() const {
    ParseContext c;
    c.tokenizer = &tok();
    c.model_name = "tiny";
    c.defaults.temperature = 0.7f;
    c.max_n = 4;
    return c;
  }
  GenerationRequest chat(const std::string& body) const { return parse_chat_request(parse_body(body), ctx()); }
  GenerationRequest completion(const std::string& body) const {
    return parse_completion_request(parse_body(body), ctx());
  }
};

// Runs `fn`, expecting an ApiError with `status` whose param is `param` (when given).
template <typename F>
void expect_api_error(F&& fn, int status, const std::string& param = "", const std::string& code = "") {
  try {
    fn();
    ADD_FAILURE() << "no ApiError";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    if (!param.empty()) {
      EXPECT_EQ(e.param(), param) << e.what();
    }
    if (!code.empty()) {
      EXPECT_EQ(e.code(), code) << e.what();
    }
    EXPECT_FALSE(std::string(e.what()).empty());
  }
}

TEST_F(serverRequest, BodyMustBeUtf8JsonObject) {
  expect_api_error([] { parse_body("{\"a\": \"\xC3\x28\"}"); }, 400);
  expect_api_error([] { parse_body("{\"a\": "); }, 400);
  expect_api_error([] { parse_body(""); }, 400);
  expect_api_error([] { parse_body("[1, 2]"); }, 400);
  expect_api_error([] { parse_body("{\"a\": \"\\ud800\"}"); }, 400);  // lone surrogate escape
  EXPECT_TRUE(parse_body("{\"a\": \"\\u00e9\"}").is_object());
}

TEST_F(serverRequest, ChatMessagesAreRenderedWithTheTemplate) {
  const auto r = chat(R"({"model": "tiny", "messages": [{"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}],
      "some_unknown_field": {"x": 1}})");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0], encode_chat(tok(), {{"system", "be brief"}, {"user", "hi\nthere"}}, true));
  EXPECT_EQ(r.endpoint, Endpoint::Chat);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.7f);  // the server's default
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.n, 1);
  EXPECT_EQ(r.logprobs, -1);
  // "developer" is the newer name of the system role.
  EXPECT_EQ(chat(R"({"messages": [{"role": "developer", "content": "x"}]})").prompts[0],
            encode_chat(tok(), {{"system", "x"}}, true));
}

TEST_F(serverRequest, ChatFieldsAreParsed) {
  const auto r = chat(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
      "max_completion_tokens": 7, "temperature": 0, "top_p": 0.5, "top_k": -1, "min_p": 0.1, "seed": -3,
      "repetition_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": -0.5, "n": 2,
      "stop": ["a", "", "bc"], "stream": true, "stream_options": {"include_usage": true},
      "logprobs": true, "top_logprobs": 3})");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.sampling.seed, static_cast<uint64_t>(-3));
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));  // empty stop strings are ignored
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})").logprobs, 0);
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "stop": "zz", "max_tokens": 3.0})").stop,
            std::vector<std::string>{"zz"});
  // null means "not set".
  const auto n = chat(R"({"messages": [{"role": "user", "content": "x"}], "temperature": null, "stop": null})");
  EXPECT_FLOAT_EQ(n.sampling.temperature, 0.7f);
}

TEST_F(serverRequest, ChatMistakesAre400NamingTheField) {
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  expect_api_error([&] { chat("{}"); }, 400, "messages");
  expect_api_error([&] { chat(R"({"messages": []})"); }, 400, "messages");
  expect_api_error([&] { chat(R"({"messages": "hi"})"); }, 400, "messages");
  expect_api_error([&] { chat(R"({"messages": [{"role": "robot", "content": "x"}]})"); }, 400, "messages[0].role");
  expect_api_error([&] { chat(R"({"messages": [{"content": "x"}]})"); }, 400, "messages[0].role");
  expect_api_error([&] { chat(R"({"messages": [{"role": "user"}]})"); }, 400, "messages[0].content");
  expect_api_error([&] { chat(R"({"messages": [{"role": "user", "content": 5}]})"); }, 400, "messages[0].content");
  expect_api_error([&] { chat(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"); }, 400,
                   "messages[0].content");
  expect_api_error([&] { chat("{" + m + R"(, "temperature": "hot"})"); }, 400, "temperature");
  expect_api_error([&] { chat("{" + m + R"(, "temperature": true})"); }, 400, "temperature");
  expect_api_error([&] { chat("{" + m + R"(, "temperature": -1})"); }, 400);
  expect_api_error([&] { chat("{" + m + R"(, "top_p": 0})"); }, 400);
  expect_api_error([&] { chat("{" + m + R"(, "max_tokens": 0})"); }, 400, "max_tokens");
  expect_api_error([&] { chat("{" + m + R"(, "max_tokens": 1.5})"); }, 400, "max_tokens");
  expect_api_error([&] { chat("{" + m + R"(, "max_tokens": "10"})"); }, 400, "max_tokens");
  expect_api_error([&] { chat("{" + m + R"(, "n": 5})"); }, 400, "n");
  expect_api_error([&] { chat("{" + m + R"(, "n": 0})"); }, 400, "n");
  expect_api_error([&] { chat("{" + m + R"(, "stop": 3})"); }, 400, "stop");
  expect_api_error([&] { chat("{" + m + R"(, "stop": ["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]})"); },
                   400, "stop");
  expect_api_error([&] { chat("{" + m + R"(, "stop": ")" + std::string(513, 'x') + "\"}"); }, 400, "stop");
  expect_api_error([&] { chat("{" + m + R"(, "stream": "yes"})"); }, 400, "stream");
  expect_api_error([&] { chat("{" + m + R"(, "logprobs": 1})"); }, 400, "logprobs");
  expect_api_error([&] { chat("{" + m + R"(, "top_logprobs": 2})"); }, 400, "top_logprobs");
  expect_api_error([&] { chat("{" + m + R"(, "logprobs": true, "top_logprobs": 21})"); }, 400, "top_logprobs");
  expect_api_error([&] { chat("{" + m + R"(, "tools": [{"type": "function"}]})"); }, 400, "tools[0]");
  expect_api_error([&] { chat("{" + m + R"(, "tools": {"type": "function"}})"); }, 400, "tools");
  for (const char* f : {"guided_json", "guided_regex", "guided_choice", "guided_grammar", "functions", "function_call",
                        "structured_outputs"})
    expect_api_error([&] { chat("{" + m + ", \"" + f + "\": {}}"); }, 400, f);
  expect_api_error([&] { chat("{" + m + R"(, "tool_choice": "auto"})"); }, 400, "tool_choice");
  EXPECT_NO_THROW(chat("{" + m + R"(, "tool_choice": "none", "guided_json": null})"));
  expect_api_error([&] { chat("{" + m + R"(, "model": 5})"); }, 400, "model");
  expect_api_error([&] { chat("{" + m + R"(, "model": "gpt-4"})"); }, 404, "model", "model_not_found");
}

TEST_F(serverRequest, CompletionPromptForms) {
  const auto ids = tok().encode("hello world", true);
  EXPECT_EQ(completion(R"({"prompt": "hello world"})").prompts, std::vector<std::vector<TokenId>>{ids});
  EXPECT_EQ(completion(R"({"prompt": [1, 2, 3]})").prompts, (std::vector<std::vector<TokenId>>{{1, 2, 3}}));
  const auto batch = completion(R"({"prompt": ["hello world", "a"], "logprobs": 2})");
  ASSERT_EQ(batch.prompts.size(), 2u);
  EXPECT_EQ(batch.prompts[0], ids);
  EXPECT_EQ(batch.prompts[1], tok().encode("a", true));
  EXPECT_EQ(batch.logprobs, 2);
  EXPECT_EQ(completion(R"({"prompt": [[5, 6], [7]]})").prompts, (std::vector<std::vector<TokenId>>{{5, 6}, {7}}));
  EXPECT_EQ(completion(R"({"prompt": ""})").prompts[0], tok().encode("", true));  // BOS only

  expect_api_error([&] { completion("{}"); }, 400, "prompt");
  expect_api_error([&] { completion(R"({"prompt": []})"); }, 400, "prompt");
  expect_api_error([&] { completion(R"({"prompt": [[]]})"); }, 400, "prompt");
  expect_api_error([&] { completion(R"({"prompt": 5})"); }, 400, "prompt");
  expect_api_error([&] { completion(R"({"prompt": ["a", [1]]})"); }, 400, "prompt");
  expect_api_error([&] { completion(R"({"prompt": [1, "a"]})"); }, 400, "prompt");
  expect_api_error([&] { completion(R"({"prompt": [1, -1]})"); }, 400, "prompt");
  expect_api_error([&] { completion(R"({"prompt": [1, 99999999]})"); }, 400, "prompt");
  expect_api_error([&] { completion(R"({"prompt": [1.5]})"); }, 400, "prompt");
  EXPECT_TRUE(completion(R"({"prompt": "x", "echo": true, "logprobs": 1})").echo);
  EXPECT_FALSE(completion(R"({"prompt": "x"})").echo);
  expect_api_error([&] { completion(R"({"prompt": "x", "echo": "yes"})"); }, 400, "echo");
  expect_api_error([&] { chat(R"({"messages": [{"role": "user", "content": "x"}], "echo": true})"); }, 400, "echo");
  expect_api_error([&] { completion(R"({"prompt": "x", "logprobs": true})"); }, 400, "logprobs");
  expect_api_error([&] { completion(R"({"prompt": "x", "logprobs": 21})"); }, 400, "logprobs");
}

TEST_F(serverRequest, MaxTokensAgainstTheContext) {
  GenerationRequest chat_req;
  chat_req.endpoint = Endpoint::Chat;
  EXPECT_EQ(resolve_max_tokens(chat_req, 10, 100), 90);  // chat: the rest of the context
  EXPECT_EQ(resolve_max_tokens(chat_req, 10, 100, 64), 54);  // ... that fits in the KV pool
  GenerationRequest comp;
  comp.endpoint = Endpoint::Completions;
  EXPECT_EQ(resolve_max_tokens(comp, 10, 100), 16);  // completions: OpenAI's 16
  EXPECT_EQ(resolve_max_tokens(comp, 95, 100), 5);
  comp.max_tokens = 90;
  EXPECT_EQ(resolve_max_tokens(comp, 10, 100), 90);
  comp.max_tokens = 91;
  try {
    resolve_max_tokens(comp, 10, 100);
    ADD_FAILURE();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("100"), std::string::npos) << msg;
    EXPECT_NE(msg.find("101"), std::string::npos) << msg;
    EXPECT_NE(msg.find("91"), std::string::npos) << msg;
  }
  try {
    resolve_max_tokens(chat_req, 150, 100);
    ADD_FAILURE();
  } catch (const ApiError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("100"), std::string::npos) << msg;
    EXPECT_NE(msg.find("150"), std::string::npos) << msg;
  }
}

TEST_F(serverRequest, TokenizeAndDetokenize) {
  EXPECT_EQ(parse_tokenize_request(parse_body(R"({"prompt": "hi"})"), tok()), tok().encode("hi", true));
  EXPECT_EQ(parse_tokenize_request(parse_body(R"({"prompt": "hi", "add_special_tokens": false})"), tok()),
            tok().encode("hi", false));
  EXPECT_EQ(parse_tokenize_request(parse_body(R"({"messages": [{"role": "user", "content": "hi"}]})"), tok()),
            encode_chat(tok(), {{"user", "hi"}}, true));
  expect_api_error([&] { parse_tokenize_request(parse_body("{}"), tok()); }, 400, "prompt");
  expect_api_error([&] { parse_tokenize_request(parse_body(R"({"prompt": 1})"), tok()); }, 400, "prompt");
  const auto d = parse_detokenize_request(parse_body(R"({"tokens": [1, 2], "skip_special_tokens": true})"), tok());
  EXPECT_EQ(d.tokens, (std::vector<TokenId>{1, 2}));
  EXPECT_TRUE(d.skip_special_tokens);
  expect_api_error([&] { parse_detokenize_request(parse_body(R"({"tokens": "1"})"), tok()); }, 400, "tokens");
  expect_api_error([&] { parse_detokenize_request(parse_body(R"({"tokens": [100000000]})"), tok()); }, 400, "tokens");
}

// Found by an adversarial run: a NUL after the JSON value ended the input for the parser.
TEST_F(serverRequest, BodyIsExactlyOneJsonValue) {
  const std::string good = R"({"prompt": "hi"})";
  EXPECT_NO_THROW(parse_body(good));
  expect_api_error([&] { parse_body(good + std::string(1, '\0') + "garbage"); }, 400);
  expect_api_error([&] { parse_body(good + " {}"); }, 400);
  EXPECT_NO_THROW(parse_body(good + " \n\t"));
}

// max_tokens near 2^63: refused, with numbers that are not the result of an overflow.
TEST_F(serverRequest, HugeMaxTokensMessageDoesNotOverflow) {
  GenerationRequest r;
  r.endpoint = Endpoint::Completions;
  r.max_tokens = INT64_MAX;
  try {
    resolve_max_tokens(r, 10, 100);
    ADD_FAILURE();
  } catch (const ApiError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('-'), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(INT64_MAX)), std::string::npos) << msg;
  }
}

// --max-tokens-default bounds a non-streaming chat request without max_tokens, not a stream.
TEST_F(serverRequest, DefaultMaxTokensBoundsNonStreamingChat) {
  ParseContext c = ctx();
  c.max_tokens_default = 7;
  const auto whole = parse_chat_request(parse_body(R"({"messages": [{"role": "user", "content": "hi"}]})"), c);
  EXPECT_EQ(resolve_max_tokens(whole, 10, 1000), 7);
  const auto streamed =
      parse_chat_request(parse_body(R"({"messages": [{"role": "user", "content": "hi"}], "stream": true})"), c);
  EXPECT_EQ(resolve_max_tokens(streamed, 10, 1000), 990);
  const auto asked = parse_chat_request(parse_body(R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})"), c);
  EXPECT_EQ(resolve_max_tokens(asked, 10, 1000), 50);
}

// A prompt far past the context is refused after encoding a little more than the context, and
// what count_beyond reports is a true lower bound.
TEST_F(serverRequest, PromptFarPastTheContextIsRefusedEarly) {
  std::string text;
  for (int i = 0; text.size() < 200000; ++i) text += "word" + std::to_string(i) + " 你好, world! ";
  const int64_t full = static_cast<int64_t>(tok().encode(text, false).size());
  for (int64_t limit : {int64_t{100}, int64_t{5000}, full - 200}) {
    const auto n = tok().count_beyond(text, limit);
    ASSERT_TRUE(n.has_value()) << limit;
    EXPECT_GT(*n, limit);
    EXPECT_LE(*n, full);
  }
  EXPECT_FALSE(tok().count_beyond(text, full + 1000).has_value());
  EXPECT_FALSE(tok().count_beyond("short", 100).has_value());

  ParseContext c = ctx();
  c.max_model_len = 1000;
  const json body = {{"messages", {{{"role", "user"}, {"content", text}}}}};
  expect_api_error([&] { parse_chat_request(body, c); }, 400, "messages");
  expect_api_error([&] { parse_completion_request(json{{"prompt", text}}, c); }, 400, "prompt");
  expect_api_error([&] { parse_tokenize_request(json{{"prompt", text}}, tok(), 1000); }, 400, "prompt");
  EXPECT_NO_THROW(parse_chat_request(parse_body(R"({"messages": [{"role": "user", "content": "hi"}]})"), c));
}

TEST_F(serverRequest, LogitBiasMinTokensIgnoreEosAndStopTokenIds) {
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  const auto r = chat("{" + m +
                      R"(, "logit_bias": {"5": 10, "92542": -100}, "min_tokens": 3, "ignore_eos": true,
                            "stop_token_ids": [7, 9]})");
  EXPECT_EQ(r.sampling.logit_bias, (std::vector<std::pair<TokenId, float>>{{5, 10.0f}, {92542, -100.0f}}));
  EXPECT_EQ(r.sampling.min_tokens, 3);
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_EQ(r.stop_token_ids, (std::vector<TokenId>{7, 9}));
  const auto d = completion(R"({"prompt": "x", "logit_bias": null, "stop_token_ids": null})");
  EXPECT_TRUE(d.sampling.logit_bias.empty());
  EXPECT_EQ(d.sampling.min_tokens, 0);
  EXPECT_FALSE(d.ignore_eos);

  expect_api_error([&] { chat("{" + m + R"(, "logit_bias": [5]})"); }, 400, "logit_bias");
  expect_api_error([&] { chat("{" + m + R"(, "logit_bias": {"x": 1}})"); }, 400, "logit_bias");
  expect_api_error([&] { chat("{" + m + R"(, "logit_bias": {"5x": 1}})"); }, 400, "logit_bias");
  expect_api_error([&] { chat("{" + m + R"(, "logit_bias": {"-1": 1}})"); }, 400, "logit_bias");
  expect_api_error([&] { chat("{" + m + R"(, "logit_bias": {"92544": 1}})"); }, 400, "logit_bias");
  expect_api_error([&] { chat("{" + m + R"(, "logit_bias": {"5": 101}})"); }, 400, "logit_bias");
  expect_api_error([&] { chat("{" + m + R"(, "logit_bias": {"5": "1"}})"); }, 400, "logit_bias");
  expect_api_error([&] { chat("{" + m + R"(, "logit_bias": {"5": 1, "05": 2}})"); }, 400, "logit_bias");
  expect_api_error([&] { chat("{" + m + R"(, "min_tokens": -1})"); }, 400, "min_tokens");
  expect_api_error([&] { chat("{" + m + R"(, "min_tokens": 1.5})"); }, 400, "min_tokens");
  expect_api_error([&] { chat("{" + m + R"(, "ignore_eos": 1})"); }, 400, "ignore_eos");
  expect_api_error([&] { chat("{" + m + R"(, "stop_token_ids": [92544]})"); }, 400, "stop_token_ids");
  expect_api_error([&] { chat("{" + m + R"(, "stop_token_ids": 5})"); }, 400, "stop_token_ids");
  std::string many = "[";
  for (int i = 0; i < 65; ++i) {
    if (i > 0) many += ',';
    many += std::to_string(i);
  }
  expect_api_error([&] { chat("{" + m + R"(, "stop_token_ids": )" + many + "]}"); }, 400, "stop_token_ids");
}

}  // namespace
}  // namespace ilm::server
