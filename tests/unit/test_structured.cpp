// Structured output: the schema compiler (supported keywords compile, others are refused by
// name), the byte matcher against valid and invalid instances, viability (no dead ends), and
// the token mask on the real tokenizer (every valid continuation reachable, every allowed token
// keeps the match alive).
#include <gtest/gtest.h>

#include "test_util.h"

#include <random>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "structured/json_matcher.h"
#include "structured/json_schema.h"
#include "structured/token_mask.h"

namespace ilm::structured {
namespace {

using nlohmann::json;

Schema schema(const std::string& text) { return compile_schema(nlohmann::ordered_json::parse(text)); }

struct Case {
  const char* schema;
  std::vector<const char*> valid, invalid;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> k = {
      {R"({})", {R"({"a": [1, 2.5e3, "x", true, null, {"b": -0}]})", "3", R"("s")", "[]", "null"},
       {"", "{", R"({"a" 1})", "[1,]", "01", "1.", "-", "tru", R"("\x")", "{} {}", R"({"a":1,})"}},
      {R"({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": false})",
       {R"({"name": "Ann", "age": 31})", R"({ "name" : "" , "age" : -4 })"},
       {R"({"age": 31, "name": "Ann"})", R"({"name": "Ann"})", R"({"name": "Ann", "age": 3.5})",
        R"({"name": "Ann", "age": 31, "x": 1})", R"({"name": 5, "age": 1})"}},
      {R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}},
          "required": ["b"]})",
       {R"({"b": true})", R"({"a": 1, "b": false})", R"({"b": true, "zz": [1]})"},
       {R"({"a": 1})", R"({})", R"({"b": true, "a": 1})", R"({"b": true, "b": true})"}},
      {R"({"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 120}, "minItems": 1, "maxItems": 3})",
       {"[0]", "[-5, 120, 7]", "[ 99 ]"},
       {"[]", "[1,2,3,4]", "[121]", "[-6]", "[1.0]", "[1000]"}},
      {R"({"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 13})", {"11", "12"}, {"10", "13", "1", "-11", "110"}},
      {R"({"type": "string", "minLength": 2, "maxLength": 3})",
       {R"("ab")", R"("abc")", R"("é€")", R"("\n\u0041")"},
       {R"("a")", R"("abcd")", R"("\ud800")", "\"\x01\"", "\"\xC0\xAF\"", "\"\xED\xA0\x80\""}},
      {R"({"enum": ["red", "green", 3, null]})", {R"("red")", R"("green")", "3", "null"}, {R"("blue")", "4", R"("re")"}},
      {R"({"const": {"k": [1]}})", {R"({"k":[1]})"}, {R"({"k": [1]})", R"({"k":[2]})"}},
      {R"({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "null"}}]})",
       {R"("x")", "[null, null]", "[]"}, {"[1]", "1"}},
      {R"({"type": ["integer", "null"]})", {"5", "null"}, {"5.5", R"("5")"}},
      {R"({"type": "integer", "minimum": 9007199254740993, "exclusiveMaximum": 9007199254740995.5})",
       {"9007199254740993", "9007199254740995"}, {"9007199254740992", "9007199254740996"}},
      {R"({"prefixItems": [{"type": "string"}, {"type": "number"}], "items": false, "type": "array"})",
       {R"(["a", 1.5])", R"(["a"])", "[]"}, {R"(["a", 1, 2])", R"([1, "a"])"}},
      {R"({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
            "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}, "required": ["v", "next"],
            "additionalProperties": false}}, "$ref": "#/$defs/node"})",
       {R"({"v": 1, "next": {"v": 2, "next": null}})"}, {R"({"v": 1, "next": {"v": 2}})", R"({"v": 1})"}},
      {R"({"type": "object", "additionalProperties": {"type": "integer"}})",
       {R"({"a": 1, "b": 2})", "{}"}, {R"({"a": "x"})", R"({"a\u0062": 1})"}},
  };
  return k;
}

TEST(StructuredSchema, ValidAndInvalidInstances) {
  for (const Case& c : cases()) {
    const Schema s = schema(c.schema);
    for (const char* v : c.valid) EXPECT_TRUE(matches(s, v)) << c.schema << "\n  should accept: " << v;
    for (const char* v : c.invalid) EXPECT_FALSE(matches(s, v)) << c.schema << "\n  should refuse: " << v;
  }
}

