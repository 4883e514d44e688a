// InternLM2's tool protocol on the prompt side (tool_prompt.h) and the constrained call: a
// grammar framed by the action markers, walked with random allowed tokens of the real
// vocabulary, always yields one call of an offered function that the parser reads back.
#include <gtest/gtest.h>

#include <random>

#include "structured/json_schema.h"
#include "structured/token_mask.h"
#include "test_util.h"
#include "tokenizer/tool_call_parser.h"
#include "tokenizer/tool_prompt.h"

namespace ilm {
namespace {

using nlohmann::ordered_json;

TEST(ToolPrompt, JsonIsWrittenAsPythonWritesIt) {
  const auto v = ordered_json::parse(R"({"b": [1, 2.5, "é\n\"", true, null], "a": {}, "c": {"x": []}})");
  EXPECT_EQ(python_json(v), "{\"b\": [1, 2.5, \"é\\n\\\"\", true, null], \"a\": {}, \"c\": {\"x\": []}}");
}

TEST(ToolPrompt, ConversationRendersAsTheProtocolSays) {
  const auto functions = ordered_json::parse(
      R"([{"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])");
  std::vector<ChatMessage> m{{"system", "You are helpful."}, {"user", "Weather in Paris?"}};
  insert_tools_message(m, tools_message(functions));
  m.push_back({"assistant", "Let me look." + render_tool_call("get_weather", ordered_json{{"city", "Paris"}})});
  m.push_back({kToolResultRole, "{\"temperature\": 22}"});
  EXPECT_EQ(render_chat(m, true),
            "<s><|im_start|>system\nYou are helpful.<|im_end|>\n"
            "<|im_start|>system name=<|plugin|>\n[{\"name\": \"get_weather\", \"description\": \"Weather of a city\", "
            "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}]<|im_end|>\n"
            "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
            "<|im_start|>assistant\nLet me look.<|action_start|><|plugin|>\n{\"name\": \"get_weather\", \"parameters\": "
            "{\"city\": \"Paris\"}}<|action_end|><|im_end|>\n"
            "<|im_start|>environment name=<|plugin|>\n{\"temperature\": 22}<|im_end|>\n"
            "<|im_start|>assistant\n");
  // Without a system turn the tools come first.
  std::vector<ChatMessage> u{{"user", "hi"}};
  insert_tools_message(u, tools_message(functions));
  EXPECT_EQ(u.front().role, kPluginSystemRole);
}

class ToolCallGrammar : public test::TokenizerFixture {};

TEST_F(ToolCallGrammar, MarkersAreSpecialTokens) {
  EXPECT_EQ(tok().decode(tool_call_prefix_ids(tok())), "<|action_start|><|plugin|>\n");
  EXPECT_EQ(tok().decode(tool_call_suffix_ids(tok())), "<|action_end|>");
  const auto prompt = tok().encode("x<|action_start|><|plugin|>\n{\"name\": \"f\"}<|action_end|>", false);
  const auto prefix = tool_call_prefix_ids(tok());
  EXPECT_NE(std::search(prompt.begin(), prompt.end(), prefix.begin(), prefix.end()), prompt.end());
}

TEST_F(ToolCallGrammar, RandomWalksAreCallsOfOfferedFunctions) {
  const auto functions = ordered_json::parse(R"([
    {"name": "get_weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string", "maxLength": 8}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
      "required": ["city", "days"], "additionalProperties": false}},
    {"name": "tree", "parameters": {"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
      "properties": {"v": {"type": "boolean"}, "kids": {"type": "array", "maxItems": 2, "items": {"$ref": "#/$defs/node"}}},
      "required": ["v"], "additionalProperties": false}}}},
    {"name": "noop"}])");
  std::vector<const ordered_json*> fs;
  for (const auto& f : functions) fs.push_back(&f);
  auto trie = std::make_shared<const structured::TokenTrie>(tok());
  structured::Grammar g(structured::compile_schema(tool_call_schema(fs)), trie, 256, tool_call_prefix_ids(tok()),
                        tool_call_suffix_ids(tok()));
  std::mt19937 rng(5);
  std::map<std::string, int> seen;
  for (int walk = 0; walk < 12; ++walk) {
    structured::GrammarState st = g.start();
    std::vector<TokenId> ids;
    bool ended = false;
    for (int step = 0; step < 400 && !ended; ++step) {
      const structured::GrammarStep next = g.next(st);
      std::vector<TokenId> ok;
      for (TokenId id = 0; id < trie->vocab_size(); ++id)
        if (structured::allowed(*next.allowed, id)) ok.push_back(id);
      if (ok.empty()) {
        ASSERT_TRUE(next.end_allowed);
        ended = true;
        break;
      }
      ASSERT_FALSE(next.end_allowed);  // the call must be closed first
      // Prefer short tokens now and then so that walks also end.
      TokenId id = ok[rng() % ok.size()];
      if (rng() % 2 == 0)
        for (int k = 0; k < 8; ++k) {
          const TokenId c = ok[rng() % ok.size()];
          if (trie->bytes(c).size() < trie->bytes(id).size()) id = c;
        }
      ids.push_back(id);
      g.advance(st, id);
    }
    if (!ended) continue;  // a long walk: nothing to check
    ToolCallParser parser;
    std::vector<ToolCallEvent> evs;
    parser.push(tok().decode(ids), evs);
    parser.finish(evs);
    ASSERT_EQ(evs.size() >= 3, true) << tok().decode(ids);
    EXPECT_EQ(evs.front().kind, ToolCallEvent::Kind::Begin) << tok().decode(ids);
    std::string args;
    for (const auto& e : evs) {
      EXPECT_NE(e.kind, ToolCallEvent::Kind::Text) << tok().decode(ids);
      if (e.kind == ToolCallEvent::Kind::Args) args += e.text;
    }
    const auto a = nlohmann::json::parse(args, nullptr, false);
    ASSERT_TRUE(a.is_object()) << args;
    const std::string name = evs.front().text;
    ++seen[name];
    if (name == "get_weather") {
      EXPECT_TRUE(a.contains("city") && a.contains("days")) << args;
      EXPECT_GE(a["days"].get<int>(), 1);
      EXPECT_LE(a["days"].get<int>(), 7);
    } else if (name == "tree") {
      EXPECT_TRUE(a.contains("v")) << args;
    } else {
      EXPECT_EQ(name, "noop");
      EXPECT_TRUE(a.empty()) << args;
    }
  }
  EXPECT_GE(seen.size(), 2u);  // the walks reach more than one function
}

}  // namespace
}  // namespace ilm