TEST(StructuredSchema, UnsupportedKeywordsAreRefusedByName) {
  auto where = [](const std::string& text) {
    try {
      compile_schema(nlohmann::ordered_json::parse(text));
    } catch (const SchemaError& e) {
      return e.where();
    }
    return std::string("(compiled)");
  };
  EXPECT_EQ(where(R"({"type": "string", "pattern": "(a)\\1"})"), "/pattern");  // a backreference
  EXPECT_EQ(where(R"({"properties": {"d": {"type": "string", "format": "email"}}})"), "/properties/d/format");
  EXPECT_EQ(where(R"({"type": "number", "multipleOf": 2})"), "/multipleOf");
  EXPECT_EQ(where(R"({"oneOf": [{"type": "string"}, {"type": "string"}]})"), "/oneOf");  // overlapping
  EXPECT_EQ(where(R"({"type": "object", "required": ["x"]})"), "/required");
  EXPECT_EQ(where(R"({"$ref": "#/$defs/missing"})"), "/$ref");
  EXPECT_EQ(where(R"({"type": "strin"})"), "/type");
  EXPECT_EQ(where(R"({"type": "integer", "minimum": 5, "maximum": 4})"), "");
  EXPECT_EQ(where(R"({"title": "t", "description": "d", "type": "boolean"})"), "(compiled)");
  EXPECT_EQ(where(R"(false)"), "");
  EXPECT_EQ(where(R"({"$ref": "#"})"), "");  // a value never comes
  EXPECT_EQ(where(R"({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}},
                      "$ref": "#/$defs/a"})"), "");
  EXPECT_EQ(where(R"({"type": "array", "items": {"$ref": "#"}})"), "(compiled)");  // recursion through a value
  // Keywords the matcher would ignore beside anyOf / enum / const are refused.
  EXPECT_EQ(where(R"({"type": "string", "anyOf": [{"minLength": 1}]})"), "/type");
  EXPECT_EQ(where(R"({"type": "string", "maxLength": 2, "enum": ["abcd"]})"), "/maxLength");
  EXPECT_EQ(where(R"({"type": "string", "enum": ["a"]})"), "(compiled)");
  // Schemas with no finite instance, or none the generator can write, are refused.
  EXPECT_EQ(where(R"({"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]})"), "");
  EXPECT_EQ(where(R"({"type": "array", "items": false, "minItems": 1})"), "/minItems");
  EXPECT_EQ(where(R"({"type": "integer", "minimum": 1e18})"), "/minimum");
  EXPECT_EQ(where(R"({"type": "integer", "minimum": 1000000000000000000})"), "/minimum");
  // anyOf fan-out beyond the alternatives followed at once.
  std::string defs = R"({"$defs": {)";
  for (int i = 0; i < 8; ++i)
    defs += fmt::format(R"("a{0}": {{"anyOf": [{{"$ref": "#/$defs/a{1}"}}, {{"$ref": "#/$defs/b{1}"}}]}}, )"
                        R"("b{0}": {{"anyOf": [{{"$ref": "#/$defs/a{1}"}}, {{"$ref": "#/$defs/b{1}"}}]}}, )", i, i + 1);
  defs += R"("a8": {"type": "string"}, "b8": {"type": "null"}}, "$ref": "#/$defs/a0"})";
  EXPECT_EQ(where(defs), "");
}

// From any live state some continuation completes: walk randomly through allowed bytes.
TEST(StructuredSchema, EveryLiveStateCanBeCompleted) {
  std::mt19937 rng(3);
  for (const Case& c : cases()) {
    const Schema s = schema(c.schema);
    for (int walk = 0; walk < 20; ++walk) {
      MatchState st = initial_state(s);
      std::string text;
      bool ended = false;
      for (int step = 0; step < 400 && !ended; ++step) {
        std::vector<uint8_t> live;
        for (int b = 0; b < 256; ++b)
          if (!advance(s, st, static_cast<uint8_t>(b)).dead()) live.push_back(static_cast<uint8_t>(b));
        if (can_end(s, st) && (live.empty() || rng() % 4 == 0)) {
          ended = true;
          break;
        }
        ASSERT_FALSE(live.empty()) << c.schema << "\n  dead end after: " << text;
        // Prefer structure over long strings so that walks finish.
        uint8_t b = live[rng() % live.size()];
        for (uint8_t x : live)
          if ((x == '"' || x == '}' || x == ']') && rng() % 2 == 0) b = x;
        st = advance(s, st, b);
        text.push_back(static_cast<char>(b));
      }
      if (ended) {
        EXPECT_TRUE(matches(s, text)) << text;
      }
    }
  }
}

class StructuredMask : public test::TokenizerFixture {};

// Every token of a valid instance's encoding is allowed where it comes; every allowed token
// keeps the match alive; end is possible exactly at the end.
TEST_F(StructuredMask, ValidContinuationsStayReachable) {
  auto trie = std::make_shared<const TokenTrie>(tok());
  for (const Case& c : cases()) {
    Grammar g(schema(c.schema), trie);
    for (const char* v : c.valid) {
      const auto ids = tok().encode(v, false);
      MatchState st = initial_state(g.schema());
      for (TokenId id : ids) {
        const auto bits = g.mask(st);
        ASSERT_TRUE(allowed(*bits, id)) << c.schema << "\n  " << v << ": token " << id << " '" << trie->bytes(id) << "'";
        st = advance(g.schema(), st, trie->bytes(id));
        ASSERT_FALSE(st.dead());
      }
      EXPECT_TRUE(can_end(g.schema(), st)) << v;
    }
  }
}

TEST_F(StructuredMask, AllowedTokensKeepTheMatchAlive) {
  auto trie = std::make_shared<const TokenTrie>(tok());
  Grammar g(schema(cases()[1].schema), trie);
  std::mt19937 rng(9);
  for (int walk = 0; walk < 5; ++walk) {
    MatchState st = initial_state(g.schema());
    for (int step = 0; step < 60 && !can_end(g.schema(), st); ++step) {
      const auto bits = g.mask(st);
      std::vector<TokenId> ok;
      for (TokenId id = 0; id < trie->vocab_size(); ++id)
        if (allowed(*bits, id)) ok.push_back(id);
      ASSERT_FALSE(ok.empty());
      for (int k = 0; k < 50; ++k)
        EXPECT_FALSE(advance(g.schema(), st, trie->bytes(ok[rng() % ok.size()])).dead());
      st = advance(g.schema(), st, trie->bytes(ok[rng() % ok.size()]));
    }
  }
  EXPECT_GT(g.stats().hits + g.stats().misses, 0u);
}

}  // namespace
}  // namespace ilm::structured
